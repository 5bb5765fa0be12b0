"""The runs a report shows: each run directory read through the one schema reader
(`genies.pipeline.run_dir`), a label that tells compared runs apart, and its evaluation files
read once, on first use (a report may never need most of them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genies.errors import FileError
from genies.metrics import Aggregate
from genies.pipeline.run_dir import Evaluation, FailedJob, ResultRow, RunResults, load_run, read_evaluation


class ReportError(FileError, ValueError):
    """A report input (a reference folder, a list of runs) cannot be used; the message names the
    file and the problem. Run directories raise `genies.pipeline.run_dir.RunDirError`."""


@dataclass(frozen=True)
class Run:
    """One run as the report shows it: its results, a label distinct among the compared runs,
    and the evaluation files its rows point to, each read once."""

    results: RunResults
    label: str
    _evaluations: dict[str, Evaluation] = field(default_factory=dict, repr=False, compare=False)

    @property
    def path(self) -> Path:
        assert self.results.run_dir is not None  # load_run always sets it
        return self.results.run_dir

    @property
    def info(self) -> Mapping[str, Any]:
        return self.results.run

    @property
    def rows(self) -> tuple[ResultRow, ...]:
        return self.results.rows

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return self.results.aggregates

    @property
    def failed(self) -> tuple[FailedJob, ...]:
        return self.results.failed

    @property
    def interventions(self) -> list[str]:
        """Interventions in the run's declared order, then any others found in the rows."""
        seen = list(dict.fromkeys(self.info.get("interventions") or []))
        for row in self.rows:
            if row.intervention not in seen:
                seen.append(row.intervention)
        return seen

    @property
    def shifts(self) -> list[tuple[str, str]]:
        """Unique (source, target) pairs in row order."""
        return list(dict.fromkeys((r.source, r.target) for r in self.rows))

    def evaluation(self, relpath: str) -> Evaluation:
        """The evaluation file a row points to, read once and cached."""
        if relpath not in self._evaluations:
            self._evaluations[relpath] = read_evaluation(self.path / relpath)
        return self._evaluations[relpath]

    def evaluations(self) -> list[Evaluation]:
        """Every evaluation the rows point to, each once, in row order."""
        return [self.evaluation(p) for p in dict.fromkeys(p for row in self.rows for p in row.evaluation_paths())]


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Several runs with distinct labels (model and preset, then the folder name if they clash)."""
    if not run_dirs:
        raise ValueError("a report needs at least one run directory")
    results = [load_run(d) for d in run_dirs]
    paths = [Path(d) for d in run_dirs]
    base = [" · ".join(str(x) for x in (r.run.get("model"), r.run.get("preset")) if x) or p.name
            for r, p in zip(results, paths, strict=True)]
    labels = [label if base.count(label) == 1 else f"{label} ({p.name})" for label, p in zip(base, paths, strict=True)]
    labels = [label if labels.count(label) == 1 else str(p) for label, p in zip(labels, paths, strict=True)]
    return [Run(r, label) for r, label in zip(results, labels, strict=True)]
