"""The listing commands on a new user's screen (issue 17, output): at 80 columns every table keeps
its numbers and names whole, piped output is never cut, csv and json carry every field at full
precision, and help names values the way click tools do, with `-h` everywhere."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from genies.cli import _build
from genies.commands._format import human_size
from genies.data.shift import Shift
from genies.data.shifts import get_shifts
from genies.pipeline.run_dir import load_run
from genies.report import testing
from genies.rounding import interval, number

APP = _build()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# rich takes the output for a terminal this wide; NO_COLOR keeps the text greppable
TERMINAL_80 = {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
# the real GENIES-15 names, the longest a user sees (us_history_textbook -> us_history_fiction)
GENIES_15 = [dataclasses.replace(s, target_reference=s.target) for s in get_shifts("genies")]


def _invoke(args: list[str], env: dict[str, str] | None = None) -> str:
    """stdout of `genies ARGS` (ANSI codes removed); fails the test on a non-zero exit."""
    result = CliRunner().invoke(APP, args, env=env)
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout)


def _fits_80(out: str) -> None:
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, out
    assert "…" not in out, out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run over the GENIES-15 shift names, written by the real writer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(testing, "fake_shifts", lambda n, n_sources=12: GENIES_15[:n])
        return testing.write_run_dir(tmp_path_factory.mktemp("run") / "genies-cpu", n_shifts=15,
                                     interventions=("zero_shot", "lora", "mms", "prompt_tuning"), failed=1)


# -- the one rounding rule ----------------------------------------------------------------------

def test_numbers_round_half_away_from_zero_on_the_exact_value_like_the_report() -> None:
    # 0.8125 and 0.125 are exact binary fractions: round-half-even would print 0.81/0.12 and
    # 0.812, where JavaScript's toFixed (the HTML report) prints 0.813 and 0.13
    assert [number(x) for x in (0.8125, 0.125, -0.125, 2 / 3, 1.0)] == ["0.81", "0.13", "-0.13", "0.67", "1.00"]
    assert number(0.8125, 3) == "0.813"
    assert number(1.005) == "1.00"  # the double is 1.00499999...: rounded on the exact value, as toFixed does
    assert [number(x) for x in (-0.001, float("nan"), None)] == ["0.00", "-", "-"]
    assert interval(-0.05, 0.3) == "-0.05..0.30"
    assert [human_size(n) for n in (512, 1536, 5 * 2**20, 3 * 2**30)] == ["512 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


# -- results show ---------------------------------------------------------------------------------

def _row_line(out: str, intervention: str, source: str, target: str) -> str:
    return next(line for line in out.splitlines()
                if line.startswith(intervention + " ") and f"{source} -> {target}" in line)


def test_results_show_at_80_columns_prints_every_shown_number_and_name_whole(run_dir: Path) -> None:
    out = _invoke(["results", "show", str(run_dir)], TERMINAL_80)
    _fits_80(out)
    res = load_run(run_dir)
    for r in res.rows:  # one line per row, with its full names and its GA, zero-shot and DE
        cells = _row_line(out, r.intervention, r.source, r.target).split()
        for value in (r.generalization_accuracy, r.baseline_accuracy, r.differential_elicitation):
            assert number(value) in cells
    assert "us_history_textbook -> us_history_fiction" in out
    assert "not shown at this width:" in out and "RMS-CE" in out.split("not shown at this width:")[1]
    mean = res.aggregate("mms")
    assert mean is not None
    line = next(line for line in out.split("Mean differential elicitation")[1].splitlines() if line.startswith("mms "))
    assert line.split()[1:] == [number(mean.mean_de), interval(mean.ci_low, mean.ci_high), str(mean.n_shifts),
                                number(mean.mean_generalization_accuracy)]


def test_results_show_lists_interventions_in_the_runs_order_in_every_table(run_dir: Path) -> None:
    out = _invoke(["results", "show", str(run_dir)], TERMINAL_80)
    for table in out.split("Per shift")[1].split("Mean differential")[:1] + out.split("Mean differential")[1:]:
        firsts = [line.split()[0] for line in table.splitlines()
                  if line.split() and line.split()[0] in ("zero_shot", "lora", "mms", "prompt_tuning")]
        assert list(dict.fromkeys(firsts)) == ["zero_shot", "lora", "mms", "prompt_tuning"]


def test_results_show_piped_is_not_cut_to_the_terminal(run_dir: Path) -> None:
    out = _invoke(["results", "show", str(run_dir)], {"COLUMNS": "80"})  # CliRunner's stdout is no tty
    assert "not shown at this width" not in out and "…" not in out
    header = next(line for line in out.splitlines() if line.startswith("intervention") and "shift" in line)
    assert header.split()[-3:] == ["RMS-CE", "len", "L/S"]
    r = load_run(run_dir).rows[0]
    assert number(r.RMS_calibration_error) in _row_line(out, r.intervention, r.source, r.target).split()


def test_results_show_csv_and_json_hold_every_field_at_full_precision(run_dir: Path) -> None:
    res = load_run(run_dir)
    rows = list(csv.DictReader(io.StringIO(_invoke(["results", "show", str(run_dir), "--format", "csv"]))))
    assert len(rows) == len(res.rows)
    for row, r in zip(rows, res.rows, strict=True):
        assert float(row["differential_elicitation"]) == r.differential_elicitation  # unrounded
        assert float(row["RMS_calibration_error"]) == r.RMS_calibration_error
    doc = json.loads(_invoke(["results", "show", str(run_dir), "-f", "json"], TERMINAL_80))
    assert doc == json.loads((run_dir / "results.json").read_text())


# -- data list, shifts list, cache ls, interventions list, models list -----------------------------

LONG_NAMES = ("us_history_make_questions", "code_with_cooking_style", "sycophancy_are_you_sure", "math")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Distributions with the longest GENIES names and distinct counts (k + 3 train prompts)."""
    root = tmp_path / "distributions"
    for k, name in enumerate(LONG_NAMES):
        (root / name).mkdir(parents=True)
        for split, n in (("train", k + 3), ("test", k + 2)):
            examples = [{"prompt": f"{name} {i}", "responses": {"a": 1, "bb": 0, "ccc": 0}} for i in range(n)]
            (root / name / f"{split}.json").write_text(json.dumps(examples))
    monkeypatch.setenv("GENIES_DATA_DIR", str(root))
    return root


