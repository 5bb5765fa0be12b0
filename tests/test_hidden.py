"""Hidden-state extraction: shapes, equality with naive recomputations, padding/batch invariance."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from genies.errors import JobError
from genies.models.base import LoadedModel
from genies.models.hidden import (UnsupportedArchitectureError, encode_texts, extract_hidden, extract_hidden_naive,
                                  find_layout, resolve_attention)
from genies.models.testing import byte_tokenizer, tiny_model

ARCHS = ("llama", "qwen2", "gpt_neox", "gemma", "gpt2", "opt")  # rotary, then learned absolute positions
# Repeated prefixes are packed into one row; " Five." / " Fivefold." share tokens past the prefix,
# and texts 0 and 5 are identical, so the packing's shared part is exercised at its edges.
Q = "Question: add 2 and 3."
PREFIXES = [Q, "a", "Write a very long poem about the sea and the sky", "Hi", Q, Q]
COMPLETIONS = [" Five.", "bcd", " Waves.", " there!", " Fivefold.", " Five."]

# The attention module (whose output is o_proj(heads)) per family, written out independently of
# genies.models.hidden's generic search.
ATTENTION = {
    "llama": lambda m, i: m.model.layers[i].self_attn,
    "qwen2": lambda m, i: m.model.layers[i].self_attn,
    "gemma": lambda m, i: m.model.layers[i].self_attn,
    "gpt_neox": lambda m, i: m.gpt_neox.layers[i].attention,
    "gpt2": lambda m, i: m.transformer.h[i].attn,
    "opt": lambda m, i: m.model.decoder.layers[i].self_attn,
}
OUT_PROJ = {"llama": "o_proj", "qwen2": "o_proj", "gemma": "o_proj", "gpt_neox": "dense", "gpt2": "c_proj",
            "opt": "out_proj"}


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request, tmp_path_factory) -> tuple[str, LoadedModel]:
    arch = request.param
    lm = tiny_model(tmp_path_factory.mktemp("hidden") / arch, arch, seed=1)
    return arch, lm


def _ids(lm: LoadedModel, text: str, eos: bool = False) -> torch.Tensor:
    tok = lm.tokenizer
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
    return torch.tensor([ids])


@contextmanager
def _padding_side(lm: LoadedModel, side: str) -> Iterator[None]:
    """Extraction pads on the tokenizer's side, as the scoring engine does."""
    old = lm.tokenizer.padding_side
    lm.tokenizer.padding_side = side
    try:
        yield
    finally:
        lm.tokenizer.padding_side = old


def _close(a: np.ndarray, b: np.ndarray) -> None:
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a / scale, b / scale, atol=1e-5, rtol=0)


def test_shapes(arch_model):
    arch, lm = arch_model
    out = extract_hidden(lm, PREFIXES, COMPLETIONS)
    cfg = lm.model.config
    assert out["residual"].shape == (6, cfg.num_hidden_layers + 1, cfg.hidden_size)
    assert out["heads"].shape == (6, cfg.num_hidden_layers, cfg.num_attention_heads, 8)
    assert all(v.dtype == np.float32 for v in out.values())
    assert set(extract_hidden(lm, PREFIXES, COMPLETIONS, sites=("heads",))) == {"heads"}


def test_residual_equals_unpadded_single_sequence_forward(arch_model):
    arch, lm = arch_model
    out = extract_hidden(lm, PREFIXES, COMPLETIONS, batch_tokens=30)["residual"]
    for i, (p, c) in enumerate(zip(PREFIXES, COMPLETIONS)):
        with torch.no_grad():
            ref = lm.model(input_ids=_ids(lm, p + c), output_hidden_states=True).hidden_states
        expected = torch.stack([h[0, -1] for h in ref]).numpy()
        _close(out[i], expected)


