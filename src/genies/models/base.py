"""The loaded-model handle that every engine, extractor and intervention receives, and the
model facts they all need: context length, pad id, tokenization that names a text it cannot encode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from genies.data.validation import text_problem
from genies.errors import ConfigError, JobError
from genies.models.placement import Placement


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
    placement: Placement | None = None

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embeddings' device (the first GPU of a sharded model)."""
        embeddings = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        if embeddings is not None and hasattr(embeddings, "weight"):
            return embeddings.weight.device
        return next(self.model.parameters()).device

    @property
    def quantize(self) -> str:
        return self.placement.quantize if self.placement else "none"

    def precision_key(self) -> dict[str, Any]:
        """What of how the model was loaded changes its numbers (part of every job key); equal to
        `Placement.precision_key()` of the placement it was loaded with."""
        if self.placement is not None:
            return self.placement.precision_key()
        dtype = str(self.dtype).removeprefix("torch.")
        return Placement(device=self.device.type, dtype=dtype).precision_key()

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: the placement's (a quantized model's first parameter may be uint8)."""
        if self.placement is not None:
            return self.placement.torch_dtype
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


def pad_token_id(lm: LoadedModel) -> int:
    """The id that fills the padding of a batch: the tokenizer's pad token, else its EOS.

    Every engine masks padding out, so the id never changes a number; it only has to be a real
    token id to look up. `load_model` gives a tokenizer a pad token where it can
    (`loading.ensure_pad_token`), so the EOS fallback is for a `LoadedModel` built another way.
    """
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise ConfigError(f"model {lm.name!r}: the tokenizer has neither a pad nor an EOS token to pad batches "
                          "with; give it a pad token (tokenizer.pad_token = ...)")
    return int(pad)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], name: Callable[[int], str],
             **kwargs: Any) -> BatchEncoding:
    """`tokenizer(texts, add_special_tokens=False, **kwargs)`, with a failure pinned on its text.

    A tokenizer refuses text it cannot encode (a lone surrogate, a non-string from an in-memory
    dataset) with a `TypeError` or `ValueError` that names neither the text nor its example, so a
    job would die with no way to find the culprit. After such a failure the texts are checked
    one by one, and the first bad one raises a `JobError` "`name(i)`: problem"; the search costs
    nothing when tokenization succeeds. `texts` must not be empty (tokenizers reject an empty batch).
    """
    try:
        return tokenizer(list(texts), add_special_tokens=False, **kwargs)
    except (TypeError, ValueError) as err:
        for i, text in enumerate(texts):
            problem = text_problem(text)
            if problem is None:
                try:
                    tokenizer([text], add_special_tokens=False, **kwargs)
                except (TypeError, ValueError) as alone:
                    problem = f"the tokenizer cannot encode it ({type(alone).__name__}: {alone})"
            if problem is not None:
                raise JobError(f"{name(i)}: {problem}") from err
        raise
