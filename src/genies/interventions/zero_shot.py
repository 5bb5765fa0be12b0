"""zero_shot: the base model judges by how likely it finds each response (SPEC part B 5.1).

Score of a response = log P(response + EOS | prompt) under the causal LM, no BOS, summed over the
response tokens (the original's ranking, which favours short answers) or averaged per token
(`score="mean"`). The pair probability is the softmax over the prompt's responses restricted to
the pair, sigmoid(s_pref - s_disp). Nothing is trained.
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


def lm_response_scores(lm: LoadedModel, queries: Sequence[Query], score: str, max_length: int | None,
                       batch_tokens: int | None, ctx: FitContext) -> list[np.ndarray]:
    """Per query, the log-prob score of each response, through the shared scoring engine.
    `score` is one of SCORES; its callers (zero_shot, few_shot) declare it with those choices, so
    the base class has refused any other value when the method was configured."""
    from genies.models.scoring import score_examples

    with ctx.progress_bar("scoring responses", len(queries)) as advance:
        results = score_examples(lm, list(queries), batch_tokens=batch_tokens, max_length=max_length,
                                 progress=advance)
    return [np.asarray(getattr(r, score), dtype=np.float64) for r in results]


@register("zero_shot", family="baseline",
          description="Log-probability of each response + EOS given the prompt (summed; 'mean' per token).")
@dataclass
class ZeroShot(Intervention[Unfitted]):
    score: str = hparam("sum", "'sum' = total log-prob of response+EOS (the original, favours short "
                               "answers); 'mean' = per-token average", choices=SCORES)
    max_length: int | None = hparam(None, "truncate prompt+response to this many tokens (None = no limit)")
    batch_tokens: int | None = hparam(None, "token budget per scoring batch (None = the engine's default)",
                                      execution=True)

    presets = {"paper": {}, "cpu": {}}
    needs_training_data = False

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> Unfitted:
        return Unfitted()

    def scorer(self, lm: LoadedModel, fitted: Unfitted, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            return Scores.bradley_terry(lm_response_scores(lm, data.queries, self.score, self.max_length,
                                                           self.batch_tokens, ctx))
        return score
