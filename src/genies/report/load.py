"""Read a finished RUN_DIR (docs RUNDIR contract) into plain values the report can embed.

The report only reads what the pipeline wrote: results.json for the per-shift rows and the
aggregates, and the evaluation files the rows point to for the per-pair probabilities. Every
problem names the file (and row) so a broken run is fixed, not guessed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Columns every results row must carry; the rest of the contract's columns are optional here so
# that a report still renders for runs where a metric could not be computed (stored as null).
REQUIRED_ROW_KEYS = (
    "intervention",
    "source",
    "target",
    "category",
    "family",
    "differential_elicitation",
    "generalization_accuracy",
)


class ReportError(ValueError):
    """A run directory or reference folder cannot be read; the message names the file and problem."""

    def __init__(self, file: str | Path, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{file}: {problem}")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation file: the examples scored and one probability per (preferred, dispreferred) pair."""

    path: Path
    intervention: str
    trained_on: str | None
    distribution: str
    accuracy: float
    brier: float
    examples: list[dict[str, Any]]
    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: list[list[float]] | None


@dataclass
class Run:
    """A run directory: its description, per-shift rows, aggregates and (lazily) its evaluations."""

    path: Path
    info: dict[str, Any]
    rows: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    label: str = ""
    _evaluations: dict[str, Evaluation] = field(default_factory=dict, repr=False)

    @property
    def interventions(self) -> list[str]:
        """Interventions in the run's declared order, then any others found in the rows."""
        seen = list(dict.fromkeys(self.info.get("interventions") or []))
        for row in self.rows:
            if row["intervention"] not in seen:
                seen.append(row["intervention"])
        return seen

    @property
    def shifts(self) -> list[tuple[str, str]]:
        """Unique (source, target) pairs in row order."""
        return list(dict.fromkeys((r["source"], r["target"]) for r in self.rows))

    def evaluation(self, relpath: str) -> Evaluation:
        """The evaluation file a row points to, read once and cached."""
        if relpath not in self._evaluations:
            self._evaluations[relpath] = read_evaluation(self.path / relpath)
        return self._evaluations[relpath]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ReportError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(path, f"not valid JSON ({err})") from err


def load_run(run_dir: str | Path) -> Run:
    """Read RUN_DIR/results.json and check the rows carry what the report shows."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(path, "run directory not found")
    results_file = path / "results.json"
    data = _read_json(results_file)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ReportError(results_file, "expected an object with a 'rows' list")
    if data.get("schema_version") != 1:
        raise ReportError(results_file, f"unsupported schema_version {data.get('schema_version')!r} (expected 1)")
    rows = []
    for i, row in enumerate(data["rows"]):
        missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
        if missing:
            raise ReportError(results_file, f"row {i} lacks {', '.join(missing)}")
        rows.append(dict(row))
    info = dict(data.get("run") or {})
    return Run(
        path=path,
        info=info,
        rows=rows,
        aggregates=list(data.get("aggregates") or []),
        failed=list(data.get("failed") or []),
    )


def load_runs(run_dirs: list[str | Path]) -> list[Run]:
    """Several runs with distinct labels (model and preset, then the folder name if they clash)."""
    runs = [load_run(d) for d in run_dirs]
    base = [" · ".join(str(x) for x in (r.info.get("model"), r.info.get("preset")) if x) or r.path.name for r in runs]
    for run, label in zip(runs, base, strict=True):
        run.label = label if base.count(label) == 1 else f"{label} ({run.path.name})"
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = str(run.path)
    return runs


def read_evaluation(path: Path) -> Evaluation:
    """One evaluations/<name>.json file, checked for consistent pair indices."""
    data = _read_json(path)
    try:
        examples = data["examples"]
        pairs = data["pairs"]
    except (KeyError, TypeError) as err:
        raise ReportError(path, f"missing key {err}") from err
    for i, ex in enumerate(examples):
        if not isinstance(ex.get("responses"), list) or not 0 <= int(ex.get("preferred", -1)) < len(ex["responses"]):
            raise ReportError(path, f"example {i}: 'preferred' does not index its responses")
    n = len(examples)
    arrays = {
        k: np.array([p[k] for p in pairs], dtype=np.int64) if pairs else np.zeros(0, np.int64)
        for k in ("example_index", "preferred_index", "dispreferred_index")
    }
    probs = np.array([np.nan if p["p_preferred"] is None else p["p_preferred"] for p in pairs], dtype=np.float64)
    for j, p in enumerate(pairs):
        if not 0 <= p["example_index"] < n:
            raise ReportError(path, f"pair {j}: example_index {p['example_index']} outside 0..{n - 1}")
        responses = examples[p["example_index"]]["responses"]
        if not (0 <= p["preferred_index"] < len(responses) and 0 <= p["dispreferred_index"] < len(responses)):
            raise ReportError(path, f"pair {j}: response index outside the example's {len(responses)} responses")
    return Evaluation(
        path=path,
        intervention=str(data.get("intervention", "")),
        trained_on=data.get("trained_on"),
        distribution=str(data.get("distribution", "")),
        accuracy=float(data.get("accuracy", float("nan"))),
        brier=float(data.get("brier", float("nan"))),
        examples=examples,
        p_preferred=probs,
        response_scores=data.get("response_scores"),
        **arrays,
    )
