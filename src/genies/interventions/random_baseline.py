"""random: the chance reference. Every pair gets probability 0.5 (docs/methods.md#random).

The metrics break exact ties with a seeded coin, so accuracy is 0.5 in expectation; the
original returned [0.5, 0.5] with argmax ties going to the dispreferred side and scored 0.
Registered as "random"; the module has another name so it never shadows the stdlib module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution
from genies.interventions.base import Intervention, Scorer, Unfitted
from genies.interventions.context import FitContext
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.models.base import LoadedModel


@register("random", family="baseline", description="Probability 0.5 for every pair (chance; accuracy 0.5).")
@dataclass
class RandomBaseline(Intervention[Unfitted]):
    presets = {"paper": {}, "cpu": {}}
    needs_training_data = False

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> Unfitted:
        return Unfitted()

    def scorer(self, lm: LoadedModel, fitted: Unfitted, ctx: FitContext) -> Scorer:
        return lambda data: Scores.bradley_terry([np.zeros(len(q.responses)) for q in data.queries])
