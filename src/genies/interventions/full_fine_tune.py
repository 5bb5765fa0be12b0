"""full_fine_tune: the Bradley-Terry reward model with every parameter trained
(docs/methods.md#reward-models). Meant for GPUs: on CPU, fit refuses unless `allow_cpu` is set (tests do, on tiny models).
It refuses a quantized model: 8-bit and 4-bit weights cannot be trained (lora on it is QLoRA).
The state holds every trained tensor, i.e. a full copy of the model."""

from __future__ import annotations

from dataclasses import dataclass

from genies.errors import ConfigError
from genies.interventions._reward_model import RewardModelIntervention
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.models.base import LoadedModel
from genies.models.placement import Placement


@register("full_fine_tune", family="fine-tuning",
          description="Bradley-Terry reward model with all parameters trained (GPU only).")
@dataclass
class FullFineTune(RewardModelIntervention):
    version = 2  # 2: prompt and response tokenized separately (issue 10)

    learning_rate: float = hparam(1e-5, "AdamW learning rate (constant schedule)")
    allow_cpu: bool = hparam(False, "train on CPU anyway (slow and memory hungry except for tiny models)",
                             execution=True)

    presets = {
        "paper": {"learning_rate": 1e-5, "steps": 150, "batch_size": 16, "max_grad_norm": 0.3},
        "cpu": {"learning_rate": 1e-5, "steps": 32, "batch_size": 8, "max_length": 256},
    }

    def check_placement(self, placement: Placement) -> None:
        if placement.quantized:
            raise ConfigError(f"full_fine_tune cannot train {placement.quantize} quantized weights; use "
                              "--quantize none, or `lora` (QLoRA on a quantized model)")

    def check_model(self, lm: LoadedModel) -> None:
        if lm.quantize != "none":
            raise ConfigError(
                f"full_fine_tune cannot train the {lm.quantize} quantized weights of {lm.name!r}; use --quantize none, "
                "or `lora` (QLoRA on a quantized model)")
        if lm.device.type == "cpu" and not self.allow_cpu:
            raise RuntimeError(
                f"full_fine_tune trains every parameter of {lm.name!r} and is meant for a GPU, but the model is "
                "on the CPU; use `lora` instead, or pass allow_cpu=True to train anyway")
