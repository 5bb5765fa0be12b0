"""zero_shot: the base model judges by how likely it finds each response (docs/methods.md#zero_shot).

Score of a response = log P(response + EOS | prompt) under the causal LM, no BOS, summed over the
response tokens (the original's ranking, which favours short answers) or averaged per token
(`score="mean"`). Nothing is trained.

The pair probability is the softmax over the prompt's responses restricted to the pair. With
`probability="original"` (the default) it is on the original's scale: the original's score was the
summed log-prob divided by L - 1, L the length the prompt's responses were padded to together (its
mean cross-entropy over the shifted sequence), so P(a beats b) = sigmoid((sum_a - sum_b) / (L - 1)):
the same ranking, soft probabilities, and calibration columns comparable with the paper's.
`probability="sharp"` is sigmoid(sum_a - sum_b), which is almost always 0 or 1. The per-token
`score="mean"` is already on a per-token scale and is never divided again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution, EvalSet, Query
from genies.interventions.base import Intervention, Scorer, Unfitted
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.models.base import LoadedModel

SCORES = ("sum", "mean")


PROBABILITIES = ("original", "sharp")


def lm_response_scores(lm: LoadedModel, queries: Sequence[Query], score: str, probability: str,
                       max_length: int | None, batch_tokens: int | None, ctx: FitContext) -> Scores:
    """The log-prob score of each response through the shared scoring engine, as `Scores` whose
    pair probabilities are on the scale `probability` names (module docstring). `score` and
    `probability` are among SCORES and PROBABILITIES; their callers (zero_shot, few_shot) declare
    them with those choices, so the base class has refused any other value already."""
    from genies.models.scoring import score_examples

    with ctx.progress_bar("scoring responses", len(queries)) as advance:
        results = score_examples(lm, list(queries), batch_tokens=batch_tokens, max_length=max_length,
                                 progress=advance)
    values = [np.asarray(getattr(r, score), dtype=np.float64) for r in results]
    if probability == "sharp" or score == "mean":
        return Scores.bradley_terry(values, {"probability": "sigmoid(s_a - s_b)"})
    divisors = [max(r.padded_length - 1, 1) for r in results]
    return Scores.bradley_terry(values, {"probability": "sigmoid((s_a - s_b) / (L - 1))"}, scale=divisors)


@register("zero_shot", family="baseline",
          description="Log-probability of each response + EOS given the prompt (summed; 'mean' per token).")
@dataclass
class ZeroShot(Intervention[Unfitted]):
    version = 2  # 2: pair probabilities on the original's (L - 1) scale by default
    score: str = hparam("sum", "'sum' = total log-prob of response+EOS (the original, favours short "
                               "answers); 'mean' = per-token average", choices=SCORES)
    probability: str = hparam("original", "'original' = sigmoid((s_a - s_b) / (L - 1)), the original's soft "
                                          "probabilities; 'sharp' = sigmoid(s_a - s_b)", choices=PROBABILITIES)
    max_length: int | None = hparam(None, "truncate prompt+response to this many tokens (None = no limit)")
    batch_tokens: int | None = hparam(None, "token budget per scoring batch (None = the engine's default)",
                                      execution=True)

    presets = {"paper": {}, "cpu": {}}
    needs_training_data = False

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> Unfitted:
        return Unfitted()

    def scorer(self, lm: LoadedModel, fitted: Unfitted, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            return lm_response_scores(lm, data.queries, self.score, self.probability, self.max_length,
                                      self.batch_tokens, ctx)
        return score
