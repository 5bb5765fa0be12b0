"""lora: a Bradley-Terry reward model fine-tuned with LoRA adapters (docs/methods.md#reward-models).

Sequence-classification head with one output on the base model, LoRA on the attention
projections (PEFT's per-architecture defaults unless `target_modules` is given), the score head
trained in full and saved with the adapter. Paper preset: r 64, alpha 16, dropout 0.1, lr 2e-4,
150 steps of 16 pairs, gradient norm 0.3, constant schedule. Quantization is the run's
(`--quantize`): on a 4-bit model this is QLoRA, as the original trained its largest reward models
(see `_reward_model` and docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from genies.interventions._reward_model import PeftRewardModel
from genies.interventions.hparams import hparam
from genies.interventions.registry import register


@register("lora", family="fine-tuning",
          description="Bradley-Terry reward model: score head + LoRA adapters trained on source pairs.")
@dataclass
class Lora(PeftRewardModel):
    version = 2  # 2: prompt and response tokenized separately (issue 10)

    r: int = hparam(64, "LoRA rank")
    alpha: float = hparam(16, "LoRA alpha (scaling = alpha / r)")
    dropout: float = hparam(0.1, "LoRA dropout")
    target_modules: list[str] | None = hparam(None, "module names to adapt (None = PEFT's default for the architecture)")
    last_layers: int | None = hparam(None, "adapt only the last N layers (None = all); the frozen layers below are "
                                          "then computed once per training pair instead of every step")

    presets = {
        "paper": {"r": 64, "alpha": 16, "dropout": 0.1, "learning_rate": 2e-4, "steps": 150, "batch_size": 16,
                  "max_grad_norm": 0.3},
        # Measured on SmolLM2-135M, alpaca_mmlu, a shared 2-core machine: 5e-4 left the loss flat
        # in 32 steps, 2e-3 fits the training pairs. With packed pairs and the frozen-layer cache,
        # 32 pairs fit in 17 s adapting the last 4 of 30 layers (training pair accuracy 0.94)
        # against 29 s with the last 8 (0.92-0.94); docs/interventions.md. GENIES-15's sources and
        # references have long texts (46 s per fit at 32 x 8), so make run's budget takes 24 steps
        # of 4 pairs: 3 epochs over the 32 pairs of its --max-train 32.
        "cpu": {"r": 8, "alpha": 16, "dropout": 0.1, "learning_rate": 2e-3, "steps": 24, "batch_size": 4,
                "max_length": 256, "last_layers": 4},
    }

    def wrap(self, model: nn.Module, head: str) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        layers = None
        if self.last_layers is not None:
            total = int(model.config.get_text_config().num_hidden_layers)
            layers = list(range(max(0, total - self.last_layers), total))
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            bias="none", target_modules=self.target_modules, layers_to_transform=layers,
                            modules_to_save=[head])
        return get_peft_model(model, config)
