"""Known answers for the scoring methods: zero_shot equals a hand-computed log-prob comparison,
few_shot builds the documented seeded prompts, random says 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genies import metrics
from genies.data.schema import Distribution, Example
from genies.interventions.base import FitContext, State, get_intervention
from genies.interventions.few_shot import few_shot_prompt, shot_indices


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


@pytest.mark.parametrize("score", ["sum", "mean"])
def test_zero_shot_equals_hand_computed_logprob_comparison(tiny_llama, score) -> None:
    examples = _examples()
    dist = Distribution.from_examples("d", examples, examples)
    method = get_intervention("zero_shot")(score=score)
    state = method.fit(tiny_llama, dist, FitContext())
    assert state.tensors == {}
    pred = method.predict(tiny_llama, state, dist, "test", FitContext())
    expected = []
    for ex in examples:
        raw = [_hand_logprob(tiny_llama, ex.prompt, r) for r in ex.responses]
        expected.append(np.array([s if score == "sum" else s / n for s, n in raw]))
    for got, want in zip(pred.response_scores, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    want_p = [_sigmoid(expected[p.example_index][p.preferred_index] - expected[p.example_index][p.dispreferred_index])
              for p in dist.eval_pairs("test")]
    np.testing.assert_allclose(pred.p_preferred, want_p, atol=1e-5)


def test_zero_shot_probabilities_are_the_pairwise_softmax(tiny_llama) -> None:
    """Softmax over a prompt's responses, restricted to a pair, equals sigmoid(s_pref - s_disp)."""
    examples = [ex for ex in _examples() if len(ex.responses) == 4][:1]
    dist = Distribution.from_examples("d", examples, examples)
    method = get_intervention("zero_shot")()
    pred = method.predict(tiny_llama, method.fit(tiny_llama, dist, FitContext()), dist, "test", FitContext())
    s = pred.response_scores[0]
    soft = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    for k, j in enumerate(pred.dispreferred_index):
        i = pred.preferred_index[k]
        assert pred.p_preferred[k] == pytest.approx(soft[i] / (soft[i] + soft[j]))


def test_few_shot_prompts_are_seeded_and_documented(tiny_llama) -> None:
    source = Distribution.from_examples("src", _examples(10), [])
    target = Distribution.from_examples("tgt", [], _examples(5))
    method = get_intervention("few_shot")()
    state = method.fit(tiny_llama, source, FitContext(seed=3))
    again = method.fit(tiny_llama, source, FitContext(seed=3))
    other = method.fit(tiny_llama, source, FitContext(seed=4))
    prompts = method.prompts_for(state, target.test)
    assert prompts == method.prompts_for(again, target.test)
    assert prompts != method.prompts_for(other, target.test)
    for i, (ex, prompt) in enumerate(zip(target.test, prompts)):
        shots = shot_indices(10, 4, 3, i)
        assert len(set(shots)) == 4  # without replacement
        expected = "".join("\n\n" + source.train[j].prompt + source.train[j].preferred_response for j in shots)
        assert prompt == expected + "\n\n" + ex.prompt == few_shot_prompt(
            ex.prompt, [(source.train[j].prompt, source.train[j].preferred_response) for j in shots])
    # different prompts get different shots
    assert len({tuple(shot_indices(10, 4, 3, i)) for i in range(5)}) > 1


def test_few_shot_scores_are_zero_shot_scores_of_the_prefixed_prompts(tiny_llama, tmp_path) -> None:
    source = Distribution.from_examples("src", _examples(8), [])
    target = Distribution.from_examples("tgt", [], _examples(3))
    method = get_intervention("few_shot")(num_shots=2)
    state = method.fit(tiny_llama, source, FitContext(seed=1))
    state.save(tmp_path / "fs")
    reloaded = State.load(tmp_path / "fs")
    pred = reloaded.predict(tiny_llama, target)
    for ex, prompt, got in zip(target.test, method.prompts_for(state, target.test), pred.response_scores):
        want = [_hand_logprob(tiny_llama, prompt, r)[0] for r in ex.responses]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_few_shot_needs_enough_source_examples(tiny_llama) -> None:
    source = Distribution.from_examples("src", _examples(3), [])
    with pytest.raises(ValueError, match="fewer than num_shots=4"):
        get_intervention("few_shot")().fit(tiny_llama, source, FitContext())


def test_random_gives_one_half_and_chance_accuracy(tiny_llama) -> None:
    examples = _examples(400)
    dist = Distribution.from_examples("d", examples, examples)
    method = get_intervention("random")()
    pred = method.predict(tiny_llama, method.fit(tiny_llama, dist, FitContext()), dist, "test", FitContext())
    assert len(pred.p_preferred) == len(dist.eval_pairs("test"))
    assert np.all(pred.p_preferred == 0.5)
    assert metrics.accuracy(pred.p_preferred, seed=0) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("name", ["zero_shot", "few_shot"])
def test_permuting_target_labels_changes_no_score(tiny_llama, name) -> None:
    import dataclasses

    source = Distribution.from_examples("src", _examples(8), [])
    target = _examples(5)
    relabelled = [dataclasses.replace(ex, preferred=(ex.preferred + 1) % len(ex.responses)) for ex in target]
    method = get_intervention(name)()
    state = method.fit(tiny_llama, source, FitContext(seed=0))
    a = method.predict(tiny_llama, state, Distribution.from_examples("t", [], target), "test", FitContext())
    b = method.predict(tiny_llama, state, Distribution.from_examples("t", [], relabelled), "test", FitContext())
    for sa, sb in zip(a.response_scores, b.response_scores):
        np.testing.assert_array_equal(sa, sb)
