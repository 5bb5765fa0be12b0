"""Known answers for the scoring methods: zero_shot equals a hand-computed log-prob comparison,
few_shot builds the documented seeded prompts, random says 0.5. Each runs as the pipeline runs it:
fit on the source's train split, a scorer over a label-free EvalSet, then `pair_with_labels`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from genies import metrics
from genies.data.schema import Distribution, Example
from genies.interventions.context import FitContext
from genies.interventions.few_shot import few_shot_prompt, shot_indices
from genies.interventions.fitted import load_fitted, save_fitted
from genies.interventions.registry import get_intervention
from genies.interventions.scores import Predictions, Scores, pair_with_labels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(lm, method, source: Distribution, target: Distribution, seed: int = 0) -> tuple[Scores, Predictions]:
    """What the pipeline does with one method: fit on the source's train split alone, score the
    target's test split without labels, pair the scores with the labels."""
    fitted = method.fit(lm, source.train_only(), FitContext(seed=seed))
    scores = method.scorer(lm, fitted, FitContext(seed=seed))(target.eval_set("test"))
    return scores, pair_with_labels(scores, target.test, f"{target.id}/test")


def _examples(n: int = 6) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = 2 + i % 3
        responses = tuple("".join(rng.choice(list("abcdefgh xyz"), size=1 + int(rng.integers(1, 9)))) + f"{j}"
                          for j in range(k))
        out.append(Example(f"Question {i}: pick one.\n", responses, int(rng.integers(k))))
    return out


def _hand_logprob(lm, prompt: str, response: str) -> tuple[float, int]:
    """log P(response + EOS | prompt), no BOS, one sequence at a time (the SPEC 5.1 definition)."""
    tok = lm.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].double(), -1)
    return float(sum(logp[len(p) - 1 + t, tok_id] for t, tok_id in enumerate(r))), len(r)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def _padded_length(lm, ex: Example) -> int:
    """L of SPEC 5.1: the prompt's tokens plus its longest response + EOS (responses padded together)."""
    tok = lm.tokenizer
    prompt = len(tok(ex.prompt, add_special_tokens=False)["input_ids"])
    return prompt + max(len(tok(r, add_special_tokens=False)["input_ids"]) + 1 for r in ex.responses)


