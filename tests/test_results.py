"""The run-directory schema: compute_results is pure, write_run writes every file (and removes
stale ones) deterministically, and every field survives write -> load_run -> the report."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from genies import intervals, metrics
from genies.data.schema import Distribution, Example, eval_pairs
from genies.data.shift import Shift
from genies.intervals import Comparison
from genies.metrics import Aggregate
from genies.pipeline.results import compute_results, result_row, summarize
from genies.pipeline.run_dir import (
    COLUMNS,
    EVALUATION_FIELDS,
    ComputedRun,
    Evaluation,
    FailedJob,
    ResultRow,
    RunDirError,
    RunResults,
    evaluation_name,
    load_run,
    plain_json,
    read_evaluation,
    write_run,
)
from genies.report.build import report_payload
from genies.report.load import load_runs
from genies.report.testing import fake_evaluation, fake_examples, write_run_dir

# ---- stand-ins for the plan and the job store: compute_results reads only these attributes ----


@dataclass(frozen=True)
class Fit:
    intervention: str
    source: str | None

    @property
    def trained_on(self) -> str | None:
        return self.source


@dataclass(frozen=True)
class Job:
    fit: Fit
    distribution: str
    split: str
    key: str

    def data(self, load: Callable[[str], Distribution]) -> Distribution:
        return load(self.distribution)


@dataclass(frozen=True)
class Cell:
    intervention: str
    shift: Shift
    generalization: Job
    source_id: Job
    baseline: Job
    target_tuned: tuple[Job, ...]
    target_mix: float = 0.0


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]


@dataclass(frozen=True)
class Preds:
    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: list[np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Store:
    """Predictions by job key; a missing key is a failed job."""

    def __init__(self, predictions: dict[str, Preds]) -> None:
        self.predictions = predictions

    def has_predictions(self, key: str) -> bool:
        return key in self.predictions

    def load_predictions(self, key: str) -> Preds:
        return self.predictions[key]


DISTS = {
    name: Distribution.from_examples(name, [], fake_examples(name, 6, 0, prompt_words=5, response_words=3))
    for name in ("src", "tgt")
}
REPORTED = {"legacy_metrics": {"eval_accuracy": np.float64(0.71), "loss": float("nan")}, "warning": "no per-pair p"}


def _preds(dist: str, p: float, info: dict[str, Any] | None = None) -> Preds:
    pairs = DISTS[dist].eval_pairs("test")
    return Preds(np.array([q.example_index for q in pairs]), np.array([q.preferred_index for q in pairs]),
                 np.array([q.dispreferred_index for q in pairs]), np.full(len(pairs), p),
                 [np.arange(len(ex.responses), dtype=float) for ex in DISTS[dist].test], dict(info or {}))


def _plan(intervention: str = "m") -> tuple[Plan, dict[str, Preds]]:
    m_src, zero, tuned = Fit(intervention, "src"), Fit("zero_shot", None), Fit("lora", "tgt")
    gen, sid = Job(m_src, "tgt", "test", f"{intervention}-gen"), Job(m_src, "src", "test", f"{intervention}-sid")
    base, tt = Job(zero, "tgt", "test", "base"), Job(tuned, "tgt", "test", "tt")
    cell = Cell(intervention, Shift("src", "tgt", "tgt", "skill", "extreme"), gen, sid, base, (tt,))
    preds = {gen.key: _preds("tgt", 0.8, REPORTED), sid.key: _preds("src", 0.7), base.key: _preds("tgt", 0.4),
             tt.key: _preds("tgt", 0.9)}
    return Plan([cell]), preds


def _compute(plan: Plan, preds: dict[str, Preds], failed: tuple[dict[str, str], ...] = ()) -> ComputedRun:
    return compute_results(plan, Store(preds), DISTS.__getitem__, 0, {"model": "m", "interventions": ["m"]}, failed)


def test_compute_results_is_pure_and_write_run_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    computed = _compute(*_plan())
    assert list(tmp_path.iterdir()) == []  # computing wrote nothing
    (row,) = computed.results.rows
    assert (row.generalization_accuracy, row.baseline_accuracy, row.target_tuned_capability) == (1.0, 0.0, 1.0)
    assert computed.results.run_dir is None
    assert sorted(ev.path for ev in computed.evaluations) == sorted(row.evaluation_paths())

    written = write_run(tmp_path / "run", computed)
    assert written.run_dir == tmp_path / "run" and computed.results.run_dir is None  # a copy, not a mutation
    assert load_run(tmp_path / "run").to_json() == written.to_json()  # (rows hold NaN: compare as JSON)
    doc = json.loads((tmp_path / "run" / row.target_evaluation).read_text())
    assert doc["info"] == {"legacy_metrics": {"eval_accuracy": 0.71, "loss": None}, "warning": "no per-pair p"}
    assert json.loads((tmp_path / "run" / row.baseline_evaluation).read_text())["info"] == {}


def test_rewriting_gives_the_same_bytes_and_removes_stale_evaluations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, _compute(*_plan("old")))
    stale = {p.name for p in (run / "evaluations").iterdir()} - {"zero_shot--none--tgt.json", "lora--tgt--tgt.json"}
    assert stale == {"old--src--tgt.json", "old--src--src.json"}
    write_run(run, _compute(*_plan()))
    first = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert not stale & {p.name for p in (run / "evaluations").iterdir()}
    write_run(run, _compute(*_plan()))
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == first
    assert not [p for p in run.rglob(".*")]  # no temporary files left behind


def test_results_written_before_the_target_mix_column_read_back_as_ordinary_rows(tmp_path: Path) -> None:
    written = write_run(tmp_path / "run", _compute(*_plan()))
    path = tmp_path / "run" / "results.json"
    doc = json.loads(path.read_text())
    for row in doc["rows"]:
        del row["target_mix"]
    path.write_text(json.dumps(doc))
    assert [r.target_mix for r in load_run(tmp_path / "run").rows] == [0.0]
    assert load_run(tmp_path / "run").to_json() == written.to_json()


def test_failed_cells_and_jobs_are_typed(tmp_path: Path) -> None:
    plan, preds = _plan()
    del preds["m-gen"]
    computed = _compute(plan, preds, ({"job": "predict m", "error": "boom"},))
    assert computed.results.rows == () and computed.evaluations == ()
    assert computed.results.failed_cells == ("m: src->tgt",)
    assert computed.results.failed == (FailedJob("predict m", "boom"),)
    assert load_run(write_run(tmp_path, computed).run_dir).failed == (FailedJob("predict m", "boom"),)


def test_write_run_refuses_rows_pointing_at_unwritten_evaluations(tmp_path: Path) -> None:
    computed = _compute(*_plan())
    with pytest.raises(ValueError, match="evaluations/m--src--tgt.json"):
        write_run(tmp_path, ComputedRun(computed.results, computed.evaluations[:1]))


def _distinct_row(evaluation: str) -> ResultRow:
    """A row whose every field holds a value no other field has (and that no default would give)."""
    values: dict[str, Any] = {}
    for k, f in enumerate(fields(ResultRow)):
        if f.name in EVALUATION_FIELDS:
            values[f.name] = evaluation
        else:
            values[f.name] = {"float": 0.125 + k, "str": f"{f.name}-value", "bool": True}[f.type]
    return ResultRow(**values)


def test_every_result_row_field_survives_write_load_and_the_report(tmp_path: Path) -> None:
    """Generated from ResultRow's fields: a field added to the row but not carried by the writer,
    the reader or the report's loading fails here."""
    ev = fake_evaluation("m", "src", "tgt", DISTS["tgt"].test, 0.7, np.random.default_rng(0))
    row = _distinct_row(ev.path)
    results = RunResults({"model": "m"}, (row,), (), (FailedJob("fit x", "boom"),), ("x: a->b",))
    write_run(tmp_path, ComputedRun(results, (ev,)))
    loaded = load_run(tmp_path)
    assert loaded.rows == (row,) and loaded.failed == results.failed and loaded.failed_cells == results.failed_cells
    assert load_runs([tmp_path])[0].rows == (row,)
    with (tmp_path / "results.csv").open() as handle:
        (csv_row,) = list(csv.DictReader(handle))
    assert tuple(csv_row) == COLUMNS == tuple(f.name for f in fields(ResultRow) if f.name not in EVALUATION_FIELDS)
    assert csv_row == {c: repr(v) if isinstance(v, float) else str(v) for c, v in
                       ((c, getattr(row, c)) for c in COLUMNS)}
    assert COLUMNS[:3] == ("source", "target", "target_reference") and len(COLUMNS) == 27


