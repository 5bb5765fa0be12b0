"""Judge runs side by side: which `genies judge` folders a report is given, the judges ranked by
their mean accuracy, and whether the top judge's lead over each other is beyond noise.

The comparison of the top judge `a` with another judge `b` is over the distributions both judged
on the same examples (the same content hash of the test split: same data, `--max-eval` and
`--seed`), with judge-outcomes.json's per-prompt results: the mean over those distributions of
accuracy(a) - accuracy(b), and a paired two-level bootstrap interval of it - distributions drawn
with replacement, then, in each drawn distribution, its prompts redrawn, the same draws for both
judges (`genies.intervals.prompt_draws`), so the noise the two judges share cancels. That is how
`genies run` compares interventions (`genies.intervals.compare`). A folder written before
judge-outcomes.json existed has only per-distribution accuracies: its comparison resamples the
distributions both judged, by name, and says so; it needs two of them, else it has no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from genies.errors import ConfigError
from genies.intervals import PromptHits, prompt_draws, two_level_interval
from genies.judging import JSON_FILE, DistributionResult, JudgeResults, PromptOutcomes, ScopeResult, read_results
from genies.metrics import mean_with_ci

RUN_FILE = "results.json"  # what marks a `genies run` folder (genies.pipeline.run_dir)


def judge_folders(folders: Sequence[Path]) -> bool:
    """True when every folder is a `genies judge` folder, False when none is (ordinary runs, read
    as before); a mix is one line saying which is which. A folder that is neither is left to
    the reader of the kind the others are, which names what it lacks."""
    judges = [f for f in folders if (Path(f) / JSON_FILE).is_file()]
    runs = [f for f in folders if (Path(f) / RUN_FILE).is_file() and f not in judges]
    if judges and runs:
        raise ConfigError(f"genies report: {runs[0]} is a `genies run` folder and {judges[0]} a `genies judge` "
                          "folder; report each kind on its own (one page compares runs, another ranks judges)")
    return bool(judges)


@dataclass(frozen=True)
class JudgeRun:
    """One judge folder as a page shows it: its results and a label distinct among the judges."""

    path: Path
    label: str
    results: JudgeResults

    def scope(self, name: str) -> ScopeResult | None:
        return next((s for s in self.results.scopes if s.scope == name), None)

    @property
    def accuracy(self) -> float:
        """Mean accuracy over every distribution it judged; NaN when none could be judged."""
        overall = self.scope("all")
        return overall.mean_accuracy if overall is not None else math.nan

    def distribution(self, name: str) -> DistributionResult | None:
        return next((d for d in self.results.distributions if d.distribution == name), None)

    def outcomes(self, name: str) -> PromptOutcomes | None:
        return next((o for o in self.results.outcomes if o.distribution == name), None)


def load_judges(folders: Sequence[Path]) -> list[JudgeRun]:
    """Judge folders read with `genies.judging.read_results`, labelled by the judge, then by the
    folder's name where two share a label (the same judge run twice), then by the whole path."""
    results = [read_results(Path(f)) for f in folders]
    paths = [Path(f) for f in folders]
    labels = [r.judge for r in results]
    labels = [x if labels.count(x) == 1 else f"{x} ({p.name})" for x, p in zip(labels, paths, strict=True)]
    labels = [x if labels.count(x) == 1 else str(p) for x, p in zip(labels, paths, strict=True)]
    return [JudgeRun(p, x, r) for p, x, r in zip(paths, labels, results, strict=True)]


def ranked(judges: Sequence[JudgeRun]) -> list[JudgeRun]:
    """Best mean accuracy first; judges with none (every distribution failed) last, in given order."""
    return sorted(judges, key=lambda j: -j.accuracy if math.isfinite(j.accuracy) else math.inf)


class Pairing(Enum):
    """How a comparison's interval was computed (its sentence on the page says it in words)."""

    PROMPTS = "prompts"  # per-prompt outcomes of both: paired two-level bootstrap
    DISTRIBUTIONS = "distributions"  # per-distribution accuracies only (a folder without judge-outcomes.json)
    NONE = "none"  # nothing both judged on the same examples


