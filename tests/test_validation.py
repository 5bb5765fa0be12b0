"""Every malformed kind is refused with file, example index and problem; validate reports them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genies.cli import GeniesGroup
from genies.commands import data_inspect
from genies.data.loading import load_distribution
from genies.data.schema import DataError
from genies.data.validation import ERROR, Finding, check_distribution_folder

GOOD = {"prompt": "p", "responses": {"a": 1.0, "b": 0.0}}


def _folder(root: Path, train: bytes | list, test: bytes | list | None = None, name: str = "d") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for split, content in (("train", train), ("test", test if test is not None else [GOOD, GOOD])):
        raw = content if isinstance(content, bytes) else json.dumps(content).encode()
        (folder / f"{split}.json").write_bytes(raw)
    return folder


# (file content of train.json, expected example index, phrase that must appear in the problem)
MALFORMED = {
    "not JSON": (b'[{"prompt": "p", ', None, "not JSON"),
    "not a list": (json.dumps(GOOD).encode(), None, "not a list"),
    "missing prompt": ([GOOD, {"responses": {"a": 1, "b": 0}}], 1, "missing prompt"),
    "missing responses": ([GOOD, GOOD, {"prompt": "p"}], 2, "missing responses"),
    "no preferred": ([{"prompt": "p", "responses": {"a": 0, "b": 0}}], 0, "no preferred response"),
    "two preferred": ([GOOD, {"prompt": "p", "responses": {"a": 1, "b": 1, "c": 0}}], 1, "two preferred responses"),
    "no dispreferred": ([GOOD, {"prompt": "p", "responses": {"a": 1.0}}], 1, "no dispreferred response"),
    "value not 0/1": ([{"prompt": "p", "responses": {"a": 1, "b": 0.5}}], 0, "a value other than 0/1"),
    "boolean label": ([{"prompt": "p", "responses": {"a": True, "b": 0}}], 0, "a value other than 0/1"),
    "empty split": ([], None, "an empty split"),
    "bad encoding": ('[{"prompt": "café", "responses": {"a": 1, "b": 0}}]'.encode("latin-1"), None,
                     "bad text encoding"),
    "repeated response": (b'[{"prompt": "p", "responses": {"a": 1, "a": 0}}]', None, "repeated"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_each_malformed_kind_is_refused_with_file_index_and_problem(tmp_path: Path, kind: str) -> None:
    content, index, phrase = MALFORMED[kind]
    dist = load_distribution(_folder(tmp_path, content))
    with pytest.raises(DataError) as caught:
        dist.train
    err = caught.value
    assert err.file.endswith("train.json") and err.index == index and phrase in err.problem
    assert "train.json" in str(err) and phrase in str(err)
    if index is not None:
        assert f"example {index}" in str(err)


def test_validate_reports_every_problem_in_every_file(tmp_path: Path) -> None:
    train = [GOOD, {"responses": {"a": 1, "b": 0}}, GOOD, {"prompt": "p", "responses": {"a": 0, "b": 2}},
             {"prompt": "p", "responses": {"a": 1, "b": 1, "c": 0}}]
    folder = _folder(tmp_path, train, test=b"not json")
    _, findings = check_distribution_folder(folder)
    got = [(Path(f.file).name, f.index, f.problem.split(":")[0]) for f in findings if f.severity == ERROR]
    assert got == [
        ("train.json", 1, "missing prompt"),
        ("train.json", 3, "a value other than 0/1"),
        ("train.json", 4, "two preferred responses"),
        ("test.json", None, "not JSON"),
    ]
    # loading raises the first of them
    with pytest.raises(DataError, match="example 1: missing prompt"):
        load_distribution(folder).train


def test_jsonl_bad_lines_keep_true_indices(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    folder.mkdir()
    lines = [json.dumps(GOOD), "{oops", json.dumps(GOOD), json.dumps({"prompt": "p", "responses": {"a": 0}})]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "test.jsonl").write_text(json.dumps(GOOD) + "\n")
    _, findings = check_distribution_folder(folder)
    assert [(f.index, f.problem.split(" ")[0]) for f in findings] == [(1, "not"), (3, "no")]


def test_missing_split_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps([GOOD]))
    with pytest.raises(DataError, match="missing test split"):
        load_distribution(folder)


def test_check_distribution_folder_returns_the_parsed_distribution(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [GOOD, GOOD, GOOD])
    (folder / "metadata.json").write_text(json.dumps({"id": "d", "external_datasets": []}))
    dist, findings = check_distribution_folder(folder)
    assert findings == [] and dist is not None
    assert (dist.id, dist.path, dist.metadata["external_datasets"], len(dist.train)) == ("d", folder, [], 3)
    assert load_distribution(folder).metadata == dist.metadata
    (folder / "metadata.json").write_text("[]")
    dist, findings = check_distribution_folder(folder)
    assert dist is None and [f.problem for f in findings] == ["metadata is a JSON array, expected an object"]
    with pytest.raises(DataError, match="metadata is a JSON array"):
        load_distribution(folder)


def test_finding_and_data_error_name_the_place_alike() -> None:
    for index, where in ((3, "d/train.json, example 3"), (None, "d/train.json")):
        finding = Finding("d/train.json", "missing prompt", index)
        assert finding.where == where
        assert str(finding) == f"error: {where}: missing prompt"
        assert str(finding.to_error()) == f"{where}: missing prompt"


def _app() -> typer.Typer:
    app, data = typer.Typer(cls=GeniesGroup), typer.Typer()
    data_inspect.register(data)
    app.add_typer(data, name="data")
    return app


def test_cli_validate_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    _folder(tmp_path, [GOOD, GOOD], name="good")
    _folder(tmp_path, [{"prompt": "p"}, GOOD, {"prompt": "q", "responses": {"a": 1}}], name="bad")
    _folder(tmp_path, [], name="empty")
    result = CliRunner().invoke(_app(), ["data", "validate", str(tmp_path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "bad/train.json, example 0: missing responses" in out
    assert "bad/train.json, example 2: no dispreferred response" in out
    assert "empty/train.json: an empty split" in out
    assert "3 distributions checked: 3 errors" in out


def test_cli_validate_clean_data_exits_0(tmp_path: Path) -> None:
    _folder(tmp_path, [GOOD, {"prompt": "q", "responses": {"x": 0, "y": 1}}], name="good")
    result = CliRunner().invoke(_app(), ["data", "validate", str(tmp_path / "good")])
    assert result.exit_code == 0, result.output
    assert "1 distributions checked: 0 errors" in result.output


def test_cli_without_data_prints_one_line_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENIES_DATA_DIR", raising=False)
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "empty-home"))
    for args in (["data", "list"], ["data", "show", "alpaca_mmlu"], ["data", "validate"]):
        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 2, result.output
        assert "genies data download" in result.output and "Traceback" not in result.output


def test_cli_validate_reads_saved_hugging_face_folders(tmp_path: Path) -> None:
    import datasets

    columns = {"prompt": ["p", "q", "r"], "chosen": ["a", "same", "x"], "rejected": ["b", "same", "x"]}
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(columns), "test": datasets.Dataset.from_dict(columns),
    }).save_to_disk(str(tmp_path / "hf"))
    result = CliRunner().invoke(_app(), ["data", "validate", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "[train], example 1: no dispreferred response" in result.output
    assert "[train], example 2: no dispreferred response" in result.output  # every row, not the first


def test_text_a_tokenizer_cannot_encode_fails_validate_naming_file_example_and_field(tmp_path: Path) -> None:
    # json.dumps writes the lone surrogates as \ud800 escapes: valid JSON, invalid Unicode text
    _folder(tmp_path, [GOOD, {"prompt": "ok \ud800", "responses": {"a": 1, "b\udfff": 0}}], name="bad")
    result = CliRunner().invoke(_app(), ["data", "validate", str(tmp_path / "bad")])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "bad/train.json, example 1: prompt: not valid Unicode text: lone surrogate at character 3" in out
    assert "bad/train.json, example 1: response 1: not valid Unicode text: lone surrogate at character 1" in out
