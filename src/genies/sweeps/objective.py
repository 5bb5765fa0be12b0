"""A trial's objective from its stored predictions on the held-out part of the source.

`accuracy`: the fraction of held-out pairs whose preferred response wins (ties: the run's seeded
coin, as in every results table). `loss`: the mean Bradley-Terry loss of the held-out pairs,
-log p(preferred beats dispreferred), from each pair's stored `p_preferred`. For LoRA and every
reward-model method p = sigmoid(r_preferred - r_dispreferred), so this is exactly the pairwise loss
they train with, evaluated on pairs they never saw (the paper's "eval loss"); for other methods
it is the log loss of the probabilities they report, which every method stores the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies import metrics

OBJECTIVES = {"accuracy": "maximize", "loss": "minimize"}
P_FLOOR = 1e-12  # a probability of exactly 0 would make one pair's loss infinite


@dataclass(frozen=True)
class HeldOut:
    """Both objectives of one trial and how many held-out pairs they are over."""

    accuracy: float
    loss: float
    pairs: int

    def value(self, objective: str) -> float:
        return self.accuracy if objective == "accuracy" else self.loss


def bradley_terry_loss(p_preferred: np.ndarray) -> float:
    """Mean -log p over the pairs (p floored at `P_FLOOR`)."""
    p = np.clip(np.asarray(p_preferred, dtype=np.float64), P_FLOOR, 1.0)
    return float(np.mean(-np.log(p)))


def held_out(p_preferred: np.ndarray, seed: int) -> HeldOut:
    p = np.asarray(p_preferred, dtype=np.float64)
    return HeldOut(metrics.accuracy(p, seed), bradley_terry_loss(p), int(p.size))
