"""The scoring engine equals the naive reference, is batch/padding invariant and counts truncation."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from genies.data.schema import Example
from genies.errors import ConfigError, JobError
from genies.models.base import pad_token_id
from genies.models.scoring import count_truncated, score_examples, score_examples_naive
from genies.models.testing import tiny_model

# Rotary families, which hide a constant shift of every position id, and learned absolute
# positions (gpt2, opt), which do not: every engine-vs-naive test runs on both kinds.
ARCHS = ("llama", "qwen2", "gpt_neox", "gemma", "gpt2", "opt")


def _examples(n: int = 12, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return "".join(rng.choice("abcdefgh ijk.?") for _ in range(rng.randint(lo, hi)))

    return [Example(text(1, 40), tuple(text(0, 20) for _ in range(rng.randint(2, 4))), 0) for _ in range(n)]


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return tiny_model(tmp_path_factory.mktemp("scoring") / request.param, request.param)


def _max_diff(a, b) -> float:
    return max(float(np.abs(x.sum - y.sum).max()) for x, y in zip(a, b, strict=True))


def _manual(lm, prompt: str, response: str) -> float:
    """log P(response + EOS | prompt) from one unpadded full forward: the textbook definition."""
    tok = lm.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([p + r])).logits[0].double().log_softmax(-1)
    return float(sum(logits[len(p) - 1 + t, r[t]] for t in range(len(r))))


@pytest.mark.parametrize("attention", ["tree", "dense"])
def test_engine_equals_naive_and_manual(tiny, attention) -> None:
    examples = _examples()
    engine = score_examples(tiny, examples, batch_tokens=300, attention=attention)
    naive = score_examples_naive(tiny, examples, batch_tokens=300)
    assert _max_diff(engine, naive) < 1e-4
    ex = examples[3]
    for k, response in enumerate(ex.responses):
        assert engine[3].sum[k] == pytest.approx(_manual(tiny, ex.prompt, response), abs=1e-4)
    # byte tokenizer: one token per character, plus EOS; mean is the per-token average
    assert list(engine[3].n_tokens) == [len(r) + 1 for r in ex.responses]
    np.testing.assert_allclose(engine[3].mean, engine[3].sum / engine[3].n_tokens)
    assert all((s.sum < 0).all() for s in engine)


@pytest.mark.parametrize("attention", ["tree", "dense"])
def test_batch_size_invariance(tiny_llama, attention) -> None:
    examples = _examples(10, seed=1)
    one_row = score_examples(tiny_llama, examples, batch_tokens=1, attention=attention)
    big = score_examples(tiny_llama, examples, batch_tokens=100_000, attention=attention)
    assert _max_diff(one_row, big) < 1e-5


def _dense_engine(lm, examples, **kwargs):
    return score_examples(lm, examples, attention="dense", **kwargs)


@pytest.mark.parametrize("scorer", [score_examples, _dense_engine, score_examples_naive])
def test_padding_side_invariance(tiny_llama, scorer) -> None:
    examples = _examples(10, seed=2)
    tok = tiny_llama.tokenizer
    old = tok.padding_side
    try:
        tok.padding_side = "right"
        right = scorer(tiny_llama, examples, batch_tokens=100_000)
        tok.padding_side = "left"
        left = scorer(tiny_llama, examples, batch_tokens=100_000)
    finally:
        tok.padding_side = old
    assert _max_diff(left, right) < 1e-5


def test_truncation_counted_and_keeps_the_prompt_end(tiny_llama, caplog: pytest.LogCaptureFixture) -> None:
    long = Example("x" * 50 + "the end", ("abc", "de"), 0)
    short = Example("hi", ("abc", "de"), 0)
    limit = 20  # longest response + EOS = 4 tokens, so 16 prompt tokens are kept
    with caplog.at_level("WARNING"):
        scores = score_examples(tiny_llama, [long, short], max_length=limit)
    assert "1 of 2 examples" in caplog.text
    assert count_truncated(scores) == 1
    assert scores[0].truncated_prompt_tokens == len(long.prompt) - 16
    assert scores[1].truncated_prompt_tokens == 0
    kept = score_examples(tiny_llama, [Example(long.prompt[-16:], long.responses, 0)])
    np.testing.assert_allclose(scores[0].sum, kept[0].sum, atol=1e-5)
    naive = score_examples_naive(tiny_llama, [long, short], max_length=limit)
    assert _max_diff(scores, naive) < 1e-4


def test_bad_input_is_named(tiny_llama) -> None:
    with pytest.raises(ValueError, match="example 1: a response has 31 tokens"):
        score_examples(tiny_llama, [Example("ok", ("a", "b"), 0), Example("ok", ("y" * 30, "b"), 0)],
                       max_length=20)
    with pytest.raises(ValueError, match="example 0: the prompt is empty"):
        score_examples(tiny_llama, [Example("", ("a", "b"), 0)])


def test_shared_prefixes_across_examples_and_responses(tiny) -> None:
    """Identical prompts, a common preamble and common response openings share tree nodes."""
    pre = "### Instruction: "
    examples = [
        Example(pre + "name a fruit", ("apple pie", "apple", "a pear"), 0),
        Example(pre + "name a fruit", ("apple", "banana"), 1),  # same prompt as above
        Example(pre + "name a colour", ("red", "re", "red"), 0),  # duplicate response
        Example("x", ("y", "yy"), 0),
    ]
    naive = score_examples_naive(tiny, examples)
    for size in (1, 10_000):  # one example per tree, everything in one tree
        assert _max_diff(score_examples(tiny, examples, batch_tokens=size, attention="tree"), naive) < 1e-4
        assert _max_diff(score_examples(tiny, examples, row_tokens=size, attention="dense"), naive) < 1e-4


def test_rows_share_nodes(tiny_llama) -> None:
    from genies.models.prefix_tree import TreeRow, pack_rows
    from genies.models.scoring import tokenize_examples

    examples = [Example("abc", ("de", "df"), 0), Example("abc", ("de", "g"), 0)]
    tokenized = tokenize_examples(tiny_llama, examples)
    rows = pack_rows(tokenized, 10_000)
    assert rows == [[0, 1]]
    row = TreeRow.build(tokenized, rows[0])
    # a b c | d e EOS | f EOS | g EOS  (the second example's "de"+EOS is already in the tree)
    assert len(row.tokens) == 3 + 3 + 2 + 2
    assert row.depth[:3] == [0, 1, 2] and row.depth[-2:] == [3, 4]


def test_models_that_post_process_logits_use_the_full_forward(tmp_path) -> None:
    """If hidden state x LM head != the model's logits, the engine must score the real logits."""
    from genies.models import scoring

    lm = tiny_model(tmp_path / "capped", "llama")
    original = lm.model.forward

    def capped(*args, **kwargs):  # a logit post-processing step the decoder does not know about
        out = original(*args, **kwargs)
        out.logits = 5.0 * torch.tanh(out.logits / 5.0)
        return out

    lm.model.forward = capped
    examples = _examples(6, seed=3)
    engine = score_examples(lm, examples)
    assert scoring._SPLIT_OK[lm.model] is False
    assert _max_diff(engine, score_examples_naive(lm, examples)) < 1e-4