@dataclass(frozen=True)
class JudgeComparison:
    """The top judge `a` against `b`: the mean over their shared distributions of accuracy(a) -
    accuracy(b), its 95 % interval, and how it was paired; beyond noise when the interval excludes 0."""

    a: str
    b: str
    distributions: int
    prompts: int  # prompts compared pairwise (0 without per-prompt outcomes)
    difference: float
    ci_low: float
    ci_high: float
    pairing: Pairing

    @property
    def beyond_noise(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)  # False for a NaN interval


def compare(a: JudgeRun, b: JudgeRun, seed: int) -> JudgeComparison:
    """`a` against `b` (module docstring): prompt-paired where both kept per-prompt outcomes, else
    over the distributions both judged by name."""
    if a.results.outcomes and b.results.outcomes:
        shared = [(x, y) for x in a.results.outcomes if (y := b.outcomes(x.distribution)) is not None
                  and y.examples == x.examples and sum(x.pairs) > 0 and x.pairs == y.pairs]
        if not shared:
            return JudgeComparison(a.label, b.label, 0, 0, math.nan, math.nan, math.nan, Pairing.NONE)
        diffs, replicates = [], []
        for x, y in shared:
            draws = prompt_draws(len(x.pairs), seed, x.distribution, "test")
            hits_a, hits_b = (PromptHits(np.asarray(o.hits, dtype=np.float64), np.asarray(o.pairs, dtype=np.float64))
                              for o in (x, y))
            diffs.append((sum(x.hits) - sum(y.hits)) / sum(x.pairs))
            replicates.append(hits_a.resampled_accuracy(draws) - hits_b.resampled_accuracy(draws))
        low, high = two_level_interval(np.stack(replicates), seed)
        return JudgeComparison(a.label, b.label, len(shared), sum(len(x.pairs) for x, _ in shared),
                               float(np.mean(diffs)), low, high, Pairing.PROMPTS)
    pairs = [(x.accuracy, y.accuracy) for x in a.results.distributions
             if (y := b.distribution(x.distribution)) is not None]
    if not pairs:
        return JudgeComparison(a.label, b.label, 0, 0, math.nan, math.nan, math.nan, Pairing.NONE)
    diffs = [x - y for x, y in pairs]
    mean, low, high = mean_with_ci(diffs, seed)
    if len(diffs) < 2:  # one distribution resampled is a zero-width interval: no evidence either way
        low = high = math.nan
    return JudgeComparison(a.label, b.label, len(diffs), 0, mean, low, high, Pairing.DISTRIBUTIONS)


def comparisons(judges: Sequence[JudgeRun]) -> list[JudgeComparison]:
    """The first of `judges` (ranked) against each other one, seeded by the first one's run seed."""
    if not judges:
        return []
    top = judges[0]
    return [compare(top, other, top.results.seed) for other in judges[1:]]


def coverage_warning(judges: Sequence[JudgeRun]) -> str | None:
    """A warning when the judges' means average different distributions or different examples of
    them: their ranking then mixes the judges with what they were judged on."""
    if len(judges) < 2:
        return None
    covered = [{d.distribution for d in j.results.distributions} for j in judges]
    hashes = [{o.distribution: o.examples for o in j.results.outcomes} for j in judges]
    shared = set.intersection(*covered)
    differ = sorted(d for d in shared if len({h[d] for h in hashes if d in h}) > 1)
    parts = []
    if any(c != covered[0] for c in covered):
        counts = ", ".join(f"{j.label}: {len(c)}" for j, c in zip(judges, covered, strict=True))
        parts.append(f"These judges were judged on different distributions ({counts}; {len(shared)} shared): each "
                     "mean is over its own list, so compare them on the shared distributions (the table below).")
    if differ:
        parts.append(f"{len(differ)} shared distribution(s) were judged on different examples (another --max-eval, "
                     f"--seed or data), e.g. {differ[0]}: those are left out of the paired comparisons.")
    return " ".join(parts) or None

