"""Model shapes the doctor can build with random weights: agreement between code paths, speed and
memory depend on a model's shape and precision, not on what its weights learned, so a machine
with no model files and no network can still be checked at the size it will run.

`default` is the embedded model's shape (SmolLM2-135M), read from its converted folder when one
is in the model cache and otherwise from the same numbers written out here; `7b` and `13b` are
the LLaMA-2 shapes the GENIES paper's reward models had; `tiny` is the 2-layer model the tests
use. Every random model reads text through the byte-level tokenizer of `genies.models.testing`
(its 259 ids lie inside every shape's vocabulary), so no tokenizer files are needed either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PretrainedConfig

from genies.errors import UnknownNameError

# The embedded model's config.json (SmolLM2-135M-Instruct as transformers converts its GGUF file).
EMBEDDED_SHAPE: dict[str, Any] = dict(
    model_type="llama", hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
    head_dim=64, num_hidden_layers=30, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
    rope_parameters={"rope_theta": 100000.0, "rope_type": "default"}, tie_word_embeddings=True,
)
LLAMA_7B: dict[str, Any] = dict(
    model_type="llama", hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
    num_hidden_layers=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
    rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, tie_word_embeddings=False,
)
LLAMA_13B: dict[str, Any] = {**LLAMA_7B, "hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40,
                             "num_key_value_heads": 40, "num_hidden_layers": 40}
TINY: dict[str, Any] = dict(
    model_type="llama", hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
    num_hidden_layers=2, vocab_size=259, max_position_embeddings=4096, tie_word_embeddings=False,
)
SHAPES: dict[str, dict[str, Any]] = {"tiny": TINY, "default": EMBEDDED_SHAPE, "7b": LLAMA_7B, "13b": LLAMA_13B}
GPU_SHAPES = ("default", "7b", "13b")

# config.json keys that name a checkpoint rather than its shape
_NOT_SHAPE = ("architectures", "dtype", "torch_dtype", "transformers_version", "_model_name_or_path", "_name_or_path",
              "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "use_cache")


@dataclass(frozen=True)
class ShapeSpec:
    """A shape and where its numbers came from (the embedded model's folder or this module)."""

    name: str
    fields: dict[str, Any]
    source: str

    def config(self, **overrides: Any) -> PretrainedConfig:
        """The transformers config, with the byte tokenizer's special tokens and no KV cache."""
        from genies.models.testing import byte_tokenizer

        tok = byte_tokenizer()
        fields = {**self.fields, **overrides}
        return AutoConfig.for_model(
            fields.pop("model_type"), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, use_cache=False, **fields)

    def summary(self) -> dict[str, Any]:
        keys = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "vocab_size")
        return {k: self.fields.get(k) for k in keys}


def shape_spec(name: str) -> ShapeSpec:
    """The named shape; `default` prefers the converted embedded model's own config.json."""
    if name not in SHAPES:
        raise UnknownNameError("shape", name, SHAPES)
    if name == "default":
        found = _embedded_config_file()
        if found is not None:
            fields = {k: v for k, v in json.loads(found.read_text()).items() if k not in _NOT_SHAPE}
            return ShapeSpec(name, fields, str(found))
        return ShapeSpec(name, dict(EMBEDDED_SHAPE),
                         "built-in SmolLM2-135M config (the embedded model is not converted here)")
    return ShapeSpec(name, dict(SHAPES[name]), "built-in LLaMA config" if name != "tiny" else "built-in test config")


def _embedded_config_file() -> Path | None:
    """config.json of a finished conversion of the embedded model in the model cache, if any."""
    from genies.models.catalog import MANIFEST, models_cache_dir
    from genies.models.embedded import DEFAULT_MODEL_LABEL

    for folder in sorted(models_cache_dir().glob(f"{DEFAULT_MODEL_LABEL}-*")):
        if (folder / MANIFEST).is_file() and (folder / "config.json").is_file():
            return folder / "config.json"
    return None


def parameter_counts(spec: ShapeSpec) -> dict[str, int]:
    """Parameters of the causal LM, of the reward model (score head instead of the LM head) and
    of the reward model's layers that 4-bit quantization replaces, counted on the meta device:
    exact, with no memory and no GPU."""
    from genies.doctor.checks import quantizable_linears

    with torch.device("meta"):
        causal = AutoModelForCausalLM.from_config(spec.config())
        reward = AutoModelForSequenceClassification.from_config(spec.config(num_labels=1))
    return {"causal_lm": sum(p.numel() for p in causal.parameters()),
            "reward_model": sum(p.numel() for p in reward.parameters()),
            "reward_linear": sum(layer.weight.numel() for _, _, layer in quantizable_linears(reward))}


def random_causal_lm(spec: ShapeSpec, device: str | torch.device, dtype: torch.dtype, seed: int = 0
                     ) -> torch.nn.Module:
    """A random-weights causal LM built directly on `device` in `dtype`: a 13B model goes to the
    GPU once, never through CPU memory."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(spec.config(), dtype=dtype)
    return model.eval()


def random_reward_model(spec: ShapeSpec, device: str | torch.device, dtype: torch.dtype, seed: int = 0
                        ) -> torch.nn.Module:
    """The random-weights sequence-classification model (one output) of the shape, on `device`."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(spec.config(num_labels=1), dtype=dtype)
    return model


def save_random_model(spec: ShapeSpec, folder: Path, seed: int = 0) -> Path:
    """Write a random-weights fp32 model of the shape and the byte tokenizer to `folder`, so that
    it loads like any model folder (`load_folder`) and reward models reload from it."""
    from genies.models.testing import byte_tokenizer

    model = random_causal_lm(spec, "cpu", torch.float32, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    byte_tokenizer().save_pretrained(folder)
    return folder
