"""Reward-model tree scoring with the frozen lower layers computed once per process (`_frozen_tree`).

Known answers: the split pass gives the plain tree pass's rewards (bitwise on LLaMA), a second
reward model on the same base reads the memo and gets the rewards it would have computed, and
nothing is shared across different base weights, trees or first trainable layers."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import numpy as np
import pytest
import torch

from genies.data.schema import Query
from genies.interventions import _frozen_tree as ft
from genies.interventions import _reward_model as rm
from genies.interventions.context import FitContext
from genies.interventions.lora import Lora
from genies.interventions.prompt_tuning import PromptTuning

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from genies.models.testing import tiny_model

    return tiny_model(tmp_path_factory.mktemp("frozen") / "llama", "llama", num_layers=3)


@pytest.fixture(autouse=True)
def empty_memo():
    ft.MEMO.clear()
    yield
    ft.MEMO.clear()


def queries() -> list[Query]:
    return [Query("Q: pick one. A:", (" yes", " yes please", " no", " yes")),
            Query("Another prompt, longer than the first one. A:", (" ab", " cd")),
            Query("Z", (" a much longer response than the others", " b", " c"))]


def reward_model(lm, seed: int, last_layers: int | None = 1):
    """A lora reward model on `lm` whose adapters and head are randomised by `seed`."""
    model, head = Lora(r=4, dropout=0.0, last_layers=last_layers).build(lm, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval(), head


def score(model, lm, *, reuse: bool, batch_tokens: int = 2048) -> list[np.ndarray]:
    return rm.score_responses(model, lm, queries(), None, 4, FitContext(), batch_tokens=batch_tokens,
                              forward="tree", reuse_frozen=reuse)


def test_split_pass_gives_the_plain_tree_rewards_bitwise(base) -> None:
    model, head = reward_model(base, 0)
    assert ft.FrozenTreeScorer.of(model, head, base.fingerprint, CPU, torch.float32).first == 2
    for got, want in zip(score(model, base, reuse=True), score(model, base, reuse=False), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_second_reward_model_on_the_same_base_reads_the_memo(base, monkeypatch) -> None:
    first, _ = reward_model(base, 0)
    second, head = reward_model(base, 1)
    score(first, base, reuse=True)
    assert ft.FrozenTreeScorer.of(second, head, base.fingerprint, CPU, torch.float32) is not None  # checked once
    bottoms = []
    real = ft.FrozenTreeScorer._bottom
    monkeypatch.setattr(ft.FrozenTreeScorer, "_bottom", lambda self, inputs: bottoms.append(1) or real(self, inputs))
    got = score(second, base, reuse=True)
    assert bottoms == [] and ft.MEMO.hits == 1
    for a, b in zip(got, score(second, base, reuse=False), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not any(np.array_equal(a, b) for a, b in zip(got, score(first, base, reuse=False)))


def test_other_base_weights_under_the_same_name_share_nothing(base, tmp_path) -> None:
    from genies.models.testing import tiny_model

    other = dataclasses.replace(tiny_model(tmp_path / "other", "llama", num_layers=3, seed=1),
                                fingerprint=base.fingerprint)
    score(reward_model(base, 0)[0], base, reuse=True)
    model, _ = reward_model(other, 0)
    got = score(model, other, reuse=True)
    assert ft.MEMO.hits == 0
    for a, b in zip(got, score(model, other, reuse=False), strict=True):
        np.testing.assert_array_equal(a, b)


def test_other_trees_and_other_frozen_depths_miss(base) -> None:
    score(reward_model(base, 0)[0], base, reuse=True)
    score(reward_model(base, 1)[0], base, reuse=True, batch_tokens=40)  # other trees
    score(reward_model(base, 2, last_layers=2)[0], base, reuse=True)  # first trainable layer 1, not 2
    assert ft.MEMO.hits == 0


def test_models_without_frozen_lower_layers_take_the_plain_pass(base) -> None:
    every_layer, head = reward_model(base, 0, last_layers=None)
    assert ft.FrozenTreeScorer.of(every_layer, head, base.fingerprint, CPU, torch.float32) is None
    tuned, head = PromptTuning(num_virtual_tokens=3).build(base, 0)
    assert ft.FrozenTreeScorer.of(tuned.eval(), head, base.fingerprint, CPU, torch.float32) is None


def test_a_split_that_does_not_match_the_plain_pass_is_not_used(base, monkeypatch) -> None:
    model, head = reward_model(base, 0)
    real = ft.FrozenTreeScorer._top
    monkeypatch.setattr(ft.FrozenTreeScorer, "_top", lambda self, states, inputs: real(self, states + 1e-2, inputs))
    assert ft.FrozenTreeScorer.of(model, head, base.fingerprint, CPU, torch.float32) is None


def test_the_memo_evicts_the_least_recently_used_states_past_its_size() -> None:
    memo = ft._Memo(limit=3 * 4 * 10)  # three [10] float32 tensors
    for k in range(3):
        memo.put(bytes([k]), torch.zeros(10))
    assert memo.get(bytes([0])) is not None  # 0 is now the most recent
    memo.put(bytes([3]), torch.zeros(10))
    assert [memo.get(bytes([k])) is not None for k in range(4)] == [True, False, True, True]
    memo.put(b"big", torch.zeros(31))  # larger than the whole memo: not kept, nothing evicted
    assert memo.get(b"big") is None and memo.bytes == 3 * 40


def test_a_scored_model_can_be_freed(base) -> None:
    """A run loads one reward model per prediction job: the per-model decision must not keep them alive."""
    model, _ = reward_model(base, 0)
    score(model, base, reuse=True)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_other_rotary_embeddings_share_nothing(base) -> None:
    """Positions enter below the first adapted layer too: same weights, other rotary frequencies."""
    from genies.interventions._reward_packing import decoder_of

    score(reward_model(base, 0)[0], base, reuse=True)
    model, _ = reward_model(base, 0)
    decoder_of(model).rotary_emb.inv_freq.mul_(0.5)
    got = score(model, base, reuse=True)
    assert ft.MEMO.hits == 0
    for a, b in zip(got, score(model, base, reuse=False), strict=True):
        np.testing.assert_array_equal(a, b)


def test_another_rope_theta_shares_nothing(base) -> None:
    """A rope theta changes every rotary frequency but the first (1.0 whatever the theta): the
    digest takes small tensors whole, not by a sample that would only see that first one."""
    from genies.interventions._reward_packing import decoder_of

    score(reward_model(base, 0)[0], base, reuse=True)
    model, _ = reward_model(base, 0)
    rotary = decoder_of(model).rotary_emb
    dim = 2 * rotary.inv_freq.numel()
    rotary.inv_freq.copy_(1.0 / 500000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    assert rotary.inv_freq[0] == 1.0
    got = score(model, base, reuse=True)
    assert ft.MEMO.hits == 0
    for a, b in zip(got, score(model, base, reuse=False), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_decoder_configuration_is_in_the_key(base) -> None:
    """What the configuration says the layers compute (here the norms' epsilon) keys the states;
    how the model is called (use_cache) does not."""
    from genies.interventions._reward_packing import decoder_of

    score(reward_model(base, 0)[0], base, reuse=True)
    flagged, _ = reward_model(base, 1)
    decoder_of(flagged).config.use_cache = not decoder_of(flagged).config.use_cache
    score(flagged, base, reuse=True)
    assert ft.MEMO.hits == 1
    model, _ = reward_model(base, 2)
    decoder_of(model).config.rms_norm_eps = 0.5
    score(model, base, reuse=True)
    assert ft.MEMO.hits == 1


def test_the_decision_and_key_follow_the_dtype_and_device_of_each_call(base) -> None:
    model, head = reward_model(base, 0)
    first = ft.FrozenTreeScorer.of(model, head, "fp", CPU, torch.float32)
    other = ft.FrozenTreeScorer.of(model, head, "fp", CPU, torch.bfloat16)
    assert first is not None and (other is None or other.model_key != first.model_key)
    assert ft.FrozenTreeScorer.of(model, head, "fp", CPU, torch.float32).model_key == first.model_key


def test_a_model_in_training_mode_is_never_split(base) -> None:
    """Its dropout would put noise into states another reward model then reads."""
    model, head = reward_model(base, 0)
    assert ft.FrozenTreeScorer.of(model.train(), head, "fp", CPU, torch.float32) is None
    assert ft.FrozenTreeScorer.of(model.eval(), head, "fp", CPU, torch.float32) is not None
