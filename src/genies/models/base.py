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


def context_length(lm: LoadedModel, max_length: int | None = None) -> int:
    """The longest sequence the model is asked to read: `max_length` if given, else the context
    its config names (the text config of a multimodal model), else its tokenizer's limit."""
    if max_length is not None:
        return int(max_length)
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    tok_max = getattr(lm.tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**7:
        return tok_max
    raise ValueError(f"model {lm.name}: cannot tell its context length; pass max_length")
