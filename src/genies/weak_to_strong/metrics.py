"""Weak-to-strong metrics from stored predictions: accuracies with prompt-bootstrap intervals
and PGR with a paired bootstrap interval.

PGR = (student - weak) / (ceiling - weak), the accuracies on the source's test split. It is
undefined (None, never a number) when the ceiling is not above the weak supervisor. Its interval
resamples the test prompts once per replicate for all three (`intervals.prompt_draws`: they are
measured on the same prompts) and keeps the replicates where the ceiling is above the weak
supervisor; `undefined_share` says how many were dropped, so a wide gap in the data shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genies import intervals, metrics
from genies.data.schema import Distribution
from genies.interventions.scores import Predictions


@dataclass(frozen=True)
class Accuracy:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Pgr:
    value: float | None  # None: undefined (ceiling <= weak)
    low: float | None
    high: float | None
    undefined_share: float  # of bootstrap replicates with ceiling <= weak

    @property
    def defined(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class SourceResult:
    source: str
    test_pairs: int
    weak: Accuracy
    student: Accuracy
    ceiling: Accuracy
    pgr: Pgr
    weak_label_accuracy: float  # share of half B whose weak label is the ground truth (read after the fact)
    train_examples: int  # in half B
    weak_labels_job: str  # the job store's key of the weak labels (predict/<key>.json), example by example


@dataclass(frozen=True)
class TargetResult:
    source: str
    target: str
    student: Accuracy  # generalization accuracy on the target's test split
    ceiling: Accuracy


@dataclass(frozen=True)
class W2SResults:
    run: Mapping[str, Any]
    sources: tuple[SourceResult, ...]
    targets: tuple[TargetResult, ...]
    failed: tuple[str, ...] = ()


def _hits(pred: Predictions, n_prompts: int, seed: int) -> intervals.PromptHits:
    return intervals.PromptHits.from_pairs(metrics.pair_correct(pred.p_preferred, seed), pred.example_index,
                                           n_prompts)


def _accuracy(pred: Predictions, reps: np.ndarray, seed: int) -> Accuracy:
    low, high = intervals.percentile_interval(reps)
    return Accuracy(metrics.accuracy(pred.p_preferred, seed), low, high)


def pgr(weak: float, student: float, ceiling: float) -> float | None:
    """(student - weak) / (ceiling - weak); None when ceiling <= weak."""
    return None if ceiling <= weak else (student - weak) / (ceiling - weak)


def compare_on_split(preds: Sequence[Predictions], n_prompts: int, distribution: str, split: str,
                     seed: int) -> tuple[list[Accuracy], list[np.ndarray]]:
    """Each prediction's accuracy with its interval, and its replicates over shared prompt draws."""
    draws = intervals.prompt_draws(n_prompts, seed, distribution, split)
    reps = [_hits(p, n_prompts, seed).resampled_accuracy(draws) for p in preds]
    return [_accuracy(p, r, seed) for p, r in zip(preds, reps)], reps


def source_result(source: str, test: Distribution, weak: Predictions, student: Predictions,
                  ceiling: Predictions, weak_label_accuracy: float, train_examples: int, weak_labels_job: str,
                  seed: int) -> SourceResult:
    n = len(test.test)
    (w, s, c), (rw, rs, rc) = compare_on_split([weak, student, ceiling], n, source, "test", seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = np.where(rc > rw, (rs - rw) / np.where(rc > rw, rc - rw, 1.0), np.nan)
    point = pgr(w.value, s.value, c.value)
    low, high = intervals.percentile_interval(replicates) if point is not None else (None, None)
    if low is not None and not np.isfinite(low):
        low, high = None, None
    share = float(np.mean(~np.isfinite(replicates)))
    return SourceResult(source, len(weak.p_preferred), w, s, c, Pgr(point, low, high, share),
                        weak_label_accuracy, train_examples, weak_labels_job)


def target_result(source: str, target: str, n_prompts: int, student: Predictions, ceiling: Predictions,
                  seed: int) -> TargetResult:
    (s, c), _ = compare_on_split([student, ceiling], n_prompts, target, "test", seed)
    return TargetResult(source, target, s, c)


def weak_label_accuracy(examples: Sequence[Any], relabel: Callable[[Sequence[Any]], Sequence[Any]]) -> float:
    """The share of examples whose weak label (`relabel`) is their ground truth."""
    weak = relabel(examples)
    return float(np.mean([a.preferred == b.preferred for a, b in zip(examples, weak, strict=True)]))
