"""The shift registry matches SPEC §2.3, §3.1-3.4; custom files and name checks behave."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genies.cli import GeniesGroup
from genies.commands import shifts as shifts_command
from genies.data.schema import DataError
from genies.data.shift import Shift
from genies.data.shifts import ShiftSelectionError, check_shifts, get_shifts, read_shift_file

SPEC_CATEGORY_COUNTS = {
    "difficulty": 6, "encoding": 4, "pretraining_similarity": 4, "quality": 3,
    "context": 8, "skill": 12, "spurious_cues": 6, "unwanted_personas": 13,
}
SPEC_REFERENCES = {  # SPEC §2.3: targets whose target-tuned reference is another distribution
    "alpaca_long": "alpaca_mmlu", "sycophancy_mimicry": "quote_attribution", "sycophancy_answer": "arc_easy",
    "sycophancy_are_you_sure": "arc_easy", "sycophancy_feedback": "code_is_correct",
}


def test_all_is_56_unique_with_spec_categories_and_families() -> None:
    shifts = get_shifts("all")
    assert len(shifts) == 56 == len({(s.source, s.target) for s in shifts})
    assert Counter(s.category for s in shifts) == SPEC_CATEGORY_COUNTS
    assert Counter(s.family for s in shifts) == {"extreme": 37, "probing": 19}
    assert {s.target: s.target_reference for s in shifts if s.target_reference != s.target} == SPEC_REFERENCES
    for category, count in SPEC_CATEGORY_COUNTS.items():
        assert len(get_shifts(category)) == count
    assert len(get_shifts("extreme")) == 37 and len(get_shifts("probing")) == 19


def test_all_69_repeats_exactly_the_13_unwanted_personas_shifts() -> None:
    rows = get_shifts("all-69")
    assert len(rows) == 69
    repeated = [s for s, n in Counter(rows).items() if n > 1]
    assert len(repeated) == 13 and {s.category for s in repeated} == {"unwanted_personas"}
    assert set(rows) == set(get_shifts("all"))


def test_genies_15_with_references_and_all_categories() -> None:
    genies = get_shifts("genies")
    assert len(genies) == 15 and genies[0] == Shift(
        "us_history_textbook", "us_history_fiction", "us_history_fiction", "context", "extreme")
    refs = {s.target: s.target_reference for s in genies if s.target_reference != s.target}
    assert refs == {"alpaca_long": "alpaca_mmlu", "sycophancy_mimicry": "quote_attribution"}
    assert {s.category for s in genies} == set(SPEC_CATEGORY_COUNTS)
    long = next(s for s in genies if s.target == "alpaca_long")
    assert (long.category, long.family) == ("spurious_cues", "probing")  # family from all.json, not GENIES.json
    assert set(genies) <= set(get_shifts("all"))


def test_custom_file_in_the_original_schema(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([
        {"source": "alpaca_short", "target": "alpaca_long", "label": "extreme", "category": "spurious_cues"},
        {"source": "a", "target": "b", "target_reference": "c", "category": "skill", "label": "probing"},
        {"source": "x", "target": "y"},
    ]))
    assert get_shifts(str(path)) == [
        Shift("alpaca_short", "alpaca_long", "alpaca_mmlu", "spurious_cues", "probing"),
        Shift("a", "b", "c", "skill", "probing"),
        Shift("x", "y", "y", "uncategorized", "unknown"),
    ]


@pytest.mark.parametrize(("content", "index", "phrase"), [
    ("[", None, "not JSON"),
    ('{"source": "a"}', None, "not a list"),
    ("[]", None, "empty shift list"),
    ('[{"source": "a", "target": "b"}, {"source": "a"}]', 1, "missing target"),
    ('[{"source": "a", "target": "b", "category": 3}]', 0, "'category' must be a string"),
    ('[{"source": "a", "target": "b"}, {"source": "a", "target": "b", "catgory": "skill"}]', 1,
     "unknown key 'catgory'; did you mean 'category'?"),
    ('[{"source": "a", "target": "a"}]', 0, "source and target are the same distribution ('a')"),
    ('[{"source": "./nowhere", "target": "b"}]', 0, "source './nowhere': no distribution folder at"),
])
def test_bad_custom_files_are_named(tmp_path: Path, content: str, index: int | None, phrase: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        read_shift_file(path)
    assert caught.value.index == index and phrase in caught.value.problem and "bad.json" in str(caught.value)
    if index is not None:  # a shift file's rows are shifts, not examples
        assert str(caught.value).startswith(f"{path}, shift {index}: ")


def test_shift_file_reads_like_a_data_file(tmp_path: Path) -> None:
    """The data reader's rules: a UTF-8 BOM is accepted, a repeated key is refused."""
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"source": "x", "target": "y"}]).encode())
    assert read_shift_file(path) == [Shift("x", "y", "y", "uncategorized", "unknown")]
    path.write_text('[{"source": "x", "target": "y", "target": "z"}]')
    with pytest.raises(DataError, match="a key is repeated"):
        read_shift_file(path)


def test_unknown_selector_suggests_the_closest() -> None:
    with pytest.raises(ShiftSelectionError, match="did you mean genies"):
        get_shifts("genis")


