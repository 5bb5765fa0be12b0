"""The run directory's schema, in one place (docs/running.md, "The run directory").

Everything that knows how results.csv, results.json and evaluations/*.json look lives here:
`SCHEMA_VERSION`, the typed row (`ResultRow`, whose fields *are* the CSV columns), the
evaluation file's name and document (`Evaluation`), the writer (`write_run`) and the one reader
(`load_run`, `read_evaluation`). The pipeline writes through it, `genies.load_run` and the
report read through it, and the report's test fixtures are written by it, so the three can no
longer drift apart.

Writing is deterministic: the same values give the same bytes (no timestamps, fixed key and
row order, evaluation files sorted by name), which is what lets a resumed or shared-cache run
reproduce `results.csv` byte for byte. No torch here: `genies results show` and the report
import this without loading the pipeline.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from genies._io import write_atomic
from genies._typed_json import decode, read_json
from genies.data.schema import Example
from genies.errors import FileError
from genies.intervals import Comparison
from genies.metrics import Aggregate

SCHEMA_VERSION = 2  # 2: per-shift DE intervals, two-level mean intervals, paired comparisons
EVALUATIONS = "evaluations"
# A ResultRow field with this metadata is in results.json but not a results.csv column.
NOT_A_COLUMN = {"column": False}


class RunDirError(FileError, ValueError):
    """A run directory (or one of its files) cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class ResultRow:
    """One (intervention, shift) row: the original GENIES columns in their order, then genies'
    additions, then the evaluation files the row was computed from (results.json only)."""

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
    de_ci_low: float
    de_ci_high: float
    length_longer_accuracy: float
    length_shorter_accuracy: float
    length_cue_flag: bool
    average_probability: float
    legacy_RMS_calibration_error: float
    target_evaluation: str = field(metadata=NOT_A_COLUMN)
    source_evaluation: str = field(metadata=NOT_A_COLUMN)
    baseline_evaluation: str = field(metadata=NOT_A_COLUMN)
    target_tuned_evaluation: str = field(metadata=NOT_A_COLUMN)
    # Added after schema 2 was first written: a default, so older results.json files read back.
    target_mix: float = 0.0  # fraction of the intervention's training set drawn from the target (--mix-target)

    def evaluation_paths(self) -> tuple[str, ...]:
        """The run-relative paths of the evaluation files this row points to (a run without a
        target-tuned reference has no target_tuned_evaluation: "")."""
        return tuple(path for path in (getattr(self, name) for name in EVALUATION_FIELDS) if path)


COLUMNS = tuple(f.name for f in fields(ResultRow) if f.metadata.get("column", True))
EVALUATION_FIELDS = tuple(f.name for f in fields(ResultRow) if not f.metadata.get("column", True))


@dataclass(frozen=True)
class FailedJob:
    """A job that failed: its label (`fit lora on alpaca_mmlu`) and the error's last lines."""

    job: str
    error: str