def test_the_report_fixture_is_written_by_the_real_writer(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=2, interventions=("zero_shot", "lora"), n_examples=3, failed=1)
    raw = json.loads((run / "results.json").read_text())
    assert all(set(r) == {f.name for f in fields(ResultRow)} for r in raw["rows"])
    loaded = load_run(run)
    assert len(loaded.rows) == 4 and loaded.failed_cells == ("ccs: source_0->target_0",)
    for row in loaded.rows:  # every row points at files that exist and agree with it
        target = read_evaluation(run / row.target_evaluation)
        assert target.accuracy == row.generalization_accuracy
        assert read_evaluation(run / row.target_tuned_evaluation).accuracy == row.target_tuned_capability
    data, _ = report_payload(load_runs([run]), None)
    assert len(data["rows"]) == 4 and data["runs"][0]["failed"] == [{"job": "fit ccs on source_0",
                                                                     "error": loaded.failed[0].error}]


def test_evaluation_round_trip_keeps_scores_and_info(tmp_path: Path) -> None:
    examples = [Example("p", ("a", "b", "c"), 2), Example("q", ("x", "y"), 0)]
    ev = Evaluation("m", None, "d", "test", 0.5, 0.25, 0.5, tuple(examples), np.array([0, 0, 1]), np.array([2, 2, 0]),
                    np.array([0, 1, 1]), np.array([0.9, math.nan, 0.2]), ((1.0, math.nan, 3.0), None),
                    plain_json({"warning": "w", "n": np.int64(3), "arr": np.array([0.5, np.inf])}))
    write_run(tmp_path, ComputedRun(RunResults({}, (), ()), (ev,)))
    back = read_evaluation(tmp_path / ev.path)
    assert back.examples == ev.examples and back.info == {"warning": "w", "n": 3, "arr": [0.5, None]}
    for name in ("example_index", "preferred_index", "dispreferred_index", "p_preferred"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ev, name))
    assert back.response_scores[1] is None and np.isnan(back.response_scores[0][1])
    assert json.loads((tmp_path / ev.path).read_text(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))


