"""few_shot: zero_shot scoring with solved source examples in front of the prompt (docs/methods.md#few_shot).

For every evaluation prompt, `num_shots` examples are drawn without replacement from the SOURCE
train split with a generator seeded by (seed, query index), so the same prompt always gets the
same shots whatever else is evaluated. New prompt = concat("\\n\\n" + shot prompt + shot
preferred response) + "\\n\\n" + prompt. The fitted state holds the shot pool and the seed, so
scoring needs no access to the source distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution, EvalSet, Query
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.interventions.zero_shot import PROBABILITIES, SCORES, lm_response_scores
from genies.models.base import LoadedModel


@dataclass(frozen=True)
class Shots:
    """The source's solved examples: (prompt, preferred response) pairs, and the seed that picks
    each evaluation prompt's shots among them."""

    pool: tuple[tuple[str, str], ...]
    seed: int


def shot_indices(pool_size: int, num_shots: int, seed: int, example_index: int) -> list[int]:
    """The shots of one evaluation prompt: seeded per prompt, without replacement."""
    rng = np.random.default_rng([seed, example_index])
    return [int(i) for i in rng.choice(pool_size, size=min(num_shots, pool_size), replace=False)]


def few_shot_prompt(prompt: str, shots: Sequence[tuple[str, str]]) -> str:
    prefix = "".join("\n\n" + shot_prompt + shot_response for shot_prompt, shot_response in shots)
    return prefix + "\n\n" + prompt


@register("few_shot", family="prompting",
          description="zero_shot scoring with 4 solved source examples (seeded) prepended to each prompt.")
@dataclass
class FewShot(Intervention[Shots]):
    version = 2  # 2: pair probabilities on the original's (L - 1) scale by default
    num_shots: int = hparam(4, "demonstrations per evaluation prompt, drawn from the source train split")
    score: str = hparam("sum", "'sum' or 'mean' log-prob of response+EOS, as zero_shot", choices=SCORES)
    probability: str = hparam("original", "'original' (L - 1 scale) or 'sharp' pair probabilities, as zero_shot",
                              choices=PROBABILITIES)
    max_length: int | None = hparam(None, "truncate prompt+response to this many tokens (None = no limit)")
    batch_tokens: int | None = hparam(None, "token budget per scoring batch (None = the engine's default)",
                                      execution=True)

    presets = {"paper": {}, "cpu": {}}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_shots < 0:
            raise ValueError(f"few_shot: num_shots must be >= 0, got {self.num_shots}")

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> Shots:
        pool = tuple((ex.prompt, ex.preferred_response) for ex in train.train)
        if len(pool) < self.num_shots:
            raise ValueError(f"few_shot: source {train.id!r} has {len(pool)} train examples, "
                             f"fewer than num_shots={self.num_shots}")
        return Shots(pool, ctx.seed)

    def prompts_for(self, shots: Shots, queries: Sequence[Query]) -> list[str]:
        return [few_shot_prompt(q.prompt, [shots.pool[j] for j in shot_indices(len(shots.pool), self.num_shots,
                                                                                  shots.seed, i)])
                for i, q in enumerate(queries)]

    def scorer(self, lm: LoadedModel, fitted: Shots, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            prompted = [Query(p, q.responses, q.metadata) for p, q in zip(self.prompts_for(fitted, data.queries),
                                                                          data.queries)]
            return lm_response_scores(lm, prompted, self.score, self.probability, self.max_length,
                                      self.batch_tokens, ctx)
        return score
