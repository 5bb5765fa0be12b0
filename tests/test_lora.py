"""lora on the tiny model: it learns a planted feature, its state reloads exactly, it never
reads target labels, and its scores do not depend on batch size or padding."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from genies.data.schema import Distribution, Example
from genies.interventions import _reward_model as rm
from genies.interventions.base import FitContext, State, get_intervention


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models are dominated by thread hand-off on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(n: int, seed: int) -> list[Example]:
    """Random letters; the preferred response ends in ' yes', the other in ' no' (random order)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) + " yes"
        bad = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) + " no"
        pref = rng.randrange(2)
        out.append(Example(f"Q{i}: ", (bad, good) if pref else (good, bad), pref))
    return out


FAST = dict(r=8, alpha=16, dropout=0.0, learning_rate=3e-3, steps=40, batch_size=8)


@pytest.fixture(scope="module")
def fitted(tiny_llama, tmp_path_factory):
    train = planted(32, seed=0)
    dist = Distribution.from_examples("planted", train, planted(12, seed=1))
    method = get_intervention("lora")(**FAST)
    state = method.fit(tiny_llama, dist, FitContext(seed=0))
    state.save(tmp_path_factory.mktemp("lora") / "state")
    return method, state, dist


def test_lora_overfits_32_planted_examples(tiny_llama, fitted) -> None:
    method, state, dist = fitted
    pred = method.predict(tiny_llama, state, dist, "train", FitContext())
    assert (pred.p_preferred > 0.5).mean() >= 0.95
    assert state.info["train_loss"][-1] < state.info["train_loss"][0]


def test_state_holds_adapter_and_head_and_reloads_identically(tiny_llama, fitted) -> None:
    method, state, dist = fitted
    assert any("lora_A" in k for k in state.tensors) and any(k.endswith("score.weight") for k in state.tensors)
    reloaded = State.load(state.directory)
    assert reloaded.hparams == state.hparams
    first = method.predict(tiny_llama, state, dist, "test", FitContext())
    again = reloaded.predict(tiny_llama, dist)
    np.testing.assert_array_equal(first.p_preferred, again.p_preferred)


def test_a_head_left_untrained_is_refused(tiny_llama, fitted) -> None:
    method, state, _ = fitted
    broken = {k: v for k, v in state.tensors.items() if not k.endswith("score.weight")}
    with pytest.raises(ValueError, match="do not match"):
        method.load(tiny_llama, dataclasses.replace(state, tensors=broken))


def test_permuting_target_labels_changes_no_prediction(tiny_llama, fitted) -> None:
    method, state, dist = fitted
    rng = random.Random(5)
    permuted = [dataclasses.replace(ex, preferred=rng.randrange(len(ex.responses))) for ex in dist.test]
    other = Distribution.from_examples("relabelled", [], permuted)
    a = method.predict(tiny_llama, state, dist, "test", FitContext())
    b = method.predict(tiny_llama, state, other, "test", FitContext())
    for sa, sb in zip(a.response_scores, b.response_scores):
        np.testing.assert_array_equal(sa, sb)
    for k in range(len(b.p_preferred)):
        s = b.response_scores[b.example_index[k]]
        diff = s[b.preferred_index[k]] - s[b.dispreferred_index[k]]
        assert b.p_preferred[k] == pytest.approx(1 / (1 + np.exp(-diff)))


def test_scores_do_not_depend_on_batch_size(tiny_llama, fitted) -> None:
    method, state, dist = fitted
    model = method.load(tiny_llama, state)
    one = rm.score_responses(model, tiny_llama, dist.test, None, 1, FitContext())
    five = rm.score_responses(model, tiny_llama, dist.test, None, 5, FitContext())
    for a, b in zip(one, five):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_reward_is_read_at_the_final_eos_token(tiny_llama, fitted) -> None:
    """Equality with a naive reference: the head applied to the last hidden state of the
    unpadded sequence, which ends with EOS even though EOS may equal the pad token."""
    method, state, dist = fitted
    model = method.load(tiny_llama, state)
    ids = rm.encode(tiny_llama, dist.test[0].prompt, dist.test[0].responses[0], None)
    assert ids[-1] == tiny_llama.tokenizer.eos_token_id and ids[0] != tiny_llama.tokenizer.bos_token_id
    with torch.inference_mode():
        base = model.get_base_model()
        hidden = base.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        naive = float(base.score(hidden)[0])
        batched = rm.rewards(model, [ids, ids[:5] + [ids[-1]], ids + ids], rm.pad_token_id(tiny_llama), torch.device("cpu"))
    assert float(batched[0]) == pytest.approx(naive, abs=1e-5)


def test_truncation_keeps_the_end(tiny_llama) -> None:
    ids = rm.encode(tiny_llama, "a long prompt " * 20, "the answer", 12)
    assert len(ids) == 12 and tiny_llama.tokenizer.decode(ids[:-1]).endswith("the answer")


def test_training_is_seeded(tiny_llama) -> None:
    dist = Distribution.from_examples("planted", planted(8, seed=2), [])
    method = get_intervention("lora")(**{**FAST, "steps": 2, "batch_size": 4})
    a = method.fit(tiny_llama, dist, FitContext(seed=7))
    b = method.fit(tiny_llama, dist, FitContext(seed=7))
    assert a.info["train_loss"] == b.info["train_loss"]
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_full_fine_tune_refuses_cpu_unless_allowed(tiny_llama) -> None:
    dist = Distribution.from_examples("planted", planted(8, seed=3), planted(4, seed=4))
    with pytest.raises(RuntimeError, match="meant for a GPU"):
        get_intervention("full_fine_tune")().fit(tiny_llama, dist, FitContext())
    method = get_intervention("full_fine_tune")(allow_cpu=True, steps=20, batch_size=8, learning_rate=1e-3)
    state = method.fit(tiny_llama, dist, FitContext(seed=0))
    assert "model.embed_tokens.weight" in state.tensors and "score.weight" in state.tensors
    pred = method.predict(tiny_llama, state, dist, "train", FitContext())
    assert (pred.p_preferred > 0.5).mean() == 1.0


def test_half_precision_model_trains_float32_copies(tiny_llama) -> None:
    """On a bf16 model (the GPU default) the trained tensors stay float32 under autocast, so small
    updates are not rounded away, and the method still learns."""
    from transformers import AutoModelForCausalLM

    bf16 = dataclasses.replace(tiny_llama, model=AutoModelForCausalLM.from_pretrained(tiny_llama.path,
                                                                                      dtype=torch.bfloat16))
    dist = Distribution.from_examples("planted", planted(16, seed=0), [])
    method = get_intervention("lora")(**{**FAST, "steps": 30})
    state = method.fit(bf16, dist, FitContext(seed=0))
    assert all(t.dtype == torch.float32 for t in state.tensors.values())
    model = method.load(bf16, state)
    assert {p.dtype for n, p in model.named_parameters() if "lora_" not in n and "score" not in n} == {torch.bfloat16}
    assert (method.predict(bf16, state, dist, "train", FitContext()).p_preferred > 0.5).mean() >= 0.9