def test_old_documents_without_info_read_as_empty(tmp_path: Path) -> None:
    ev = fake_evaluation("m", "src", "tgt", DISTS["tgt"].test, 0.7, np.random.default_rng(0))
    doc = ev.to_json()
    del doc["info"]
    (tmp_path / "e.json").write_text(json.dumps(doc))
    assert read_evaluation(tmp_path / "e.json").info == {}


def test_unsupported_schema_version_names_the_file(tmp_path: Path) -> None:
    write_run(tmp_path, ComputedRun(RunResults({}, (), ()), ()))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["schema_version"] == 2
    (tmp_path / "results.json").write_text(json.dumps({**doc, "schema_version": 1}))
    with pytest.raises(RunDirError, match=r"results\.json: schema_version 1 is not supported .*rerun the same"):
        load_run(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="is .*empty a finished `genies run` folder"):
        load_run(tmp_path / "empty")


def test_results_show_raises_a_genies_error_naming_a_missing_folder(tmp_path: Path) -> None:
    from genies.commands import results as results_command

    app = typer.Typer()
    results_command.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["show", str(tmp_path / "nothing")])
    assert isinstance(result.exception, RunDirError)
    assert str(result.exception) == f"{tmp_path / 'nothing'}: run directory not found"


# ---- the run directory's files, byte for byte, and every error its reader can raise ----

NAN = float("nan")


def _golden_run() -> tuple[ComputedRun, ResultRow, Evaluation]:
    """One evaluation, one row pointing at it (a NaN, an inf and a False among its values), and
    one of each other record, with names that need sanitizing."""
    examples = (Example("p?", ("yes", "no"), 0), Example("q?", ("a", "b", "c"), 2))
    ev = Evaluation("_my method!_", "src/x y", "tgt", "test", 0.5, 0.125, 0.75, examples, np.array([0, 1, 1]),
                    np.array([0, 2, 2]), np.array([1, 0, 1]), np.array([0.9, NAN, 0.25]), ((1.5, NAN), None),
                    {"k": np.float32(0.5), "bad": math.inf})
    row = replace(_distinct_row(ev.path), de_ci_low=NAN, de_ci_high=math.inf, length_cue_flag=False,
                  target_tuned_evaluation="")
    results = RunResults({"model": "m"}, (row,), (Aggregate("m", "all", 0.25, NAN, 0.5, 2, 0.75),),
                         (FailedJob("fit x", "boom"),), ("x: a->b",),
                         (Comparison("a", "b", 2, 0.125, -0.5, 0.75, 0.5),))
    return ComputedRun(results, (ev,)), row, ev


