"""The run directory (docs/running.md, RUN_DIR contract): typed rows, aggregates, writer, loader.

Everything here is computed from stored predictions and the run seed only, so the same plan
gives byte-identical `results.csv` / `results.json` / `evaluations/*.json` whether the jobs ran
just now, in an interrupted earlier run or in another run sharing the cache. The manifest is the
one file that records the circumstances (timings, hardware) and so differs between runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from genies import metrics
from genies.data.schema import Distribution
from genies.interventions.base import Predictions
from genies.pipeline.plan import Cell, Plan
from genies._io import write_atomic
from genies.pipeline.store import JobStore

SCHEMA_VERSION = 1
ORIGINAL_COLUMNS = (
    "source", "target", "target_reference", "generalization_accuracy", "baseline_accuracy",
    "baseline_intervention", "target_tuned_capability", "target_tuned_capability_intervention",
    "source_ID_accuracy", "RMS_calibration_error", "differential_elicitation",
)
EXTRA_COLUMNS = (
    "intervention", "category", "family", "elicitation", "brier", "ece", "accuracy_ci_low",
    "accuracy_ci_high", "length_longer_accuracy", "length_shorter_accuracy", "length_cue_flag",
    "average_probability", "legacy_RMS_calibration_error",
)
COLUMNS = ORIGINAL_COLUMNS + EXTRA_COLUMNS


@dataclass(frozen=True)
class ResultRow:
    """One (intervention, shift) row: the original GENIES columns, then genies' additions."""

    source: str
    target: str
    target_reference: str
    generalization_accuracy: float
    baseline_accuracy: float
    baseline_intervention: str
    target_tuned_capability: float
    target_tuned_capability_intervention: str
    source_ID_accuracy: float
    RMS_calibration_error: float
    differential_elicitation: float
    intervention: str
    category: str
    family: str
    elicitation: float
    brier: float
    ece: float
    accuracy_ci_low: float
    accuracy_ci_high: float
    length_longer_accuracy: float
    length_shorter_accuracy: float
    length_cue_flag: bool
    average_probability: float
    legacy_RMS_calibration_error: float
    target_evaluation: str
    source_evaluation: str
    baseline_evaluation: str
    target_tuned_evaluation: str