def test_data_list_at_80_columns_shows_the_counts_of_every_distribution(data_root: Path) -> None:
    out = _invoke(["data", "list"], TERMINAL_80)
    _fits_80(out)
    for k, name in enumerate(LONG_NAMES):
        cells = next(line for line in out.splitlines() if line.startswith(name + " ")).split()
        # train prompts, test prompts, test pairs (2 per prompt), the preferred "a" is always shortest
        assert cells[1:3] == [str(k + 3), str(k + 2)] and str(2 * (k + 2)) in cells and cells[-1] == "1.00"
    records = json.loads(_invoke(["data", "list", "--format", "json"]))
    assert [r["name"] for r in records] == sorted(LONG_NAMES)
    assert records[0]["test_preferred_shortest"] == 1.0
    assert list(csv.DictReader(io.StringIO(_invoke(["data", "list", "--format", "csv"]))))[0]["train_pairs"] == "8"
    assert json.loads(_invoke(["data", "list", "--json"])) == records  # the old flag still works


def test_shifts_list_at_80_columns_keeps_every_name_and_family() -> None:
    out = _invoke(["shifts", "list", "--shifts", "genies"], TERMINAL_80)
    _fits_80(out)
    for s in get_shifts("genies"):
        line = next(line for line in out.splitlines() if f" {s.source} " in line and f" {s.target} " in line)
        assert line.split()[-2:] == [s.category, s.family]
    assert "ref: quote_attribution" in out  # a target reference that differs is shown, under its target
    shifts = [Shift(**r) for r in csv.DictReader(io.StringIO(_invoke(["shifts", "list", "-b", "genies", "-f", "csv"])))]
    assert shifts == get_shifts("genies")


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two activation entries as the store writes them (a folder with meta.json), no model run."""
    monkeypatch.setenv("GENIES_HOME", str(tmp_path))
    for k, (model, dist) in enumerate((("Qwen/Qwen2.5-0.5B-Instruct", "us_history_make_questions"),
                                       ("default", "code_with_cooking_style"))):
        folder = tmp_path / "activations" / f"{k}{'a' * 23}"
        folder.mkdir(parents=True)
        (folder / "heads.npy").write_bytes(b"\0" * (3 * 2**20 * (k + 1)))
        (folder / "meta.json").write_text(json.dumps({
            "key": folder.name, "model": f"fingerprint{k}", "model_name": model, "distribution": dist,
            "split": "test", "template": "plain", "position": "last", "dtype": "float32", "n_texts": 4321 + k,
            "created": time.time() - 86400 * (k + 1)}))
    return tmp_path


def test_cache_ls_at_80_columns_shows_model_data_texts_and_size_whole(cache_home: Path) -> None:
    out = _invoke(["cache", "ls"], TERMINAL_80)
    _fits_80(out)
    for k, (model, dist) in enumerate((("Qwen/Qwen2.5-0.5B-Instruct", "us_history_make_questions"),
                                       ("default", "code_with_cooking_style"))):
        line = next(line for line in out.splitlines() if line.startswith(model + " "))
        assert line.split()[1:5] == [dist, "test", str(4321 + k), f"{3 * (k + 1)}.0"]
    records = json.loads(_invoke(["cache", "ls", "--format", "json"]))
    assert [r["n_texts"] for r in records] == [4322, 4321]  # oldest first
    assert records[1]["size_bytes"] == 3 * 2**20 + len((cache_home / "activations" / f"0{'a' * 23}" / "meta.json")
                                                        .read_bytes())


def test_interventions_and_models_lists_fit_80_columns() -> None:
    from genies.interventions.registry import available
    from genies.models.catalog import list_models

    out = _invoke(["interventions", "list"], TERMINAL_80)
    _fits_80(out)
    for name, cls in available().items():
        assert re.search(rf"^{name}\s+{cls.family}\s", out, re.M), name
    assert {r["name"] for r in json.loads(_invoke(["interventions", "list", "-f", "json"]))} == set(available())
    out = _invoke(["models", "list"], TERMINAL_80)
    _fits_80(out)
    default = next(e for e in list_models() if e.name == "default")
    assert default.size_mib is not None and human_size(default.size_mib * 2**20) in out
    shown = _invoke(["interventions", "show", "lora"], TERMINAL_80)
    _fits_80(shown)
    assert re.search(r"^learning_rate\s+0\.0002\s+0\.0002\s+0\.002\s", shown, re.M)


# -- help ------------------------------------------------------------------------------------------

def _command_paths() -> list[list[str]]:
    """Every command of the tree, as the words that name it."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(APP), [])
    return paths


