"""random: the chance reference. Every pair gets probability 0.5 (SPEC part A item 7).

The metrics break exact ties with a seeded coin, so accuracy is 0.5 in expectation; the
original returned [0.5, 0.5] with argmax ties going to the dispreferred side and scored 0.
Registered as "random"; the module has another name so it never shadows the stdlib module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution
from genies.interventions.base import FitContext, Intervention, Predictions, State, register
from genies.models.base import LoadedModel


@register("random", family="baseline", description="Probability 0.5 for every pair (chance; accuracy 0.5).")
@dataclass
class RandomBaseline(Intervention):
    presets = {"paper": {}, "cpu": {}}
    needs_training_data = False

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        return State(self.name, self.hparams(), info={"source": source.id})

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        examples = dist.split(split)
        return Predictions.from_scores(examples, [np.zeros(len(ex.responses)) for ex in examples])