def test_heads_project_to_attention_output(arch_model):
    """out_proj(captured heads) must equal the attention module's own output at the last token."""
    arch, lm = arch_model
    with _padding_side(lm, "left"):
        heads = extract_hidden(lm, PREFIXES, COMPLETIONS, batch_tokens=20, attention="dense")["heads"]
    for i, (p, c) in enumerate(zip(PREFIXES, COMPLETIONS)):
        seen: dict[int, torch.Tensor] = {}
        hooks = [
            ATTENTION[arch](lm.model, layer).register_forward_hook(
                lambda m, args, out, layer=layer: seen.__setitem__(layer, out[0][0, -1]))
            for layer in range(lm.num_layers)
        ]
        try:
            with torch.no_grad():
                lm.model(input_ids=_ids(lm, p + c))
        finally:
            for h in hooks:
                h.remove()
        for layer in range(lm.num_layers):
            proj = getattr(ATTENTION[arch](lm.model, layer), OUT_PROJ[arch])
            with torch.no_grad():
                projected = proj(torch.from_numpy(heads[i, layer].reshape(-1))).numpy()
            _close(projected, seen[layer].numpy())


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def test_llama_heads_equal_manual_attention(tmp_path):
    """Recompute layer 0's per-head attention outputs by hand (RoPE, GQA, causal softmax)."""
    lm = tiny_model(tmp_path / "llama", "llama", seed=3)
    text_prefix, completion = "The cat sat", " on the mat"
    heads = extract_hidden(lm, [text_prefix], [completion], sites=("heads",))["heads"][0, 0]  # [H, D]
    cfg, attn = lm.model.config, lm.model.model.layers[0].self_attn
    n_heads, n_kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        ids = _ids(lm, text_prefix + completion)[0]
        x = lm.model.model.layers[0].input_layernorm(lm.model.model.embed_tokens(ids))  # [T, hidden]
        t = len(ids)
        q = attn.q_proj(x).view(t, n_heads, d)
        k = attn.k_proj(x).view(t, n_kv, d)
        v = attn.v_proj(x).view(t, n_kv, d)
        inv_freq = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
        angles = torch.outer(torch.arange(t).float(), inv_freq)
        cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        expected = torch.empty(n_heads, d)
        for h in range(n_heads):
            kv = h // (n_heads // n_kv)
            scores = (k[:, kv] @ q[-1, h]) / math.sqrt(d)  # the last query sees every key
            expected[h] = torch.softmax(scores, 0) @ v[:, kv]
    _close(heads, expected.numpy())


def test_every_test_architecture_takes_the_tree_path_on_cpu(arch_model):
    """The speed of extraction on CPU comes from tree attention; each architecture here passes the
    per-model check that its hidden states equal the dense path's (else extraction would fall
    back to the dense mask, correct but slower)."""
    _, lm = arch_model
    assert resolve_attention(lm) == "tree"
    assert resolve_attention(lm, "dense") == "dense"


@pytest.mark.parametrize("position", ["last", "mean"])
def test_equals_the_naive_reference_on_both_paths_any_padding_side_and_budget(arch_model, position):
    """One padded sequence per text through the whole model (`extract_hidden_naive`) is the
    reference; tree and dense attention, either padding side and budgets from one text per
    forward to everything in one must all give its numbers (absolute positions included)."""
    _, lm = arch_model
    ref = extract_hidden_naive(lm, PREFIXES, COMPLETIONS, batch_tokens=1, position=position)
    for side in ("left", "right"):
        with _padding_side(lm, side):
            naive = extract_hidden_naive(lm, PREFIXES, COMPLETIONS, position=position)
            for site in ref:
                _close(naive[site], ref[site])
            for attention in ("tree", "dense"):
                for budget in (1, 24, 10_000):
                    out = extract_hidden(lm, PREFIXES, COMPLETIONS, batch_tokens=budget, position=position,
                                         attention=attention)
                    assert out.keys() == ref.keys()
                    for site in ref:
                        _close(out[site], ref[site])