def test_a_run_directory_is_written_as_exactly_these_files(tmp_path: Path) -> None:
    computed, row, ev = _golden_run()
    (tmp_path / "evaluations").mkdir()
    (tmp_path / "evaluations" / "stale.json").write_text("{}")
    (tmp_path / "evaluations" / "notes.txt").write_text("kept")
    written = write_run(tmp_path, computed)
    assert written.run_dir == tmp_path and written.rows == (row,)
    assert sorted(p.name for p in (tmp_path / "evaluations").iterdir()) == ["my_method--src_x_y--tgt.json",
                                                                            "notes.txt"]
    assert ev.path == "evaluations/my_method--src_x_y--tgt.json"
    evaluation = {
        "intervention": "_my method!_", "trained_on": "src/x y", "distribution": "tgt", "split": "test",
        "accuracy": 0.5, "brier": 0.125, "average_probability": 0.75,
        "examples": [{"prompt": "p?", "responses": ["yes", "no"], "preferred": 0},
                     {"prompt": "q?", "responses": ["a", "b", "c"], "preferred": 2}],
        "pairs": [{"example_index": 0, "preferred_index": 0, "dispreferred_index": 1, "p_preferred": 0.9},
                  {"example_index": 1, "preferred_index": 2, "dispreferred_index": 0, "p_preferred": None},
                  {"example_index": 1, "preferred_index": 2, "dispreferred_index": 1, "p_preferred": 0.25}],
        "response_scores": [[1.5, None], None], "info": {"k": 0.5, "bad": None}}
    assert (tmp_path / ev.path).read_text() == json.dumps(evaluation) + "\n"

    text = (tmp_path / "results.json").read_text()
    assert text.startswith('{\n "schema_version": 2,\n "run": {\n  "model": "m"\n },\n "rows": [\n  {\n   "source": ')
    assert text.endswith("\n ]\n}\n")
    doc = json.loads(text)
    assert list(doc) == ["schema_version", "run", "rows", "aggregates", "failed", "failed_cells", "comparisons"]
    assert doc["rows"][0] == {**asdict(row), "de_ci_low": None, "de_ci_high": None}
    assert doc["aggregates"] == [{"intervention": "m", "scope": "all", "mean_de": 0.25, "ci_low": None,
                                  "ci_high": 0.5, "n_shifts": 2, "mean_generalization_accuracy": 0.75}]
    assert doc["failed"] == [{"job": "fit x", "error": "boom"}] and doc["failed_cells"] == ["x: a->b"]
    assert doc["comparisons"] == [{"a": "a", "b": "b", "n_shifts": 2, "mean_difference": 0.125, "ci_low": -0.5,
                                   "ci_high": 0.75, "share_a_better": 0.5}]

    header, line, end = (tmp_path / "results.csv").read_bytes().decode().split("\n")  # "\n", not "\r\n"
    assert header == ",".join(COLUMNS) and end == ""
    cells = dict(zip(COLUMNS, line.split(","), strict=True))
    assert (cells["de_ci_low"], cells["de_ci_high"], cells["length_cue_flag"]) == ("", "", "False")
    assert cells["source"] == "source-value" and cells["generalization_accuracy"] == repr(row.generalization_accuracy)

    back = load_run(tmp_path)
    assert back.run == {"model": "m"} and back.failed == computed.results.failed
    assert back.failed_cells == ("x: a->b",) and back.comparisons == computed.results.comparisons
    (agg,) = back.aggregates
    assert math.isnan(agg.ci_low) and replace(agg, ci_low=0.0) == Aggregate("m", "all", 0.25, 0.0, 0.5, 2, 0.75)
    read = read_evaluation(tmp_path / ev.path)
    assert (read.intervention, read.trained_on, read.distribution, read.split) == ("_my method!_", "src/x y",
                                                                                  "tgt", "test")
    assert (read.accuracy, read.brier, read.average_probability) == (0.5, 0.125, 0.75)
    assert read.info == {"k": 0.5, "bad": None} and read.p_preferred.dtype == np.float64
    np.testing.assert_array_equal(read.p_preferred, [0.9, NAN, 0.25])
    assert read.response_scores[0][0] == 1.5 and read.response_scores[1] is None


def test_write_run_names_every_missing_evaluation(tmp_path: Path) -> None:
    computed, row, _ = _golden_run()
    rows = (replace(row, source_evaluation="evaluations/b.json", baseline_evaluation="evaluations/a.json"),)
    with pytest.raises(ValueError) as err:
        write_run(tmp_path, ComputedRun(replace(computed.results, rows=rows), computed.evaluations))
    assert str(err.value) == "rows point at evaluations that are not written: evaluations/a.json, evaluations/b.json"
    assert list(tmp_path.iterdir()) == []


def test_evaluation_names_keep_only_safe_characters() -> None:
    assert evaluation_name("a/b c", None, "x..y-z") == "a_b_c--none--x..y-z.json"
    assert evaluation_name("__m__", "!!src", "d") == "m--src--d.json"
    assert evaluation_name("MMS", "X_", "Big X") == "MMS--X--Big_X.json"


def test_an_evaluation_with_misaligned_pair_arrays_is_not_written() -> None:
    _, _, ev = _golden_run()
    with pytest.raises(ValueError, match="zip"):
        replace(ev, p_preferred=np.array([0.9, 0.1, 0.25, 0.5])).to_json()


def test_plain_json_unwraps_numpy_and_stringifies_the_rest() -> None:
    value = {1: (np.int64(2), np.float32(0.5), NAN, -math.inf, True, None, "s", Path("x")), "a": np.array([1, 2])}
    assert plain_json(value) == {"1": [2, 0.5, None, None, True, None, "s", "x"], "a": [1, 2]}
    assert type(plain_json({"n": np.int64(2)})["n"]) is int


