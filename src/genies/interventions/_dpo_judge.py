"""`dpo:POLICY[,REF]`: the reward a DPO-trained policy implies, r(x, y) = beta * (log pi(y|x) -
log pi_ref(y|x)) (Rafailov et al. 2023, "Direct Preference Optimization", eq. 5 without the
prompt-only term, which cancels between two responses to one prompt).

Both log-probabilities come from the shared-prompt scoring engine
(`genies.models.scoring.score_examples`): the prompt computed once per example, log P(response +
EOS | prompt) summed over the response's tokens, prompt and response tokenized apart. With the
chat template (`template=chat`, the default when the tokenizer has one) the prompt is the
template's user turn followed by its generation prompt, which is what a chat policy was trained
to continue. Without a reference (`dpo:POLICY`) the reward is the reference-free beta * log
pi(y|x). P(i beats j) = sigmoid(r_i - r_j), so beta sets how sharp the probabilities are, never
the ranking. A policy that is its own reference gives r = 0 and P = 0.5 for every pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from genies.data.schema import EvalSet, Example, Query
from genies.errors import ConfigError
from genies.interventions._external import (
    TEMPLATES,
    ExternalFit,
    ExternalJudge,
    absolute_spec,
    chat_text,
    load_causal_lm,
    template_kind,
)
from genies.interventions.base import Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores

if TYPE_CHECKING:
    from genies.models.base import LoadedModel


def log_likelihoods(lm: LoadedModel, queries: Sequence[Query], template: str, max_length: int | None,
                    batch_tokens: int, ctx: FitContext, what: str) -> list[np.ndarray]:
    """log P(response + EOS | prompt) of every response under `lm`, the prompt through the chat
    template when `template` is chat."""
    from genies.models.scoring import score_examples

    def prompt(text: str) -> str:
        return chat_text(lm.tokenizer, text) if template == "chat" else text

    examples = [Example(prompt(q.prompt), q.responses, 0) for q in queries]
    with ctx.progress_bar(f"dpo: {what}", len(examples)) as advance:
        results = score_examples(lm, examples, batch_tokens=batch_tokens, max_length=max_length, progress=advance)
    return [np.asarray(r.sum, dtype=np.float64) for r in results]


@register("dpo", family="external",
          description="A DPO policy's implicit reward beta * (log pi - log pi_ref): dpo:POLICY[,REF].")
@dataclass
class DpoJudge(ExternalJudge):
    policy: str = hparam("", "the DPO-trained policy: a local folder, a cached hub id or `default`", execution=True)
    reference: str = hparam("", "its reference model ('' = none: the reference-free reward beta * log pi(y|x))",
                            execution=True)
    beta: float = hparam(0.1, "the DPO beta: P(i beats j) = sigmoid(r_i - r_j) with r = beta * log-ratio")
    template: str = hparam("auto", "auto = the chat template when the policy's tokenizer has one, else raw; chat = "
                                   "the prompt as the template's user turn + generation prompt; raw = the prompt "
                                   "as is", choices=TEMPLATES)
    max_length: int | None = hparam(None, "truncate each prompt from the left so prompt + response fit N tokens "
                                          "(None = the model's context)")

    usage = "dpo:POLICY[,REFERENCE]"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ConfigError(f"dpo.beta must be > 0, got {self.beta}")

    @classmethod
    def spec_overrides(cls, argument: str) -> dict[str, Any]:
        """`dpo:POLICY` or `dpo:POLICY,REFERENCE` (local folders made absolute)."""
        policy, _, reference = argument.partition(",")
        return {"policy": absolute_spec(policy), "reference": absolute_spec(reference) if reference else ""}

    def model_specs(self) -> tuple[str, ...]:
        return (self.policy, self.reference) if self.reference else (self.policy,)

    def scorer(self, lm: LoadedModel | None, fitted: ExternalFit, ctx: FitContext) -> Scorer:
        models = self.resolved()
        placement = self.placement()
        loaded = [load_causal_lm(m, placement, method="dpo", trust_remote_code=self.trust_remote_code,
                                 allow_pickle=self.allow_pickle, run_lm=lm) for m in models]
        kind = template_kind(self.template, loaded[0].tokenizer, "dpo", models[0].spec)
        info = {"beta": self.beta, "template": kind, "reference": models[1].spec if len(models) > 1 else None}

        def score(data: EvalSet) -> Scores:
            where = f"{data.distribution}/{data.split}"
            policy = log_likelihoods(loaded[0], data.queries, kind, self.max_length, self.budget(), ctx,
                                     f"policy on {where}")
            if len(loaded) == 1:
                rewards = [self.beta * p for p in policy]
            else:
                reference = log_likelihoods(loaded[1], data.queries, kind, self.max_length, self.budget(), ctx,
                                            f"reference on {where}")
                rewards = [self.beta * (p - r) for p, r in zip(policy, reference)]
            return Scores.bradley_terry(rewards, info)
        return score
