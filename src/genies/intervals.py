"""How sure a run can be of its DEs: prompt-level and two-level bootstrap intervals, and paired
comparisons of interventions (docs/running.md, "Intervals").

A shift's DE = (A(S->T) - A_zero_shot(T)) / A_tt(R) carries the noise of the prompts it was
measured on. Its interval resamples the target's test prompts jointly for the intervention and
the baseline (the two accuracies are measured on the same prompts) and the reference's test
prompts for A_tt (jointly with the target's when R is T). A mean DE over shifts carries that
noise and the choice of shifts, so its interval is a two-level bootstrap: shifts with
replacement, then, for each drawn shift, one of its prompt-level replicates. One shift still
gives an honest (prompt-level) interval, never a zero-width one.

Prompt draws are seeded by (seed, distribution, split), so every intervention of a run sees the
same resampled prompts of a target: replicate r of method A and replicate r of method B differ
only by the methods, which is what makes the paired difference of two methods sharper than the
two intervals side by side. The target-tuned winner is the one chosen on the full data.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class PromptHits:
    """Per prompt of one evaluated split: pairs the method got right and pairs evaluated."""

    hits: np.ndarray  # float64 [n_prompts]
    sizes: np.ndarray  # float64 [n_prompts]

    @classmethod
    def from_pairs(cls, correct: Sequence[bool] | np.ndarray, example_index: Sequence[int] | np.ndarray,
                   n_prompts: int) -> PromptHits:
        """From each pair's outcome (`metrics.pair_correct`, ties settled as accuracy settles
        them) and the prompt it belongs to."""
        index = np.asarray(example_index, dtype=np.int64)
        return cls(np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=n_prompts),
                   np.bincount(index, minlength=n_prompts).astype(np.float64))

    def resampled_accuracy(self, draws: np.ndarray) -> np.ndarray:
        """Pooled accuracy over each row of prompt `draws` ([n_boot, n_prompts] indices)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.hits[draws].sum(axis=1) / self.sizes[draws].sum(axis=1)


@functools.lru_cache(maxsize=64)
def prompt_draws(n_prompts: int, seed: int, distribution: str, split: str, n_boot: int = N_BOOT) -> np.ndarray:
    """[n_boot, n_prompts] prompt indices drawn with replacement, the same for every method
    (cached and read-only: every row of a run on the same target reads the same draws)."""
    digest = hashlib.sha256(f"{distribution}/{split}".encode()).digest()
    rng = np.random.default_rng([seed, int.from_bytes(digest[:8], "big")])
    draws = rng.integers(0, n_prompts, size=(n_boot, n_prompts))
    draws.flags.writeable = False
    return draws


def de_replicates(generalization: PromptHits, baseline: PromptHits, target_tuned: PromptHits,
                  target_draws: np.ndarray, reference_draws: np.ndarray) -> np.ndarray:
    """DE of each bootstrap replicate; NaN where a replicate's A_tt is 0."""
    gen = generalization.resampled_accuracy(target_draws)
    base = baseline.resampled_accuracy(target_draws)
    tt = target_tuned.resampled_accuracy(reference_draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tt == 0, np.nan, (gen - base) / np.where(tt == 0, 1.0, tt))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of bootstrap samples (NaN replicates left out)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def two_level_interval(replicates: np.ndarray, seed: int, n_boot: int = N_BOOT,
                       level: float = LEVEL) -> tuple[float, float]:
    """Interval of a mean over shifts from their prompt-level replicates ([n_shifts, n_rep]):
    each bootstrap sample draws the shifts with replacement and, for each drawn shift, one of
    its replicates (independently, so a shift drawn twice does not repeat its prompt noise)."""
    n_shifts, n_rep = replicates.shape
    rng = np.random.default_rng([seed, 3, n_shifts])
    shifts = rng.integers(0, n_shifts, size=(n_boot, n_shifts))
    reps = rng.integers(0, n_rep, size=(n_boot, n_shifts))
    return percentile_interval(replicates[shifts, reps].mean(axis=1), level)


@dataclass(frozen=True)
class Comparison:
    """Intervention `a` against `b` over the shifts both ran: mean DE(a) - DE(b) with its
    two-level interval, and the share of those shifts where a's DE is higher."""

    a: str
    b: str
    n_shifts: int
    mean_difference: float
    ci_low: float
    ci_high: float
    share_a_better: float

    @property
    def beyond_noise(self) -> bool:
        """The interval of the difference excludes 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


def compare(de: Mapping[str, Mapping[str, float]], replicates: Mapping[str, Mapping[str, np.ndarray]],
            seed: int, n_boot: int = N_BOOT, level: float = LEVEL) -> list[Comparison]:
    """Every ordered-by-name pair of interventions, over the shifts where both have a finite DE.
    `de[intervention][shift]` and `replicates[intervention][shift]` are per-shift DEs and their
    prompt-level replicates, drawn with shared prompt draws (`prompt_draws`)."""
    out = []
    for a, b in itertools.combinations(sorted(de), 2):
        shared = sorted(s for s in de[a] if s in de[b] and np.isfinite(de[a][s]) and np.isfinite(de[b][s]))
        if not shared:
            continue
        diffs = np.array([de[a][s] - de[b][s] for s in shared])
        rep = np.stack([replicates[a][s] - replicates[b][s] for s in shared])
        low, high = two_level_interval(rep, seed, n_boot, level)
        out.append(Comparison(a, b, len(shared), float(diffs.mean()), low, high, float(np.mean(diffs > 0))))
    return out