def test_aggregate_finds_one_intervention_and_scope() -> None:
    aggs = tuple(Aggregate(i, s, k, 0.0, 1.0, 1, 0.5) for k, (i, s) in
                 enumerate([("a", "category:x"), ("a", "all"), ("b", "all")]))
    results = RunResults({}, (), aggs)
    assert results.aggregate("a") is aggs[1] and results.aggregate("a", "category:x") is aggs[0]
    assert results.aggregate("b", "category:x") is None and results.aggregate("c") is None


def _written(tmp_path: Path, **changes: Any) -> Path:
    """A run directory whose results.json is the golden one with `changes` to its document."""
    write_run(tmp_path, _golden_run()[0])
    doc = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**doc, **changes}))
    return tmp_path / "results.json"


def _load_error(run: Path) -> str:
    with pytest.raises(RunDirError) as err:
        load_run(run)
    return str(err.value)


def test_load_run_names_the_file_and_the_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _load_error(tmp_path / "empty") == (f"{tmp_path / 'empty' / 'results.json'}: file not found: is "
                                               f"{tmp_path / 'empty'} a finished `genies run` folder?")
    from genies.judging import JSON_FILE
    from genies.pipeline.run_dir import OTHER_FOLDERS
    from genies.weak_to_strong.files import RESULTS_FILE

    assert [file for file, _, _ in OTHER_FOLDERS] == [JSON_FILE, RESULTS_FILE, "sweep.json"]
    for file, command, where in OTHER_FOLDERS:  # another command's folder is named as such
        folder = tmp_path / command.replace(" ", "-")
        folder.mkdir()
        (folder / file).write_text("{}")
        assert _load_error(folder) == (f"{folder / 'results.json'}: file not found: {folder} is a `{command}` "
                                       f"folder, not a `genies run` one ({where})")
    path = tmp_path / "results.json"
    for doc in ([], {"schema_version": 2}, {"schema_version": 2, "rows": {}}):
        path.write_text(json.dumps(doc))
        assert _load_error(tmp_path) == f"{path}: expected an object with a 'rows' list"
    path.write_text("{")
    assert _load_error(tmp_path).startswith(f"{path}: not valid JSON (Expecting property name")
    path.write_text(json.dumps({"schema_version": 1, "rows": []}))
    assert _load_error(tmp_path) == (f"{path}: schema_version 1 is not supported (this genies reads 2); rerun the "
                                     "same `genies run` command to rewrite it from the cached jobs")
    path.write_text(json.dumps({"rows": []}))
    assert _load_error(tmp_path).startswith(f"{path}: schema_version None is not supported")


def test_load_run_reads_absent_optional_parts_as_empty(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 2, "rows": [], "run": None,
                                                       "failed_cells": [3]}))
    back = load_run(tmp_path)
    assert (back.run, back.rows, back.aggregates, back.failed, back.comparisons) == ({}, (), (), (), ())
    assert back.failed_cells == ("3",) and back.run_dir == tmp_path


@pytest.mark.parametrize(("part", "record", "problem"), [
    ("rows", 7, "row 0 is not an object"),
    ("rows", {"target": "t"}, "row 0 lacks source, target_reference, generalization_accuracy"),
    ("rows", {"generalization_accuracy": True}, "row 0: generalization_accuracy should be a float, not True"),
    ("rows", {"length_cue_flag": 1}, "row 0: length_cue_flag should be a bool, not 1"),
    ("rows", {"source": None}, "row 0: source should be a str, not None"),
    ("aggregates", {"n_shifts": 2.0}, "aggregate 0: n_shifts should be an int, not 2.0"),
    ("aggregates", {"n_shifts": False}, "aggregate 0: n_shifts should be an int, not False"),
    ("aggregates", {"scope": 1}, "aggregate 0: scope should be a str, not 1"),
    ("failed", {"error": 3}, "failed job 0: error should be a str, not 3"),
    ("comparisons", {"mean_difference": "0.1"}, "comparison 0: mean_difference should be a float, not '0.1'"),
])
def test_a_mistyped_record_names_the_file_the_record_and_the_field(tmp_path: Path, part: str, record: Any,
                                                                   problem: str) -> None:
    doc = json.loads((_written(tmp_path).read_text()))
    first = doc[part][0]
    doc[part][0] = record if not isinstance(record, dict) else (
        {k: v for k, v in first.items() if k not in ("source", "target_reference", "generalization_accuracy")}
        | record if "target" in record else {**first, **record})
    path = _written(tmp_path, **{part: doc[part]})
    assert _load_error(tmp_path) == f"{path}: {problem}"