@pytest.mark.parametrize("add_eos", [False, True])
def test_mean_is_average_of_last_over_completion_prefixes(arch_model, add_eos):
    """In a causal model the state at token t is the 'last' state of the text cut after t; the byte
    tokenizer makes one token per character, so the completion mean is a mean of such cuts."""
    _, lm = arch_model
    prefix, completion = "Is it?", " Yes"
    mean = extract_hidden(lm, [prefix], [completion], position="mean", add_eos=add_eos)
    cuts = [completion[:k] for k in range(1, len(completion) + 1)]
    per_token = extract_hidden(lm, [prefix] * len(cuts), cuts)
    if add_eos:
        eos = extract_hidden(lm, [prefix], [completion], add_eos=True)
        per_token = {s: np.concatenate([per_token[s], eos[s]]) for s in per_token}
    for site in mean:
        _close(mean[site][0], per_token[site].mean(0))


def test_responses_to_one_prompt_share_its_tokens(tiny_llama):
    """Three responses to a 100-character prompt read 1 + 100 + 3 tokens, not 3 x 102."""
    assert resolve_attention(tiny_llama) == "tree"  # the per-model check's forwards run before counting
    fed = []
    hook = tiny_llama.model.model.embed_tokens.register_forward_hook(lambda m, a, out: fed.append(a[0].numel()))
    try:
        out = extract_hidden(tiny_llama, ["x" * 100] * 3, ["a", "b", "c"])
    finally:
        hook.remove()
    assert fed == [104]
    alone = extract_hidden(tiny_llama, ["x" * 100], ["b"])
    _close(out["heads"][1], alone["heads"][0])


