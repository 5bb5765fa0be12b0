"""The loaded-model handle that every engine, extractor and intervention receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class LoadedModel:
    """A causal LM ready for scoring, plus what is needed to reload it in another form.

    `path` is always a folder that `from_pretrained` can load with safetensors, so interventions
    that need a different head (a sequence-classification reward model) reload from it rather
    than from the original hub id or GGUF file. `fingerprint` names every cache entry derived
    from this model.
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    fingerprint: str
    trust_remote_code: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)
