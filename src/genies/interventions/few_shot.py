"""few_shot: zero_shot scoring with solved source examples in front of the prompt (SPEC 5.2).

For every evaluation prompt, `num_shots` examples are drawn without replacement from the SOURCE
train split with a generator seeded by (seed, example index), so the same prompt always gets the
same shots whatever else is evaluated. New prompt = concat("\\n\\n" + shot prompt + shot
preferred response) + "\\n\\n" + prompt. The state stores the shot pool, so predicting needs no
access to the source distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution, Example
from genies.interventions.base import FitContext, Intervention, Predictions, State, hparam, register
from genies.interventions.zero_shot import SCORES, lm_response_scores
from genies.models.base import LoadedModel


def shot_indices(pool_size: int, num_shots: int, seed: int, example_index: int) -> list[int]:
    """The shots of one evaluation prompt: seeded per prompt, without replacement."""
    rng = np.random.default_rng([seed, example_index])
    return [int(i) for i in rng.choice(pool_size, size=min(num_shots, pool_size), replace=False)]


def few_shot_prompt(prompt: str, shots: list[tuple[str, str]]) -> str:
    prefix = "".join("\n\n" + shot_prompt + shot_response for shot_prompt, shot_response in shots)
    return prefix + "\n\n" + prompt


@register("few_shot", family="prompting",
          description="zero_shot scoring with 4 solved source examples (seeded) prepended to each prompt.")
@dataclass
class FewShot(Intervention):
    num_shots: int = hparam(4, "demonstrations per evaluation prompt, drawn from the source train split")
    score: str = hparam("sum", "'sum' or 'mean' log-prob of response+EOS, as zero_shot", choices=SCORES)
    max_length: int | None = hparam(None, "truncate prompt+response to this many tokens (None = no limit)")
    batch_tokens: int | None = hparam(None, "token budget per scoring batch (None = the engine's default)")

    presets = {"paper": {}, "cpu": {}}
    needs_training_data = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_shots < 0:
            raise ValueError(f"few_shot: num_shots must be >= 0, got {self.num_shots}")

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        pool = [[ex.prompt, ex.preferred_response] for ex in source.train]
        if len(pool) < self.num_shots:
            raise ValueError(f"few_shot: source {source.id!r} has {len(pool)} train examples, "
                             f"fewer than num_shots={self.num_shots}")
        return State(self.name, self.hparams(), info={"source": source.id, "seed": ctx.seed, "shots": pool})

    def prompts_for(self, state: State, examples: list[Example]) -> list[str]:
        pool = state.info["shots"]
        seed = int(state.info["seed"])
        return [few_shot_prompt(ex.prompt, [tuple(pool[j]) for j in shot_indices(len(pool), self.num_shots, seed, i)])
                for i, ex in enumerate(examples)]

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        examples = dist.split(split)
        prompted = [Example(p, ex.responses, ex.preferred, ex.metadata)
                    for p, ex in zip(self.prompts_for(state, examples), examples)]
        scores = lm_response_scores(lm, prompted, self.score, self.max_length, self.batch_tokens, ctx)
        return Predictions.from_scores(examples, scores)
