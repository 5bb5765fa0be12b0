"""The run-directory schema: compute_results is pure, write_run writes every file (and removes
stale ones) deterministically, and every field survives write -> load_run -> the report."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from genies.data.schema import Distribution, Example
from genies.data.shift import Shift
from genies.pipeline.results import compute_results
from genies.pipeline.run_dir import (
    COLUMNS,
    EVALUATION_FIELDS,
    ComputedRun,
    Evaluation,
    FailedJob,
    ResultRow,
    RunDirError,
    RunResults,
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
