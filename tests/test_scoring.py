"""The scoring engine equals the naive reference, is batch/padding invariant and counts truncation."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genies.data.schema import Example
from genies.errors import ConfigError, JobError
from genies.models.base import pad_token_id
from genies.models.prefix_tree import TokenizedExample, TreeRow
from genies.models.scoring import (_finish, _OutputHead, _report_truncation, _response_sums, count_truncated,
                                   encode_examples, resolve_attention, score_examples, score_examples_naive,
                                   tokenize_examples)
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


@pytest.mark.parametrize("tiny", ["gpt2", "opt"], indirect=True)
def test_left_padding_on_learned_positions(tiny) -> None:
    """Learned absolute positions see what rotary ones hide: the naive reference must pass both the
    attention mask (OPT derives positions from it) and position ids (GPT-2 reads them) under left padding."""
    examples = _examples(4, seed=9)
    tok = tiny.tokenizer
    old = tok.padding_side
    try:
        tok.padding_side = "right"
        right = score_examples_naive(tiny, examples, batch_tokens=100_000)
        tok.padding_side = "left"
        left = score_examples_naive(tiny, examples, batch_tokens=100_000)
    finally:
        tok.padding_side = old
    assert _max_diff(left, right) < 1e-5


def test_truncation_counted_and_keeps_the_prompt_end(tiny_llama, caplog: pytest.LogCaptureFixture) -> None:
    long = Example("x" * 50 + "the end", ("abc", "de"), 0)
    short = Example("hi", ("abc", "de"), 0)
    limit = 20  # longest response + EOS = 4 tokens, so 16 prompt tokens are kept
    message = "1 of 2 examples had their prompt truncated from the left to fit the 20-token context"
    with caplog.at_level("WARNING", logger="genies.models.scoring"):
        scores = score_examples(tiny_llama, [long, short], max_length=limit)
    assert caplog.messages == [message]
    assert count_truncated(scores) == 1
    assert scores[0].truncated_prompt_tokens == len(long.prompt) - 16
    assert scores[1].truncated_prompt_tokens == 0
    kept = score_examples(tiny_llama, [Example(long.prompt[-16:], long.responses, 0)])
    np.testing.assert_allclose(scores[0].sum, kept[0].sum, atol=1e-5)
    caplog.clear()
    with caplog.at_level("WARNING", logger="genies.models.scoring"):
        naive = score_examples_naive(tiny_llama, [long, short], max_length=limit)
    assert caplog.messages == [message]
    assert _max_diff(scores, naive) < 1e-4


def test_bad_input_is_named(tiny_llama) -> None:
    with pytest.raises(ValueError, match="example 1: a response has 31 tokens"):
        score_examples(tiny_llama, [Example("ok", ("a", "b"), 0), Example("ok", ("y" * 30, "b"), 0)],
                       max_length=20)
    with pytest.raises(ValueError, match="example 0: the prompt is empty"):
        score_examples(tiny_llama, [Example("", ("a", "b"), 0)])
    with pytest.raises(ValueError, match="^example 1: no responses to score$"):  # in-memory data is not validated
        score_examples(tiny_llama, [Example("ok", ("a", "b"), 0), Example("ok", (), 0)])


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


def test_the_naive_reference_also_splits_a_batch_that_runs_out_of_memory(tiny_llama, monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    examples = _examples(2, seed=8)
    want = score_examples_naive(tiny_llama, examples, batch_tokens=100_000)
    real = tiny_llama.model.forward
    sizes = []

    def limited(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if sizes[-1] > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_llama.model, "forward", limited)
    with caplog.at_level("INFO", logger="genies.models.batching"):
        got = score_examples_naive(tiny_llama, examples, batch_tokens=100_000)
    n_seqs = sum(len(ex.responses) for ex in examples)
    assert sizes[0] == n_seqs > 1 and sizes.count(1) == n_seqs
    assert f"out of memory on a batch of {n_seqs}" in caplog.text
    assert _max_diff(got, want) < 1e-6


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


# ---- known answers without a forward pass: tokenization, truncation, the head, the sums ----------


def test_encode_examples_tokenizes_prompt_and_each_response_apart(tiny_llama) -> None:
    tok = tiny_llama.tokenizer
    examples = [Example("ab c", ("x",), 0), Example("d", ("e f", "yz."), 1), Example("g", ("h",), 0)]
    got = encode_examples(tiny_llama, examples)

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    eos = tok.eos_token_id
    assert got == [TokenizedExample(ids("ab c"), [ids("x") + [eos]], 0),
                   TokenizedExample(ids("d"), [ids("e f") + [eos], ids("yz.") + [eos]], 0),
                   TokenizedExample(ids("g"), [ids("h") + [eos]], 0)]
    assert encode_examples(tiny_llama, []) == []


def test_encode_examples_names_the_bad_text(tiny_llama) -> None:
    good = Example("ok", ("a", "b"), 0)
    with pytest.raises(JobError) as err:
        encode_examples(tiny_llama, [good, good, Example("ok", (None, "b"), 0)])
    assert str(err.value) == "example 2, response 0: not text but a null"
    with pytest.raises(JobError) as err:
        encode_examples(tiny_llama, [good, Example(3, ("a",), 0)], name="train.jsonl line {}".format)
    assert str(err.value).startswith("train.jsonl line 1, prompt: not text but ")
    no_eos = SimpleNamespace(name="m", tokenizer=SimpleNamespace(eos_token_id=None))
    with pytest.raises(ValueError) as err:
        encode_examples(no_eos, [good])
    assert str(err.value) == "model m: tokenizer has no EOS token; every response is scored with EOS appended"


def test_tokenize_examples_truncates_the_prompt_from_the_left_to_the_limit(tiny_llama) -> None:
    """Byte tokenizer: one token per character; the longest response here is 2 + EOS = 3 tokens."""
    examples = [Example("abcdef", ("xy", "z"), 0), Example("g", ("h",), 0)]
    full = tokenize_examples(tiny_llama, examples)
    assert [t.truncated for t in full] == [0, 0] and len(full[0].prompt) == 6
    fits = tokenize_examples(tiny_llama, examples, max_length=9)  # 6 + 3: nothing removed
    assert fits == full
    one_left = tokenize_examples(tiny_llama, examples, max_length=4)  # keeps exactly one prompt token
    assert one_left[0] == TokenizedExample(full[0].prompt[-1:], full[0].responses, 5)
    assert one_left[1] == full[1]
    with pytest.raises(ValueError) as err:
        tokenize_examples(tiny_llama, examples, max_length=3)
    assert str(err.value) == ("example 0: a response has 3 tokens with EOS but the context is 3; it cannot be scored "
                              "with any prompt (raise max_length or shorten the response)")
    with pytest.raises(ValueError) as err:
        tokenize_examples(tiny_llama, [examples[1], Example("", ("a",), 0)])
    assert str(err.value) == ("example 1: the prompt is empty after tokenization; the first response token needs a "
                              "preceding prompt token to be scored")


def test_finish_and_the_truncation_report(caplog: pytest.LogCaptureFixture) -> None:
    tok = TokenizedExample([1, 2, 3], [[4, 5], [6, 7, 8, 9]], 5)
    scores = _finish(tok, np.array([-1.0, -3.0]))
    np.testing.assert_array_equal(scores.sum, [-1.0, -3.0])
    np.testing.assert_array_equal(scores.mean, [-0.5, -0.75])
    assert scores.n_tokens.tolist() == [2, 4] and scores.n_tokens.dtype == np.int64
    assert (scores.truncated_prompt_tokens, scores.padded_length, scores.truncated) == (5, 7, True)
    with caplog.at_level("WARNING", logger="genies.models.scoring"):
        _report_truncation([TokenizedExample([1], [[2]], 0)] * 2, 20)
        assert caplog.messages == []
        _report_truncation([TokenizedExample([1], [[2]], 1), TokenizedExample([1], [[2]], 0),
                            TokenizedExample([1], [[2]], 7)], 20)
    assert caplog.messages == ["2 of 3 examples had their prompt truncated from the left to fit the 20-token context"]


class _HeadOnly(torch.nn.Module):
    """A model whose forward output is its logits: an LM head and no separate decoder."""

    def __init__(self, hidden: int = 16, vocab: int = 50) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)

    def get_output_embeddings(self) -> torch.nn.Module | None:
        return self.lm_head


class _WithDecoder(_HeadOnly):
    def __init__(self) -> None:
        super().__init__()
        self.decoder = torch.nn.Identity()

    def get_decoder(self) -> torch.nn.Module:
        return self.decoder


def _fake_lm(model: torch.nn.Module, device: str = "cpu") -> SimpleNamespace:
    return SimpleNamespace(name="fake", model=model, device=torch.device(device), dtype=torch.float32)


def test_output_head_takes_the_split_path_only_when_it_is_checked(tiny_llama, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    from genies.models import scoring

    assert _OutputHead(tiny_llama).split is True  # a plain llama: decoder states x LM head are its logits
    no_decoder = _OutputHead(_fake_lm(_HeadOnly()))
    assert (no_decoder.split, no_decoder.decoder) == (False, None)
    with_decoder = _WithDecoder()
    monkeypatch.setitem(scoring._SPLIT_OK, with_decoder, False)  # the once-per-model check's verdict
    assert _OutputHead(_fake_lm(with_decoder)).split is False
    monkeypatch.setitem(scoring._SPLIT_OK, with_decoder, True)
    assert _OutputHead(_fake_lm(with_decoder)).split is True
    headless = _HeadOnly()
    headless.get_output_embeddings = lambda: None
    with pytest.raises(ValueError) as err:
        _OutputHead(_fake_lm(headless))
    assert str(err.value) == ("model fake: has no language-model head (a sequence-classification reward model?); "
                              "log-probability scoring needs a causal LM")


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_is_the_log_softmax_at_the_target_over_several_chunks(
        monkeypatch: pytest.MonkeyPatch, split: bool, dtype: torch.dtype) -> None:
    """300 positions: two full LM-head chunks and a partial one, more positions than vocabulary."""
    from genies.models import scoring

    model = (_WithDecoder() if split else _HeadOnly()).to(dtype)
    if split:
        monkeypatch.setitem(scoring._SPLIT_OK, model, True)
    head = _OutputHead(_fake_lm(model))
    gen = torch.Generator().manual_seed(1)
    states = (torch.randn(300, 16 if split else 50, generator=gen) * 3).to(dtype)
    targets = torch.randint(0, 50, (300,), generator=gen)
    with torch.no_grad():
        logits = model.lm_head(states) if split else states
        want = logits.double().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
        got = head.token_logprobs(states.clone(), targets)
    assert got.dtype == torch.float32 and got.shape == (300,)
    torch.testing.assert_close(got.double(), want, atol=1e-5 if dtype == torch.float32 else 2e-2, rtol=0)


def test_token_logprobs_stay_finite_when_positions_differ_by_thousands() -> None:
    """Each position's log-sum-exp is shifted by its own maximum: one shared shift would underflow
    every position far below the largest logit of the chunk to log(0)."""
    head = _OutputHead(_fake_lm(_HeadOnly()))
    logits = torch.tensor([[0.0, 1.0, 2.0], [-2000.0, -1999.0, -1998.0]])
    got = head.token_logprobs(logits.clone(), torch.tensor([2, 0]))
    want = torch.tensor([0.0, 1.0, 2.0]).log_softmax(-1)[[2, 0]]
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)  # float32 spacing near 2000 is 1.2e-4


def test_response_sums_add_each_responses_token_logprobs_per_row() -> None:
    """Two rows of a left-padded batch (offsets 0 and 2), several responses per row, against a loop."""
    tokenized = [TokenizedExample([1, 2], [[3, 4], [3]], 0), TokenizedExample([5], [[6, 7, 8]], 0),
                 TokenizedExample([1, 9], [[2]], 0)]
    rows = [TreeRow.build(tokenized, [0, 2]), TreeRow.build(tokenized, [1])]
    assert [len(r.tokens) for r in rows] == [6, 4]
    offsets = [0, 2]
    states = torch.randn(2, 6, 50, generator=torch.Generator().manual_seed(2))
    head = _OutputHead(_fake_lm(_HeadOnly()))
    got = _response_sums(head, states, rows, offsets)
    logprobs = states.double().log_softmax(-1)
    for b, (row, at) in enumerate(zip(rows, offsets)):
        want = np.zeros(max(row.owner) + 1)
        for pred, target, owner in zip(row.pred, row.targets, row.owner):
            want[owner] += float(logprobs[b, at + pred, target])
        np.testing.assert_allclose(got[b], want, atol=1e-5, rtol=0)
    assert [len(s) for s in got] == [3, 1]


def test_resolve_attention_by_device_request_and_check(tiny_llama, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-model check's verdict is planted, so no forward runs: auto takes the tree only on CPU."""
    from genies.models import scoring

    assert resolve_attention(tiny_llama) == "tree"
    assert resolve_attention(tiny_llama, "dense") == "dense"
    model = _HeadOnly()
    monkeypatch.setitem(scoring._TREE_OK, model, True)
    cpu, gpu = _fake_lm(model), _fake_lm(model, "cuda")
    assert [resolve_attention(cpu, a) for a in ("auto", "tree", "dense")] == ["tree", "tree", "dense"]
    assert [resolve_attention(gpu, a) for a in ("auto", "tree", "dense")] == ["dense", "tree", "dense"]
    monkeypatch.setitem(scoring._TREE_OK, model, False)
    assert [resolve_attention(cpu, a) for a in ("auto", "dense")] == ["dense", "dense"]
    with pytest.raises(ValueError) as err:
        resolve_attention(cpu, "tree")
    assert str(err.value) == ("model fake: tree attention is not supported for this architecture "
                              "(use attention='dense')")
    with pytest.raises(ValueError) as err:
        resolve_attention(cpu, "flash")
    assert str(err.value) == "attention must be one of auto, tree, dense; got 'flash'"


def test_progress_counts_finished_examples_per_batch(tiny_llama) -> None:
    """One tree per example at a budget of 1 node, one batch of single-example rows, one sequence each."""
    examples = _examples(3, seed=7)
    calls: list[int] = []
    score_examples(tiny_llama, examples, batch_tokens=1, attention="tree", progress=calls.append)
    assert calls == [1, 1, 1]
    calls.clear()
    score_examples(tiny_llama, examples, row_tokens=1, batch_tokens=100_000, attention="dense",
                   progress=calls.append)
    assert calls == [3]
    calls.clear()
    score_examples_naive(tiny_llama, examples, batch_tokens=1, progress=calls.append)
    assert calls == [1] * sum(len(ex.responses) for ex in examples)