def test_unsupported_attention_falls_back_to_dense(tmp_path) -> None:
    """A model whose attention is not plain softmax attention never takes the tree path."""
    from genies.models import scoring

    lm = tiny_model(tmp_path / "softcapped", "llama")
    lm.model.config.attn_logit_softcapping = 30.0  # as Gemma-2 declares it
    examples = _examples(5, seed=4)
    scores = score_examples(lm, examples)
    assert scoring._TREE_OK[lm.model] is False
    assert _max_diff(scores, score_examples_naive(lm, examples)) < 1e-4
    with pytest.raises(ValueError, match="tree attention is not supported"):
        score_examples(lm, examples, attention="tree")
    with pytest.raises(ValueError, match="attention must be"):
        score_examples(lm, examples, attention="flash")


def test_a_wrong_tree_kernel_is_caught_by_the_check(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-per-model comparison with the dense path rejects a tree kernel that disagrees."""
    from transformers import AttentionInterface

    from genies.models import scoring, tree_attention

    def off_by_a_bit(*args, **kwargs):
        out, weights = tree_attention.tree_attention_forward(*args, **kwargs)
        return out + 1e-2, weights

    monkeypatch.setitem(AttentionInterface._global_mapping, tree_attention.NAME, off_by_a_bit)
    lm = tiny_model(tmp_path / "broken", "llama")
    examples = _examples(4, seed=5)
    scores = score_examples(lm, examples)
    assert scoring._TREE_OK[lm.model] is False
    assert _max_diff(scores, score_examples_naive(lm, examples)) < 1e-4


@pytest.mark.parametrize(("attention", "stage"), [("tree", "_score_tree"), ("dense", "_score_dense_rows")])
def test_out_of_memory_splits_the_batch_and_retries(tiny_llama, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture, attention: str,
                                                    stage: str) -> None:
    """A forward that runs out of memory on more than one example is retried in halves."""
    from genies.models import scoring

    real = getattr(scoring, stage)
    sizes = []

    def limited(lm, head, rows):
        examples = len(rows.examples) if attention == "tree" else sum(len(r.examples) for r in rows)
        sizes.append(examples)
        if examples > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(lm, head, rows)

    monkeypatch.setattr(scoring, stage, limited)
    examples = _examples(6, seed=6)
    with caplog.at_level("INFO", logger="genies.models.batching"):
        scores = score_examples(tiny_llama, examples, batch_tokens=100_000, row_tokens=1, attention=attention)
    assert "out of memory on a batch" in caplog.text
    assert sizes[0] > 1 and sizes.count(1) == len(examples)
    assert _max_diff(scores, score_examples_naive(tiny_llama, examples)) < 1e-4


def test_text_the_tokenizer_cannot_encode_names_its_example(tiny_llama) -> None:
    """An in-memory distribution skips validation: the engine must still say which text is bad."""
    good = Example("ok", ("a", "b"), 0)
    with pytest.raises(JobError, match="example 1, response 1: not valid Unicode text: lone surrogate at character 2"):
        score_examples(tiny_llama, [good, Example("ok", ("a", "b \ud800"), 0)])
    with pytest.raises(JobError, match="example 2, prompt: not text but a null"):
        score_examples_naive(tiny_llama, [good, good, Example(None, ("a", "b"), 0)])


def test_pad_id_falls_back_to_eos_then_is_a_named_error(tiny_llama) -> None:
    tokenizer = tiny_llama.tokenizer.__class__.from_pretrained(tiny_llama.path)
    lm = dataclasses.replace(tiny_llama, tokenizer=tokenizer)
    assert pad_token_id(lm) == tokenizer.pad_token_id != tokenizer.eos_token_id
    tokenizer.pad_token = None
    assert pad_token_id(lm) == tokenizer.eos_token_id
    tokenizer.eos_token = None
    with pytest.raises(ConfigError, match="model 'tiny-llama': the tokenizer has neither a pad nor an EOS token"):
        pad_token_id(lm)