def _data_root(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "train.json").write_text("[]")
        (tmp_path / name / "test.json").write_text("[]")
    return tmp_path


def test_check_shifts_names_unknown_distributions_with_suggestions(tmp_path: Path) -> None:
    root = _data_root(tmp_path / "data", ["alpaca_mmlu", "spanish_output", "arc_easy"])
    shifts = [Shift("alpaca_mmlu", "spanish_output", "spanish_output", "encoding", "extreme"),
              Shift("alpaca_mmul", "spanish_outptu", "arc_easy", "encoding", "extreme")]
    problems = check_shifts(shifts, root)
    assert len(problems) == 2
    assert "shift 1 (alpaca_mmul->spanish_outptu): unknown source distribution 'alpaca_mmul'" in problems[0]
    assert "did you mean alpaca_mmlu" in problems[0] and "did you mean spanish_output" in problems[1]


def _app() -> typer.Typer:
    app, group = typer.Typer(cls=GeniesGroup), typer.Typer()
    shifts_command.register(group)
    app.add_typer(group, name="shifts")
    return app


def test_cli_list_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    listed = runner.invoke(_app(), ["shifts", "list", "--benchmark", "genies", "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.output)) == 15
    table = runner.invoke(_app(), ["shifts", "list", "-b", "quality"])
    assert table.exit_code == 0 and "alpaca_low_quality" in table.output and "shp_high_quality" in table.output
    unknown = runner.invoke(_app(), ["shifts", "list", "-b", "nope"])
    assert unknown.exit_code == 2 and unknown.output.startswith("error: unknown shift list 'nope'")

    monkeypatch.setenv("GENIES_DATA_DIR", str(_data_root(tmp_path / "data", ["code", "math"])))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps([{"source": "code", "target": "math", "category": "skill", "label": "extreme"}]))
    bad.write_text(json.dumps([{"source": "code", "target": "mathh"}]))
    assert runner.invoke(_app(), ["shifts", "check", str(good)]).exit_code == 0
    result = runner.invoke(_app(), ["shifts", "check", str(bad)])
    assert result.exit_code == 1 and "did you mean math" in result.output


@pytest.mark.data
def test_registry_matches_the_original_files_and_the_data(genies_data_dir: Path) -> None:
    assert check_shifts(get_shifts("all"), genies_data_dir) == []
    original = genies_data_dir.parent / "distribution_shifts"
    if not original.is_dir():
        pytest.skip("the original distribution_shifts folder is not beside the data")
    assert read_shift_file(original / "all.json") == get_shifts("all-69")
    assert read_shift_file(original / "GENIES.json") == get_shifts("genies")
    for family in ("extreme", "probing"):
        for path in (original / family).glob("*.json"):
            if path.stem != "all":
                assert {(s.source, s.target) for s in read_shift_file(path)} == {
                    (s.source, s.target) for s in get_shifts(path.stem)}


def _distribution_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    row = [{"prompt": "p", "responses": {"a": 1, "b": 0}}]
    for split in ("train", "test"):
        (folder / f"{split}.json").write_text(json.dumps(row))
    return folder


def test_shift_files_may_name_distribution_folders_by_path(tmp_path: Path) -> None:
    """A path (with "/" or a leading "." or "~") is a folder relative to the shift file, kept
    absolute, and mixes with names under the data root; check_shifts does not look for it there."""
    mine = _distribution_folder(tmp_path / "my data" / "mine")
    path = tmp_path / "lists" / "mixed.json"
    path.parent.mkdir()
    path.write_text(json.dumps([{"source": "../my data/mine", "target": "alpaca_long"}]))
    [shift] = read_shift_file(path)
    assert shift.source == str(mine.resolve()) and shift.target == "alpaca_long"
    root = tmp_path / "root"
    _distribution_folder(root / "alpaca_long")
    assert check_shifts([shift], root) == []


def test_a_shift_file_beside_its_distributions_needs_no_data_root(tmp_path: Path, monkeypatch) -> None:
    from genies.data.home import DataNotFoundError
    from genies.pipeline.api import resolve_data

    monkeypatch.delenv("GENIES_DATA_DIR", raising=False)
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    for name in ("a", "b"):
        _distribution_folder(tmp_path / "data" / name)
    path = tmp_path / "data" / "shifts.json"
    path.write_text(json.dumps([{"source": "a", "target": "b"}]))
    data = resolve_data(str(path))
    assert data.data_root == (tmp_path / "data").resolve() and data.note is None
    checked = CliRunner().invoke(_app(), ["shifts", "check", str(path)])
    assert checked.exit_code == 0 and "every distribution found" in checked.output
    assert data.load("b").test[0].prompt == "p"
    # a built-in list with no data stops with one line instead of silently running the synthetic suite
    with pytest.raises(DataNotFoundError, match="no GENIES data found.*--shifts synthetic"):
        resolve_data("genies")
    assert resolve_data("genies", synthetic_if_no_data=True).label == "synthetic"
    # a shift file whose distributions are elsewhere does not fall back either
    (tmp_path / "elsewhere.json").write_text(json.dumps([{"source": "a", "target": "b"}]))
    with pytest.raises(DataNotFoundError):
        resolve_data(str(tmp_path / "elsewhere.json"), synthetic_if_no_data=True)