def test_eos_and_bos_placement(tiny_llama):
    tok = tiny_llama.tokenizer
    enc = encode_texts(tok, ["ab"], ["cd"], add_bos=True, add_eos=True)
    assert enc.ids[0] == [tok.bos_token_id, *tok("abcd", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert enc.completion_start[0] == 3  # BOS, a, b, then c
    assert encode_texts(tok, ["ab"], ["cd"], add_bos=False).ids[0] == tok("abcd", add_special_tokens=False)["input_ids"]


def test_long_texts_truncated_from_left_and_reported(tiny_llama):
    with pytest.warns(UserWarning, match=r"1 of 2 texts .* truncated from the left \(text indices: 1\)"):
        out = extract_hidden(tiny_llama, ["shor", "0123456789"], ["!", "abc"], max_length=6)
    kept = extract_hidden(tiny_llama, ["", "89"], ["!", "abc"])  # BOS + "89abc" = 6 tokens
    _close(out["residual"][1], kept["residual"][1])


def test_empty_completion_with_mean_is_an_error(tiny_llama):
    with pytest.raises(ValueError, match="text 1: the completion is empty"):
        extract_hidden(tiny_llama, ["a", "b"], ["c", ""], position="mean")


def test_bad_arguments(tiny_llama):
    with pytest.raises(ValueError, match="unknown sites"):
        extract_hidden(tiny_llama, ["a"], ["b"], sites=("mlp",))
    with pytest.raises(ValueError, match="unknown position"):
        extract_hidden(tiny_llama, ["a"], ["b"], position="first")
    with pytest.raises(ValueError, match="1 prefixes but 2 completions"):
        extract_hidden(tiny_llama, ["a"], ["b", "c"])


@pytest.fixture(scope="module")
def tiny_gpt2() -> LoadedModel:
    """GPT-2 layout: absolute position embeddings (left padding would shift them without explicit
    position ids) and a Conv1D `attn.c_proj`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = byte_tokenizer()
    config = AutoConfig.for_model("gpt2", vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    return LoadedModel(name="tiny-gpt2", model=model, tokenizer=tok, path=None, fingerprint="tiny-gpt2")


def test_gpt2_layout_padding_invariance_and_heads(tiny_gpt2):
    lm = tiny_gpt2
    ref = extract_hidden(lm, PREFIXES, COMPLETIONS, batch_tokens=1)
    with _padding_side(lm, "left"):
        left = extract_hidden(lm, PREFIXES, COMPLETIONS, batch_tokens=60, attention="dense")
    assert ref["heads"].shape == (6, 2, 4, 8)
    for site in ref:
        _close(left[site], ref[site])
    seen = {}
    hook = lm.model.transformer.h[1].attn.register_forward_hook(lambda m, a, out: seen.update(out=out[0][0, -1]))
    with torch.no_grad():
        lm.model(input_ids=_ids(lm, PREFIXES[0] + COMPLETIONS[0]))
    hook.remove()
    with torch.no_grad():
        projected = lm.model.transformer.h[1].attn.c_proj(torch.from_numpy(ref["heads"][0, 1].reshape(1, -1)))[0]
    _close(projected.numpy(), seen["out"].numpy())


def test_unsupported_layout_has_one_clear_error():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2)])

    with pytest.raises(UnsupportedArchitectureError, match="Odd: found decoder layers .* no attention output"):
        find_layout(Odd())
    with pytest.raises(UnsupportedArchitectureError, match="Linear: no decoder layer list found"):
        find_layout(nn.Linear(2, 2))


def test_out_of_memory_halves_only_the_failing_batch(tiny_llama, caplog: pytest.LogCaptureFixture):
    """Eight prompts sharing "prompt number " (BOS + 14 tokens) with 10 tokens of their own each
    pack four to a 55-node tree under a 55-token budget. A simulated out-of-memory on trees over
    40 nodes splits that batch into two trees of two prompts (35 nodes); the next batch starts
    at four prompts again and is halved once, not cut to the last size tried."""
    prefixes = [f"prompt number {i}" for i in range(8)]
    completions = [f" answer {i}" for i in range(8)]
    ref = extract_hidden_naive(tiny_llama, prefixes, completions)
    nodes = []

    def limited(module, args, kwargs):
        nodes.append(kwargs["input_ids"].shape[1])
        if nodes[-1] > 40:
            raise torch.OutOfMemoryError("simulated")

    hook = tiny_llama.model.model.register_forward_pre_hook(limited, with_kwargs=True)
    try:
        with caplog.at_level("INFO", logger="genies.models.batching"):
            out = extract_hidden(tiny_llama, prefixes, completions, batch_tokens=55, attention="tree")
    finally:
        hook.remove()
    assert "out of memory on a batch of 4; retrying as 2 + 2" in caplog.text
    assert nodes == [55, 35, 35, 55, 35, 35]
    for site in ref:
        _close(out[site], ref[site])


def test_context_length_reads_the_text_config():
    """A multimodal config keeps the context in its text config; the tokenizer limit is a fallback."""
    from types import SimpleNamespace

    from genies.models.base import context_length

    text = SimpleNamespace(max_position_embeddings=321)
    outer = SimpleNamespace(get_text_config=lambda: text)
    tok = SimpleNamespace(model_max_length=999)
    lm = LoadedModel(name="vlm", model=SimpleNamespace(config=outer), tokenizer=tok, path=None, fingerprint="x")
    assert context_length(lm) == 321
    assert context_length(lm, 12) == 12
    text.max_position_embeddings = None
    assert context_length(lm) == 999


def test_text_the_tokenizer_cannot_encode_is_named(tiny_llama):
    prefixes, completions = ["p", "q", "r"], ["a", "b", "c\udfff"]
    with pytest.raises(JobError, match="text 2: not valid Unicode text: lone surrogate at character 2"):
        extract_hidden(tiny_llama, prefixes, completions)
    with pytest.raises(JobError, match="cola test, example 2: not valid Unicode"):
        encode_texts(tiny_llama.tokenizer, prefixes, completions, name="cola test, example {}".format)
