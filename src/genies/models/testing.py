"""Tiny random decoder models with a byte-level tokenizer, built offline for fast tests.

They exercise exactly the code paths of a real model (tokenizer with BOS/EOS, attention output
projections, `from_pretrained` from a safetensors folder) in milliseconds, without downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from genies.models.base import LoadedModel
from genies.models.loading import load_folder

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")

# Small configs in each family's own layout; head_dim 8 keeps every family's constraints happy.
# llama, qwen2, gpt_neox and gemma use rotary positions, which a constant shift of every position
# id leaves invisible; gpt2 and opt learn absolute position embeddings, so a test on them sees
# any position id that differs from a token's place in its own sequence.
TINY_CONFIGS: dict[str, dict] = {
    "llama": dict(model_type="llama", hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2),
    "qwen2": dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2),
    "gpt_neox": dict(model_type="gpt_neox", hidden_size=32, intermediate_size=64, num_attention_heads=4),
    "gemma": dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=8),
    # dropout off as in the families above, so a training pass is deterministic (fast vs slow paths)
    "gpt2": dict(model_type="gpt2", hidden_size=32, n_inner=64, num_attention_heads=4, resid_pdrop=0.0,
                 embd_pdrop=0.0, attn_pdrop=0.0),
    "opt": dict(model_type="opt", hidden_size=32, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32,
                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0),
}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + BOS/EOS/PAD) that round-trips any text."""
    byte_vocab = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(sorted(byte_vocab))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
        model_max_length=4096,
    )


def tiny_model(folder: Path, arch: str = "llama", num_layers: int = 2, seed: int = 0) -> LoadedModel:
    """Build (or reuse) a random `arch` model saved as safetensors in `folder` and load it."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        tokenizer = byte_tokenizer()
        spec = dict(TINY_CONFIGS[arch])
        model_type = spec.pop("model_type")
        config = AutoConfig.for_model(
            model_type, vocab_size=len(tokenizer), num_hidden_layers=num_layers,
            max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False, **spec,
        )
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    # The loader every real model goes through, so a tiny model's fingerprint is load_model's.
    return load_folder(folder, name=f"tiny-{arch}", device="cpu", dtype=torch.float32)