@pytest.mark.parametrize("score, probability", [("sum", "original"), ("sum", "sharp"), ("mean", "original")])
def test_zero_shot_equals_hand_computed_logprob_comparison(tiny_llama, score, probability) -> None:
    """Scores are the summed (or per-token) log-probs; pair probabilities are sigmoid of their
    difference divided by L - 1 (the original's scale) for summed scores, undivided otherwise."""
    examples = _examples()
    dist = Distribution.from_examples("d", examples, examples)
    method = get_intervention("zero_shot")(score=score, probability=probability)
    scores, pred = _run(tiny_llama, method, dist, dist)
    expected, divisor = [], []
    for ex in examples:
        raw = [_hand_logprob(tiny_llama, ex.prompt, r) for r in ex.responses]
        expected.append(np.array([s if score == "sum" else s / n for s, n in raw]))
        divisor.append(_padded_length(tiny_llama, ex) - 1 if (score, probability) == ("sum", "original") else 1)
    for got, want in zip(scores.response_scores, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    want_p = [_sigmoid((expected[p.example_index][p.preferred_index] - expected[p.example_index][p.dispreferred_index])
                       / divisor[p.example_index]) for p in dist.eval_pairs("test")]
    np.testing.assert_allclose(pred.p_preferred, want_p, atol=1e-5)
    assert len(set(divisor)) > 1 or score == "mean" or probability == "sharp", "L must differ between examples"


def test_zero_shot_original_scale_is_the_padded_mean_cross_entropy_softmax(tiny_llama) -> None:
    """Known answer from the original's procedure itself: the prompt's responses left-padded
    together to length L, each scored by minus its mean token cross-entropy over the L - 1
    shifted positions (padding and prompt positions count in the divisor but add 0), then a
    softmax over the responses, restricted to each pair."""
    tok = tiny_llama.tokenizer
    ex = Example("Question: which is right?\n", ("yes", "no, it is not", "maybe so"), 2)
    dist = Distribution.from_examples("d", [ex], [ex])
    _, pred = _run(tiny_llama, get_intervention("zero_shot")(), dist, dist)
    p_ids = tok(ex.prompt, add_special_tokens=False)["input_ids"]
    seqs = [p_ids + tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in ex.responses]
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    labels = ids.clone()
    for row, s in enumerate(seqs):
        labels[row, : width - len(s) + len(p_ids)] = -100  # padding and prompt are not scored
    with torch.no_grad():
        logits = tiny_llama.model(input_ids=ids, attention_mask=mask,
                                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.double()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                           reduction="none")
    s = -(ce.sum(-1) / (width - 1)).numpy()
    soft = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    want = [soft[ex.preferred] / (soft[ex.preferred] + soft[j]) for j in pred.dispreferred_index]
    np.testing.assert_allclose(pred.p_preferred, want, atol=1e-4)
    assert all(0.05 < p < 0.95 for p in want), "on the original's scale pair probabilities stay soft"


def test_zero_shot_probabilities_are_the_pairwise_softmax(tiny_llama) -> None:
    """Known answer from the textbook definition, not from the method's own scores: each
    response's sequence probability P(response + EOS | prompt) from one unpadded forward
    (`_hand_logprob`), normalised over the prompt's four responses, and P(i beats j) the share
    of i in that softmax restricted to {i, j}."""
    # one-token responses: their probabilities are close, so every pair probability is far
    # from 0 and 1 and a wrong formula (the mean, a difference the wrong way round) shows
    ex = Example("Question: pick one.\n", ("a", "b", "c", "d"), 1)
    dist = Distribution.from_examples("d", [ex], [ex])
    scores, pred = _run(tiny_llama, get_intervention("zero_shot")(probability="sharp"), dist, dist)
    logp = [_hand_logprob(tiny_llama, ex.prompt, r)[0] for r in ex.responses]
    shift = max(logp)  # the sequence probabilities themselves are tiny; their ratios are not
    prob = [math.exp(lp - shift) for lp in logp]
    soft = [q / sum(prob) for q in prob]
    assert len(set(np.round(logp, 3))) == 4, "distinct responses must get distinct probabilities"
    want = {(i, j): soft[i] / (soft[i] + soft[j]) for i in range(4) for j in range(4)}
    assert all(0.3 < p < 0.7 for p in want.values())
    others = [j for j in range(4) if j != ex.preferred]
    assert list(pred.preferred_index) == [ex.preferred] * 3 and list(pred.dispreferred_index) == others
    np.testing.assert_allclose(pred.p_preferred, [want[ex.preferred, j] for j in others], rtol=0, atol=1e-5)
    for (i, j), p in want.items():  # every ordered pair of the query, not only the evaluated ones
        assert scores.beats[0][i, j] == pytest.approx(p, abs=1e-5)
    assert all(scores.beats[0][i, i] == pytest.approx(0.5) for i in range(4))


def test_few_shot_prompts_are_seeded_and_documented(tiny_llama) -> None:
    source = Distribution.from_examples("src", _examples(10), [])
    target = Distribution.from_examples("tgt", [], _examples(5))
    queries = target.eval_set("test").queries
    method = get_intervention("few_shot")()
    state = method.fit(tiny_llama, source, FitContext(seed=3))
    again = method.fit(tiny_llama, source, FitContext(seed=3))
    other = method.fit(tiny_llama, source, FitContext(seed=4))
    prompts = method.prompts_for(state, queries)
    assert prompts == method.prompts_for(again, queries)
    assert prompts != method.prompts_for(other, queries)
    for i, (ex, prompt) in enumerate(zip(target.test, prompts)):
        shots = shot_indices(10, 4, 3, i)
        assert len(set(shots)) == 4  # without replacement
        expected = "".join("\n\n" + source.train[j].prompt + source.train[j].preferred_response for j in shots)
        assert prompt == expected + "\n\n" + ex.prompt == few_shot_prompt(
            ex.prompt, [(source.train[j].prompt, source.train[j].preferred_response) for j in shots])
    # different prompts get different shots
    assert len({tuple(shot_indices(10, 4, 3, i)) for i in range(5)}) > 1


def test_few_shot_scores_are_zero_shot_scores_of_the_prefixed_prompts(tiny_llama, tmp_path) -> None:
    """Through a saved and reloaded fitted state, as a worker scores it."""
    source = Distribution.from_examples("src", _examples(8), [])
    target = Distribution.from_examples("tgt", [], _examples(3))
    method = get_intervention("few_shot")(num_shots=2)
    state = method.fit(tiny_llama, source.train_only(), FitContext(seed=1))
    save_fitted(state, tmp_path / "fs", intervention=method.name)
    reloaded = load_fitted(method.fitted_type(), tmp_path / "fs")
    assert reloaded == state
    scores = method.scorer(tiny_llama, reloaded, FitContext())(target.eval_set("test"))
    prompts = method.prompts_for(state, target.eval_set("test").queries)
    for ex, prompt, got in zip(target.test, prompts, scores.response_scores):
        want = [_hand_logprob(tiny_llama, prompt, r)[0] for r in ex.responses]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_few_shot_needs_enough_source_examples(tiny_llama) -> None:
    source = Distribution.from_examples("src", _examples(3), [])
    with pytest.raises(ValueError, match="fewer than num_shots=4"):
        get_intervention("few_shot")().fit(tiny_llama, source, FitContext())


def test_random_gives_one_half_and_chance_accuracy(tiny_llama) -> None:
    examples = _examples(400)
    dist = Distribution.from_examples("d", examples, examples)
    _, pred = _run(tiny_llama, get_intervention("random")(), dist, dist)
    assert len(pred.p_preferred) == len(dist.eval_pairs("test"))
    assert np.all(pred.p_preferred == 0.5)
    assert metrics.accuracy(pred.p_preferred, seed=0) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("name", ["zero_shot", "few_shot", "random"])
def test_scores_come_from_queries_without_labels(tiny_llama, name) -> None:
    """A method scores an EvalSet that carries no labels, so permuting the target's labels can
    change no score: only `pair_with_labels` reads them."""
    source = Distribution.from_examples("src", _examples(8), [])
    target = _examples(5)
    relabelled = [dataclasses.replace(ex, preferred=(ex.preferred + 1) % len(ex.responses)) for ex in target]
    method = get_intervention(name)()
    assert not method.reads_eval_labels
    fitted = method.fit(tiny_llama, source.train_only(), FitContext(seed=0))
    score = method.scorer(tiny_llama, fitted, FitContext(seed=0))
    data, relabelled_data = (Distribution.from_examples("t", [], examples).eval_set("test")
                             for examples in (target, relabelled))
    assert data.labels is None and relabelled_data.labels is None
    assert data == relabelled_data  # the same queries: nothing tells the two targets apart
    a, b = score(data), score(relabelled_data)
    for ma, mb in zip(a.beats, b.beats):
        np.testing.assert_array_equal(ma, mb)
    if a.response_scores is not None:
        for sa, sb in zip(a.response_scores, b.response_scores):
            np.testing.assert_array_equal(sa, sb)
