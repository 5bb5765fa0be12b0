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

from genies.data.schema import Distribution, Example
from genies.interventions.base import FitContext, Intervention, Predictions, State, hparam, register
from genies.models.base import LoadedModel

SCORES = ("sum", "mean")


def lm_response_scores(lm: LoadedModel, examples: Sequence[Example], score: str,
                       max_length: int | None = None, batch_tokens: int | None = None,
                       ctx: FitContext | None = None) -> list[np.ndarray]:
    """Per example, the log-prob score of each response, through the shared scoring engine.
    `score` is one of SCORES; its callers (zero_shot, few_shot) declare it with those choices, so
    the base class has refused any other value when the method was configured."""
    from genies.models.scoring import score_examples

    with (ctx or FitContext()).progress_bar("scoring responses", len(examples)) as advance:
        results = score_examples(lm, list(examples), batch_tokens=batch_tokens, max_length=max_length,
                                 progress=advance)
    return [np.asarray(getattr(r, score), dtype=np.float64) for r in results]


@register("zero_shot", family="baseline",
          description="Log-probability of each response + EOS given the prompt (summed; 'mean' per token).")
@dataclass
class ZeroShot(Intervention):
    score: str = hparam("sum", "'sum' = total log-prob of response+EOS (the original, favours short "
                               "answers); 'mean' = per-token average", choices=SCORES)
    max_length: int | None = hparam(None, "truncate prompt+response to this many tokens (None = no limit)")
    batch_tokens: int | None = hparam(None, "token budget per scoring batch (None = the engine's default)")

    presets = {"paper": {}, "cpu": {}}
    needs_training_data = False

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        return State(self.name, self.hparams(), info={"source": source.id})

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        examples = dist.split(split)
        scores = lm_response_scores(lm, examples, self.score, self.max_length, self.batch_tokens, ctx)
        return Predictions.from_scores(examples, scores)