@dataclass(frozen=True)
class RunResults:
    """A run's results: what `genies.run` returns and `load_run` reads back. `run_dir` is the
    folder they were written to or read from (None for results not yet written)."""

    run: Mapping[str, Any]
    rows: tuple[ResultRow, ...]
    aggregates: tuple[Aggregate, ...]
    failed: tuple[FailedJob, ...] = ()
    failed_cells: tuple[str, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    run_dir: Path | None = None

    def aggregate(self, intervention: str, scope: str = "all") -> Aggregate | None:
        return next((a for a in self.aggregates if a.intervention == intervention and a.scope == scope), None)

    def to_json(self) -> dict[str, Any]:
        """The results.json document (NaN as null)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "run": dict(self.run),
            "rows": [{k: _json_value(v) for k, v in asdict(r).items()} for r in self.rows],
            "aggregates": [{k: _json_value(v) for k, v in asdict(a).items()} for a in self.aggregates],
            "failed": [asdict(f) for f in self.failed],
            "failed_cells": list(self.failed_cells),
            "comparisons": [{k: _json_value(v) for k, v in asdict(c).items()} for c in self.comparisons],
        }

    def to_csv(self) -> str:
        """results.csv: `COLUMNS`, one line per row, NaN as an empty cell, floats by repr."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([_csv_value(getattr(row, c)) for c in COLUMNS])
        return buffer.getvalue()


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One fitted state's predictions on one distribution split: evaluations/<name>.json.

    The arrays are aligned per (preferred, dispreferred) pair. `response_scores` holds, per
    example, the method's raw score of each response (None where it has none). `info` is what the
    method reported beside its predictions (a legacy script's own metrics, a warning), kept as
    plain JSON values so the report can show it.
    """

    intervention: str
    trained_on: str | None
    distribution: str
    split: str
    accuracy: float
    brier: float
    average_probability: float
    examples: tuple[Example, ...]
    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: tuple[tuple[float, ...] | None, ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return evaluation_name(self.intervention, self.trained_on, self.distribution)

    @property
    def path(self) -> str:
        """Where the file lives relative to the run directory: what a row's `*_evaluation` holds."""
        return f"{EVALUATIONS}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """The evaluation document; the report's sample browser reads it back."""
        return {
            "intervention": self.intervention,
            "trained_on": self.trained_on,
            "distribution": self.distribution,
            "split": self.split,
            "accuracy": _json_value(self.accuracy),
            "brier": _json_value(self.brier),
            "average_probability": _json_value(self.average_probability),
            "examples": [{"prompt": ex.prompt, "responses": list(ex.responses), "preferred": ex.preferred}
                         for ex in self.examples],
            "pairs": [{"example_index": int(e), "preferred_index": int(a), "dispreferred_index": int(b),
                       "p_preferred": _json_value(float(q))}
                      for e, a, b, q in zip(self.example_index, self.preferred_index, self.dispreferred_index,
                                            self.p_preferred, strict=True)],
            "response_scores": None if self.response_scores is None else [
                None if s is None else [_json_value(float(v)) for v in s] for s in self.response_scores],
            "info": plain_json(self.info),
        }


@dataclass(frozen=True)
class ComputedRun:
    """What `compute_results` returns and `write_run` writes: the results and every evaluation
    file the rows point to. Nothing is on disk until `write_run`."""

    results: RunResults
    evaluations: tuple[Evaluation, ...]


def evaluation_name(intervention: str, trained_on: str | None, distribution: str) -> str:
    """`<intervention>--<trained on or none>--<distribution>.json`, each part safe in a file name."""
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")  # noqa: E731
    return f"{safe(intervention)}--{safe(trained_on or 'none')}--{safe(distribution)}.json"


def plain_json(value: Any) -> Any:
    """`value` as strict JSON values: mappings with string keys, lists, numbers (NaN and inf as
    null, numpy scalars unwrapped), strings; anything else by its `str`. A method's `info` is
    free-form, and one odd value must not make the run directory unwritable or the report's
    strict JSON invalid."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _json_value(value)
    return str(value)


def write_run(run_dir: str | Path, computed: ComputedRun) -> RunResults:
    """Write results.csv, results.json and evaluations/*.json; return the results with `run_dir` set.

    Every file is written atomically. Evaluation files come first and stale ones (of an earlier
    run in the same folder) go last, so results.json never points at a missing file.
    """
    run_dir = Path(run_dir)
    folder = run_dir / EVALUATIONS
    by_name = {ev.name: ev for ev in computed.evaluations}
    missing = sorted({p for row in computed.results.rows for p in row.evaluation_paths()}
                     - {ev.path for ev in by_name.values()})
    if missing:
        raise ValueError(f"rows point at evaluations that are not written: {', '.join(missing)}")
    for name in sorted(by_name):
        write_atomic(folder / name, json.dumps(by_name[name].to_json()) + "\n")
    write_atomic(run_dir / "results.csv", computed.results.to_csv())
    write_atomic(run_dir / "results.json", json.dumps(computed.results.to_json(), indent=1) + "\n")
    for stale in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if stale.name not in by_name:
            stale.unlink()
    return replace(computed.results, run_dir=run_dir)


# What the other commands write (`genies.judging.JSON_FILE`, `weak_to_strong.files.RESULTS_FILE`,
# `sweeps.sweep.load_sweep`), named here so that reading a run folder imports none of them.
OTHER_FOLDERS = (("judge.json", "genies judge", "`genies report` shows it"),
                 ("w2s.json", "genies w2s", "`genies report` shows it"),
                 ("sweep.json", "genies sweep", "its report.html is beside it"))


def _other_folder(run_dir: Path) -> str:
    """Why a folder has no results.json: another command's folder, or not a finished run."""
    for file, command, where in OTHER_FOLDERS:
        if (run_dir / file).is_file():
            return f"{run_dir} is a `{command}` folder, not a `genies run` one ({where})"
    return f"is {run_dir} a finished `genies run` folder?"


def load_run(run_dir: str | Path) -> RunResults:
    """Read a run directory written by `write_run` (schema_version 2) into typed values."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "run directory not found")
    path = run_dir / "results.json"
    error = functools.partial(RunDirError, path)
    doc = read_json(path, error, f"file not found: {_other_folder(run_dir)}")
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise RunDirError(path, "expected an object with a 'rows' list")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise RunDirError(path, f"schema_version {doc.get('schema_version')!r} is not supported "
                                f"(this genies reads {SCHEMA_VERSION}); rerun the same `genies run` command "
                                "to rewrite it from the cached jobs")
    return RunResults(
        run=dict(doc.get("run") or {}),
        rows=tuple(decode(ResultRow, r, error, f"row {i}") for i, r in enumerate(doc["rows"])),
        aggregates=tuple(decode(Aggregate, a, error, f"aggregate {i}")
                         for i, a in enumerate(doc.get("aggregates") or [])),
        failed=tuple(decode(FailedJob, f, error, f"failed job {i}") for i, f in enumerate(doc.get("failed") or [])),
        failed_cells=tuple(str(c) for c in doc.get("failed_cells") or []),
        comparisons=tuple(decode(Comparison, c, error, f"comparison {i}")
                          for i, c in enumerate(doc.get("comparisons") or [])),
        run_dir=run_dir,
    )


def read_evaluation(path: str | Path) -> Evaluation:
    """One evaluations/<name>.json file, checked for pair indices that fit its examples."""
    path = Path(path)
    doc = read_json(path, functools.partial(RunDirError, path))
    try:
        raw_examples, pairs = doc["examples"], doc["pairs"]
    except (KeyError, TypeError) as err:
        raise RunDirError(path, f"missing key {err}") from err
    examples = []
    for i, ex in enumerate(raw_examples):
        responses = ex.get("responses") if isinstance(ex, dict) else None
        if not isinstance(responses, list) or not 0 <= int(ex.get("preferred", -1)) < len(responses):
            raise RunDirError(path, f"example {i}: 'preferred' does not index its responses")
        examples.append(Example(str(ex.get("prompt", "")), tuple(responses), int(ex["preferred"])))
    for j, p in enumerate(pairs):
        if not 0 <= p["example_index"] < len(examples):
            raise RunDirError(path, f"pair {j}: example_index {p['example_index']} outside 0..{len(examples) - 1}")
        n = len(examples[p["example_index"]].responses)
        if not (0 <= p["preferred_index"] < n and 0 <= p["dispreferred_index"] < n):
            raise RunDirError(path, f"pair {j}: response index outside the example's {n} responses")
    index = {k: np.array([p[k] for p in pairs], dtype=np.int64)
             for k in ("example_index", "preferred_index", "dispreferred_index")}
    scores = doc.get("response_scores")
    return Evaluation(
        intervention=str(doc.get("intervention", "")),
        trained_on=doc.get("trained_on"),
        distribution=str(doc.get("distribution", "")),
        split=str(doc.get("split", "")),
        accuracy=_float(doc.get("accuracy")),
        brier=_float(doc.get("brier")),
        average_probability=_float(doc.get("average_probability")),
        examples=tuple(examples),
        p_preferred=np.array([_float(p["p_preferred"]) for p in pairs], dtype=np.float64),
        response_scores=None if scores is None else tuple(
            None if s is None else tuple(_float(v) for v in s) for s in scores),
        info=dict(doc.get("info") or {}),
        **index,
    )


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _csv_value(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return repr(v) if isinstance(v, float) else str(v)
