"""prompt_tuning: the Bradley-Terry reward model of `lora`, but the trained parameters are 10
virtual prompt tokens (PEFT prompt tuning, random init) plus the score head
(docs/methods.md#reward-models). Paper preset: lr 5.2e-3, 150 steps of 16 pairs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from genies.interventions._reward_model import PeftRewardModel
from genies.interventions.hparams import hparam
from genies.interventions.registry import register


@register("prompt_tuning", family="prompting",
          description="Bradley-Terry reward model: score head + 10 trained virtual prompt tokens.")
@dataclass
class PromptTuning(PeftRewardModel):
    version = 2  # 2: prompt and response tokenized separately (issue 10)

    learning_rate: float = hparam(5.2e-3, "AdamW learning rate (constant schedule)")
    num_virtual_tokens: int = hparam(10, "trained soft-prompt tokens prepended to every input")

    presets = {
        "paper": {"num_virtual_tokens": 10, "learning_rate": 5.2e-3, "steps": 150, "batch_size": 16,
                  "max_grad_norm": 0.3},
        "cpu": {"num_virtual_tokens": 10, "learning_rate": 5.2e-3, "steps": 32, "batch_size": 8,
                "max_length": 256},
    }

    def wrap(self, model: nn.Module, head: str) -> nn.Module:
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        config = PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=self.num_virtual_tokens,
                                    prompt_tuning_init=PromptTuningInit.RANDOM, modules_to_save=[head])
        return get_peft_model(model, config)