def test_typed_records_take_integers_and_null_for_floats(tmp_path: Path) -> None:
    doc = json.loads(_written(tmp_path).read_text())
    aggregate = {**doc["aggregates"][0], "mean_de": 1, "ci_high": None}
    _written(tmp_path, aggregates=[aggregate])
    (back,) = load_run(tmp_path).aggregates
    assert type(back.mean_de) is float and back.mean_de == 1.0 and math.isnan(back.ci_high) and back.n_shifts == 2


def _evaluation_error(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    with pytest.raises(RunDirError) as err:
        read_evaluation(path)
    assert str(err.value).startswith(f"{path}: ")
    return str(err.value)[len(f"{path}: "):]


def test_read_evaluation_names_the_example_or_pair_that_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    examples = [{"prompt": "p", "responses": ["a", "b"], "preferred": 0},
                {"prompt": "q", "responses": ["a", "b", "c"], "preferred": 2}]

    def pair(e: int, a: int, b: int) -> dict[str, Any]:
        return {"example_index": e, "preferred_index": a, "dispreferred_index": b, "p_preferred": 0.5}

    assert _evaluation_error(path, {"examples": examples}) == "missing key 'pairs'"
    assert _evaluation_error(path, ["not", "an", "object"]).startswith("missing key ")
    for bad in ({"responses": ["a", "b"], "preferred": 2}, {"responses": ["a", "b"], "preferred": -1},
                {"responses": ["a", "b"]}, {"responses": "ab", "preferred": 0}, ["a", "b"]):
        assert _evaluation_error(path, {"examples": [examples[0], bad], "pairs": []}) == (
            "example 1: 'preferred' does not index its responses")
    for e in (2, -1):
        assert _evaluation_error(path, {"examples": examples, "pairs": [pair(0, 0, 1), pair(e, 0, 1)]}) == (
            f"pair 1: example_index {e} outside 0..1")
    for a, b in ((0, 3), (3, 0), (-1, 0), (0, -1)):
        assert _evaluation_error(path, {"examples": examples, "pairs": [pair(1, a, b)]}) == (
            "pair 0: response index outside the example's 3 responses")
    # the boundaries are inside: first and last example, first and last response
    path.write_text(json.dumps({"examples": [{"responses": ["a", "b"], "preferred": 1}, *examples],
                                "pairs": [pair(0, 1, 0), pair(2, 2, 0), pair(2, 0, 2)]}))
    ev = read_evaluation(path)
    assert [ex.prompt for ex in ev.examples] == ["", "p", "q"] and ev.examples[0].preferred == 1
    assert ev.examples[2].responses == ("a", "b", "c")
    np.testing.assert_array_equal(ev.example_index, [0, 2, 2])
    np.testing.assert_array_equal(ev.preferred_index, [1, 2, 0])
    np.testing.assert_array_equal(ev.dispreferred_index, [0, 0, 2])
    assert (ev.intervention, ev.trained_on, ev.distribution, ev.split, ev.info, ev.response_scores) == (
        "", None, "", "", {}, None)
    assert math.isnan(ev.accuracy) and math.isnan(ev.brier) and math.isnan(ev.average_probability)
    path.write_text(json.dumps({"examples": examples, "pairs": []}))  # no pairs: the indices still index
    assert [getattr(read_evaluation(path), k).dtype for k in ("example_index", "preferred_index",
                                                             "dispreferred_index")] == [np.int64] * 3


def test_read_evaluation_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(RunDirError) as err:
        read_evaluation(tmp_path / "none.json")
    assert str(err.value) == f"{tmp_path / 'none.json'}: file not found"
    (tmp_path / "e.json").write_text("[1,")
    with pytest.raises(RunDirError, match=r"e\.json: not valid JSON \(Expecting value"):
        read_evaluation(tmp_path / "e.json")


def test_compute_results_takes_the_best_target_tuned_candidate_and_goes_on_past_a_failed_cell() -> None:
    """Cells in plan order: one whose prediction is missing, one with two target-tuned
    candidates (the second wins), one without a target-tuned reference, and a target-mixing
    ablation of the second (kept as a row, left out of the aggregates)."""
    m, zero = Fit("m", "src"), Fit("zero_shot", None)
    shift = Shift("src", "tgt", "tgt", "skill", "extreme")
    sid, base = Job(m, "src", "test", "sid"), Job(zero, "tgt", "test", "base")
    weak, strong = Job(Fit("prompt", "tgt"), "tgt", "test", "weak"), Job(Fit("lora", "tgt"), "tgt", "test", "strong")

    def gen(name: str) -> Job:
        return Job(Fit(name, "src"), "tgt", "test", f"{name}-gen")

    plan = Plan([Cell("lost", shift, gen("lost"), sid, base, (weak,)),
                 Cell("m", shift, Job(m, "tgt", "test", "gen"), sid, base, (weak, strong)),
                 Cell("alone", shift, gen("alone"), sid, base, ()),
                 Cell("m", shift, gen("m-mixed"), sid, base, (weak, strong), target_mix=0.1)])
    scores = [None, np.array([[0.5], [1.5]]), *[np.arange(len(ex.responses)) for ex in DISTS["tgt"].test[2:]]]
    preds = {"gen": replace(_preds("tgt", 0.8), response_scores=scores), "sid": _preds("src", 0.7), "base": _preds("tgt", 0.4),
             "weak": _preds("tgt", 0.3), "strong": _preds("tgt", 0.9), "alone-gen": _preds("tgt", 0.6),
             "m-mixed-gen": _preds("tgt", 0.6)}
    computed = _compute(plan, preds)
    results = computed.results
    assert results.failed_cells == ("lost: src->tgt",)
    best, alone, mixed = results.rows
    assert (best.intervention, best.target_tuned_capability, best.target_tuned_capability_intervention,
            best.target_tuned_evaluation) == ("m", 1.0, "lora", "evaluations/lora--tgt--tgt.json")
    assert best.differential_elicitation == pytest.approx(1.0) and best.target_mix == 0.0
    assert alone.intervention == "alone" and alone.target_tuned_evaluation == ""
    assert alone.target_tuned_capability_intervention == "" and math.isnan(alone.target_tuned_capability)
    assert math.isnan(alone.differential_elicitation) and math.isnan(alone.de_ci_low)
    assert (mixed.intervention, mixed.target_mix, mixed.generalization_accuracy) == ("m", 0.1, 1.0)
    assert results.aggregate("m").n_shifts == 1 and results.aggregate("m").mean_de == pytest.approx(1.0)
    assert "evaluations/prompt--tgt--tgt.json" not in {ev.path for ev in computed.evaluations}  # the loser
    assert [ev.path for ev in computed.evaluations] == sorted(ev.path for ev in computed.evaluations)
    (ev,) = [e for e in computed.evaluations if e.path == best.target_evaluation]
    assert (ev.split, ev.brier, ev.average_probability) == ("test", pytest.approx(0.04), pytest.approx(0.8))
    assert ev.response_scores == (None, (0.5, 1.5), *(tuple(float(v) for v in range(len(ex.responses)))
                                                     for ex in DISTS["tgt"].test[2:]))


def test_summarize_aggregates_and_compares_the_ordinary_rows_with_their_replicates() -> None:
    """DE of a: 0.5 and 0.3 on two shifts, of b: 0.1 and 0.2, plus a target-mixing row of a (DE
    9) that must count nowhere. Replicates spread around each DE widen the aggregate's interval
    compared with replicates that all equal it (the two-level bootstrap reads them)."""
    base = _distinct_row("")
    rows = []
    for intervention, shift, value, mix in (("a", 1, 0.5, 0.0), ("a", 2, 0.3, 0.0), ("b", 1, 0.1, 0.0),
                                            ("b", 2, 0.2, 0.0), ("a", 1, 9.0, 0.1)):
        rows.append(replace(base, intervention=intervention, source=f"s{shift}", target=f"t{shift}",
                            differential_elicitation=value, generalization_accuracy=0.5, target_mix=mix))
    rng = np.random.default_rng(0)
    flat = [np.full(200, r.differential_elicitation) for r in rows]
    noisy = [r.differential_elicitation + rng.normal(0, 0.5, 200) for r in rows]
    tight, wide = (summarize({}, rows, reps, seed=0, n_boot=200) for reps in (flat, noisy))
    a = tight.aggregate("a")
    assert (a.mean_de, a.n_shifts) == (pytest.approx(0.4), 2) and tight.aggregate("b").mean_de == pytest.approx(0.15)
    assert wide.aggregate("a").ci_high - wide.aggregate("a").ci_low > 2 * (a.ci_high - a.ci_low)
    (comparison,) = tight.comparisons
    reseeded = summarize({}, rows, noisy, seed=1, n_boot=200).comparisons[0]
    assert (reseeded.ci_low, reseeded.ci_high) != (wide.comparisons[0].ci_low, wide.comparisons[0].ci_high)
    assert (comparison.a, comparison.b, comparison.n_shifts) == ("a", "b", 2)
    assert (comparison.mean_difference, comparison.share_a_better) == (pytest.approx(0.25), 1.0)
    with pytest.raises(ValueError):
        summarize({}, rows, flat[:-1], seed=0, n_boot=200)


def test_a_tied_prediction_is_settled_by_the_runs_seed() -> None:
    ties = Distribution.from_examples("ties", [], [Example(f"p{i}", ("a", "b"), 0) for i in range(40)])
    job = Job(Fit("m", "src"), "ties", "test", "k")
    pred = Preds(np.arange(40), np.zeros(40, dtype=np.int64), np.ones(40, dtype=np.int64), np.full(40, 0.5))
    cell = Cell("m", Shift("src", "ties", "ties", "skill", "extreme"), job, job, job, (job,))

    def accuracy(seed: int) -> float:
        computed = compute_results(Plan([cell]), Store({"k": pred}), {"ties": ties}.__getitem__, seed, {})
        return computed.results.rows[0].generalization_accuracy

    coin = [float(np.mean(np.random.default_rng(s).random(40) < 0.5)) for s in (7, 0)]
    assert coin[0] != coin[1]
    assert accuracy(7) == coin[0] and accuracy(0) == coin[1]


def _hand_evaluation(name: str, p: list[float], accuracy: float, distribution: str = "tgt",
                     split: str = "test") -> Evaluation:
    """Four 3-response examples (the preferred response the longest), two pairs each."""
    examples = tuple(Example(f"q{i}", ("aaaa", "bb", "c"), 0) for i in range(4))
    pairs = eval_pairs(examples)
    return Evaluation(name, "src", distribution, split, accuracy, 0.19, 0.65, examples,
                      np.array([q.example_index for q in pairs]), np.array([q.preferred_index for q in pairs]),
                      np.array([q.dispreferred_index for q in pairs]), np.array(p, dtype=np.float64))


def test_a_result_row_holds_the_metrics_of_its_four_evaluations() -> None:
    """Hand-computed from the evaluations' accuracies (generalization 0.625, baseline 0.25,
    target-tuned 1.0) and the generalization pairs' probabilities; the preferred response is the
    longer one in every pair. A 0.5 in each evaluation makes the replicates depend on the seed's
    coins, so they must repeat exactly (four ties in each but the baseline)."""
    gen = _hand_evaluation("m", [0.8, 0.8, 0.2, 0.2, 0.5, 0.5, 0.5, 0.5], 0.625)
    base, tt = _hand_evaluation("zero_shot", [0.2, 0.5, 0.5, 0.2, 0.8, 0.5, 0.5, 0.5], 0.25), _hand_evaluation("lora", [0.9, 0.9, 0.1, 0.9, 0.5, 0.5, 0.5, 0.5], 1.0)
    source = _hand_evaluation("m", [0.7] * 8, 0.5, distribution="src")
    shift = Shift("src", "tgt", "tgt", "skill", "extreme")
    row, reps = result_row(shift, "m", gen, source, base, tt, seed=3, n_boot=50)
    assert (row.generalization_accuracy, row.baseline_accuracy, row.target_tuned_capability,
            row.source_ID_accuracy) == (0.625, 0.25, 1.0, 0.5)
    assert (row.differential_elicitation, row.elicitation) == (0.375, 0.625)
    assert (row.brier, row.average_probability, row.target_mix) == (0.19, 0.65, 0.0)
    # both orientations of every pair: bins at 0.8 and 0.2 of 4 items each, half of them won (off
    # by 0.3); the ties' 8 items (0.5, won and lost) are calibrated
    assert row.RMS_calibration_error == pytest.approx(0.3 * math.sqrt(8 / 16))
    assert row.ece == pytest.approx(0.3 * 8 / 16)
    assert math.isnan(row.legacy_RMS_calibration_error)  # no bin holds the 20 pairs it needs
    assert (row.length_longer_accuracy, row.length_shorter_accuracy, row.length_cue_flag) == (1.0, 0.0, True)
    # the accuracy interval resamples prompts (both pairs of an example together), with the run's seed
    p, groups = gen.p_preferred, gen.example_index
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == metrics.bootstrap_accuracy_ci(p, 3, groups=groups, n_boot=50)
    assert reps.shape == (50,) and (row.de_ci_low, row.de_ci_high) == intervals.percentile_interval(reps)
    assert row.de_ci_low < row.de_ci_high
    again = result_row(shift, "m", gen, source, base, tt, seed=3, n_boot=50)[1]
    np.testing.assert_array_equal(again, reps)
    # the prompt draws are the target's and the reference's own: renaming either changes them
    for other in (result_row(shift, "m", replace(gen, distribution="other"), source, base, tt, seed=3, n_boot=50),
                  result_row(shift, "m", replace(gen, split="validation"), source, base, tt, seed=3, n_boot=50),
                  result_row(shift, "m", gen, source, base, replace(tt, distribution="other"), seed=3, n_boot=50),
                  result_row(shift, "m", gen, source, base, replace(tt, split="validation"), seed=3, n_boot=50)):
        assert not np.array_equal(other[1], reps, equal_nan=True)