def test_every_command_takes_h_and_its_help_names_values_like_click() -> None:
    for path in _command_paths():
        out = _invoke([*path, "-h"], {"COLUMNS": "200"})
        assert "Usage:" in out, path
        # typer's own names: <bool> for a flag, <list[str]> for a repeatable option, {name}
        assert not re.search(r"<(bool|str|int|float|path|list\[[^]]*\]|Path)>|\{[a-z_]+\}", out), (path, out)


def test_run_help_shows_flags_bare_and_repeatable_options_as_repeatable() -> None:
    out = _invoke(["run", "--help"], {"COLUMNS": "200"})
    assert re.search(r"--intervention\s+-i\s+TEXT\.\.\.\s", out)
    assert re.search(r"--plain\s+One line per job", out)  # a flag names no value
    assert re.search(r"--out\s+PATH\s", out) and re.search(r"--seed\s+INTEGER\s", out)
    shown = _invoke(["results", "show", "-h"], {"COLUMNS": "200"})
    assert "Usage: genies results show [OPTIONS] RUN_DIR" in shown and re.search(r"--format\s+-f\s+table\|csv\|json", shown)


# -- what the run can support (issue 13) --------------------------------------------------------

def test_results_show_prints_the_paired_comparisons_and_says_what_is_beyond_noise(run_dir: Path) -> None:
    res = load_run(run_dir)
    out = _invoke(["results", "show", str(run_dir)], TERMINAL_80)
    _fits_80(out)
    assert "Paired comparisons" in out and len(res.comparisons) == 6  # 4 interventions: 6 pairs
    for c in res.comparisons:
        line = next(line for line in out.splitlines() if f"{c.a} vs {c.b}" in line)
        assert number(c.mean_difference) in line and interval(c.ci_low, c.ci_high) in line
    from genies.report.support import run_support

    assert run_support(res).verdict_sentence()[:60] in " ".join(out.split())  # the report's sentence


def test_third_party_progress_bars_are_off_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    from genies.cli import quiet_third_party

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    transformers.logging.enable_progress_bar()
    quiet_third_party(verbose=True)
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    assert transformers.utils.logging.is_progress_bar_enabled()
    _invoke(["interventions", "list"])  # no --verbose
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TQDM_DISABLE"] == "1"
    assert not transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.enable_progress_bar()
    assert "--verbose" in _invoke(["-h"])


def test_the_left_out_columns_footnote_names_where_they_are_shown() -> None:
    """A command without --format (w2s) points at the file it writes instead."""
    from rich.console import Console

    from genies.commands._format import Column, print_table

    columns = [Column("name", lambda r: r), Column("a long optional column", lambda r: "0.50", "number", drop=1)]
    for shown_in in ("--format csv", "w2s.json"):
        console = Console(width=20, record=True, color_system=None)
        print_table(console, "t", columns, ["row"], shown_in=shown_in)
        text = " ".join(console.export_text().split())
        assert f"not shown at this width: a long optional column (a wider terminal or {shown_in} shows them)" in text
