"""Synthetic `genies judge` folders written by the real writer (`genies.judging.write_results`),
from planted per-prompt outcomes, for the judge pages' tests: no model is run, so a test can plant
exactly which prompts each judge gets right."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from genies import metrics
from genies.judging import (
    DistributionResult,
    FailedDistribution,
    JudgeResults,
    PromptOutcomes,
    ShiftResult,
    scopes,
    write_results,
)

CATEGORY = {"alpaca_easy": "difficulty", "alpaca_hard": "difficulty", "code": "skill", "code_easy": "skill"}


def write_judge(folder: Path, judge: str, hits: Mapping[str, Sequence[int]], *, seed: int = 0,
                failed: Sequence[str] = (), nan_intervals: bool = False, bias: float | None = None,
                examples: Mapping[str, str] | None = None, with_outcomes: bool = True) -> Path:
    """A judge folder where `judge` got prompt i of distribution d right when hits[d][i] is 1 (one
    pair per prompt). `examples[d]` overrides the split's content hash (default: d's name, so two
    judges share it); `failed` lists distributions that could not be judged."""
    rows, outcomes = [], []
    for name, right in hits.items():
        correct = np.asarray(right, dtype=np.float64)
        low, high = ((math.nan, math.nan) if nan_intervals else
                     metrics.bootstrap_accuracy_ci(correct, seed, groups=np.arange(correct.size)))
        category = CATEGORY.get(name, "quality")
        rows.append(DistributionResult(name, float(correct.mean()), low, high, correct.size, correct.size, 0.6, 0.4,
                                       False, bias, (category,), ("extreme",)))
        outcomes.append(PromptOutcomes(name, (examples or {}).get(name, name), tuple(int(x) for x in right),
                                       (1,) * len(right)))
    accuracy = {r.distribution: r.accuracy for r in rows}
    shifts = (ShiftResult("alpaca_easy", "alpaca_hard", "difficulty", "extreme", accuracy["alpaca_easy"],
                          accuracy["alpaca_hard"], accuracy["alpaca_hard"] - accuracy["alpaca_easy"]),
              ) if {"alpaca_easy", "alpaca_hard"} <= set(accuracy) else ()
    results = JudgeResults(
        judge=judge, spec=f"{judge.partition(':')[0]}:/models/{judge.partition(':')[2]}", hyperparameters={"beta": 0.1},
        models=({"model": f"/models/{judge}", "fingerprint": "0123456789abcdef"},), seed=seed, max_eval=None,
        distributions=tuple(rows), scopes=scopes(rows, seed) if rows else (), shifts=shifts,
        failed=tuple(FailedDistribution(name, f"{name}/test.json: file not found") for name in failed),
        position_bias=bias, versions={"genies": "0.1.0"}, outcomes=tuple(outcomes) if with_outcomes else ())
    write_results(results, folder)
    if not with_outcomes:  # a folder from before judge-outcomes.json existed
        (folder / "judge-outcomes.json").unlink()
    return folder