@dataclass
class RunResults:
    """A run's results: what `genies.run` returns and `load_run` reads back."""

    run: dict[str, Any]
    rows: list[ResultRow]
    aggregates: list[metrics.Aggregate]
    failed: list[dict[str, str]] = field(default_factory=list)
    failed_cells: list[str] = field(default_factory=list)
    run_dir: Path | None = None

    def aggregate(self, intervention: str, scope: str = "all") -> metrics.Aggregate | None:
        return next((a for a in self.aggregates if a.intervention == intervention and a.scope == scope), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run,
            "rows": [{k: _json_value(v) for k, v in asdict(r).items()} for r in self.rows],
            "aggregates": [{k: _json_value(v) for k, v in asdict(a).items()} for a in self.aggregates],
            "failed": self.failed,
            "failed_cells": self.failed_cells,
        }

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([_csv_value(getattr(row, c)) for c in COLUMNS])
        return buffer.getvalue()

    def write(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        write_atomic(run_dir / "results.csv", self.to_csv())
        write_atomic(run_dir / "results.json", json.dumps(self.to_json(), indent=1) + "\n")
        self.run_dir = run_dir


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _csv_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def load_run(run_dir: Path) -> RunResults:
    """Read a run directory written by `genies run` (schema_version 1)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished `genies run` folder?")
    doc = json.loads(path.read_text())
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')!r} is not supported "
                         f"(this genies reads {SCHEMA_VERSION})")
    types = {f.name: f.type for f in fields(ResultRow)}
    rows = [ResultRow(**{k: (math.nan if v is None and types[k] == "float" else v)
                         for k, v in r.items() if k in types}) for r in doc["rows"]]
    aggregates = [metrics.Aggregate(**{k: (math.nan if v is None else v) for k, v in a.items()})
                  for a in doc["aggregates"]]
    return RunResults(doc["run"], rows, aggregates, doc.get("failed", []), doc.get("failed_cells", []), run_dir)


def evaluation_name(intervention: str, trained_on: str | None, distribution: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")  # noqa: E731
    return f"{safe(intervention)}--{safe(trained_on or 'none')}--{safe(distribution)}.json"


def evaluation_doc(intervention: str, trained_on: str | None, dist: Distribution, split: str,
                   pred: Predictions, seed: int) -> dict[str, Any]:
    p = pred.p_preferred
    scores = pred.response_scores
    return {
        "intervention": intervention,
        "trained_on": trained_on,
        "distribution": dist.id,
        "split": split,
        "accuracy": metrics.accuracy(p, seed),
        "brier": metrics.brier(p),
        "average_probability": metrics.average_probability(p),
        "examples": [{"prompt": ex.prompt, "responses": list(ex.responses), "preferred": ex.preferred}
                     for ex in dist.split(split)],
        "pairs": [{"example_index": int(e), "preferred_index": int(a), "dispreferred_index": int(b),
                   "p_preferred": float(q)}
                  for e, a, b, q in zip(pred.example_index, pred.preferred_index, pred.dispreferred_index, p)],
        "response_scores": None if scores is None else [
            None if s is None else [_json_value(float(v)) for v in np.asarray(s).reshape(-1)] for s in scores],
    }


def compute_results(plan: Plan, store: JobStore, distribution: Callable[[str], Distribution], seed: int,
                    run: Mapping[str, Any], failed: Sequence[dict[str, str]] = (),
                    run_dir: Path | None = None) -> RunResults:
    """Rows, aggregates and (when `run_dir` is given) the evaluation files, from stored predictions.
    Cells with a missing prediction are left out of the rows and listed in `failed_cells`."""
    cache: dict[str, Predictions] = {}
    written: set[str] = set()

    def predictions(key: str) -> Predictions:
        if key not in cache:
            cache[key] = store.load_predictions(key)
        return cache[key]

    def evaluation(job) -> str:
        name = evaluation_name(job.fit.intervention, job.fit.source, job.distribution)
        if run_dir is not None and name not in written:
            doc = evaluation_doc(job.fit.intervention, job.fit.source, distribution(job.distribution), job.split,
                                 predictions(job.key), seed)
            write_atomic(Path(run_dir) / "evaluations" / name, json.dumps(doc) + "\n")
            written.add(name)
        return f"evaluations/{name}"

    rows, failed_cells = [], []
    for cell in plan.cells:
        needed = (cell.generalization, cell.source_id, cell.baseline, *cell.target_tuned)
        if not all(store.has_predictions(j.key) for j in needed):
            failed_cells.append(f"{cell.intervention}: {cell.shift.name}")
            continue
        rows.append(_row(cell, predictions, distribution, seed, evaluation))
    if run_dir is not None:
        for stale in (Path(run_dir) / "evaluations").glob("*.json"):
            if stale.name not in written:
                stale.unlink()
    aggregates = metrics.aggregate_rows([asdict(r) for r in rows], seed=seed)
    return RunResults(dict(run), rows, aggregates, list(failed), failed_cells, run_dir)


def _row(cell: Cell, predictions: Callable[[str], Predictions], distribution: Callable[[str], Distribution],
         seed: int, evaluation: Callable[[Any], str]) -> ResultRow:
    shift = cell.shift
    gen = predictions(cell.generalization.key)
    p = gen.p_preferred
    acc = metrics.accuracy(p, seed)
    base = metrics.accuracy(predictions(cell.baseline.key).p_preferred, seed)
    # Target-tuned capability: the best candidate on R's test split (ties: first candidate).
    tt_scores = [(metrics.accuracy(predictions(j.key).p_preferred, seed), j.fit.intervention)
                 for j in cell.target_tuned]
    tt, tt_name = max(tt_scores, key=lambda s: s[0])
    low, high = metrics.bootstrap_accuracy_ci(p, seed, groups=gen.example_index)
    pairs = distribution(shift.target).eval_pairs("test")
    lengths = metrics.length_baselines([(q.preferred, q.dispreferred) for q in pairs], seed)
    winner = next(j for j in cell.target_tuned if j.fit.intervention == tt_name)
    return ResultRow(
        source=shift.source, target=shift.target, target_reference=shift.target_reference,
        generalization_accuracy=acc, baseline_accuracy=base,
        baseline_intervention=cell.baseline.fit.intervention,
        target_tuned_capability=tt, target_tuned_capability_intervention=tt_name,
        source_ID_accuracy=metrics.accuracy(predictions(cell.source_id.key).p_preferred, seed),
        RMS_calibration_error=metrics.rms_calibration_error(p),
        differential_elicitation=metrics.differential_elicitation(acc, base, tt),
        intervention=cell.intervention, category=shift.category, family=shift.family,
        elicitation=metrics.elicitation(acc, tt), brier=metrics.brier(p),
        ece=metrics.expected_calibration_error(p), accuracy_ci_low=low, accuracy_ci_high=high,
        length_longer_accuracy=lengths.longer, length_shorter_accuracy=lengths.shorter,
        length_cue_flag=lengths.flagged, average_probability=metrics.average_probability(p),
        legacy_RMS_calibration_error=metrics.legacy_rms_calibration_error(p),
        target_evaluation=evaluation(cell.generalization), source_evaluation=evaluation(cell.source_id),
        baseline_evaluation=evaluation(cell.baseline), target_tuned_evaluation=evaluation(winner),
    )
