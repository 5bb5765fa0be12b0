"""The weak-to-strong losses (`genies.interventions._soft_loss`) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genies.interventions import _soft_loss as L


def test_soft_bt_loss_is_the_cross_entropy_of_sigmoid_margins() -> None:
    m, t = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([0.9, 0.3, 1.0])
    p = [1 / (1 + math.exp(-x)) for x in (2.0, -1.0, 0.0)]
    expected = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for ti, pi in zip([0.9, 0.3, 1.0], p)) / 3
    assert float(L.soft_bt_loss(m, t)) == pytest.approx(expected, rel=1e-6)
    hard = torch.ones(3)  # hard labels: the usual reward-model loss
    assert torch.allclose(L.soft_bt_loss(m, hard), -F.logsigmoid(m).mean())
    flipped = L.oriented(m, t, torch.tensor([True, False, True]))
    assert torch.allclose(L.soft_bt_loss(*flipped), L.soft_bt_loss(m, t))


def test_hardened_labels_the_top_share_matching_the_weak_class_balance() -> None:
    margin = torch.tensor([0.5, -2.0, 3.0, 0.1, -0.3])
    target = torch.tensor([0.8, 0.2, 0.4, 0.9, 0.1])  # 2 of 5 above 1/2
    assert L.hardened(margin, target).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert L.hardened(margin, torch.ones(5)).tolist() == [1.0] * 5
    assert L.hardened(margin, torch.zeros(5)).tolist() == [0.0] * 5


def test_aux_weight_ramps_linearly_over_the_first_fifth_then_stays() -> None:
    assert [L.aux_weight(s, 10, 0.75) for s in (0, 1, 2, 3, 9)] == [0.0, 0.375, 0.75, 0.75, 0.75]
    assert L.aux_weight(5, 100, 0.5) == pytest.approx(0.125)


def test_aux_confidence_loss_mixes_the_two_cross_entropies() -> None:
    margin = torch.tensor([1.0, -1.0, 2.0, -0.5])
    target = torch.tensor([0.7, 0.6, 0.2, 0.3])  # 2 of 4 positive: the two largest margins harden to 1
    hard = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = 0.6 * L.soft_bt_loss(margin, target) + 0.4 * L.soft_bt_loss(margin, hard)
    assert torch.allclose(L.aux_confidence_loss(margin, target, 0.4), expected)
    assert torch.allclose(L.pair_loss("aux_conf", margin, target, 0, 10, 0.75), L.soft_bt_loss(margin, target))
    assert torch.allclose(L.pair_loss("xent", margin, target, 9, 10, 0.75), L.soft_bt_loss(margin, target))
    # a student sure of the opposite of a weak label is pulled less toward it under aux_conf
    m = torch.tensor([-3.0, 3.0], requires_grad=True)
    L.pair_loss("aux_conf", m, torch.tensor([0.9, 0.1]), 9, 10, 0.75).backward()
    aux_grad = m.grad.clone()
    m.grad = None
    L.pair_loss("xent", m, torch.tensor([0.9, 0.1]), 9, 10, 0.75).backward()
    assert aux_grad.abs().sum() < m.grad.abs().sum()
    with pytest.raises(ValueError, match="unknown loss"):
        L.pair_loss("mse", margin, target, 0, 1, 0.5)


# -- the losses in the reward models' training step ------------------------------------------------

def _soft(examples, confidence: float):
    import dataclasses

    return [dataclasses.replace(ex, confidence=confidence) for ex in examples]


def test_aux_conf_training_does_not_depend_on_micro_batch_size(tiny_llama) -> None:
    """The hardened predictions are computed over the whole optimizer batch, so micro_batch_size
    stays an execution setting under aux_conf too."""
    import numpy as np
    from planted import planted

    from genies.data.schema import Distribution
    from genies.interventions.context import FitContext
    from genies.interventions.lora import Lora

    method = Lora(r=8, alpha=16, dropout=0.0, learning_rate=3e-3, steps=3, batch_size=6, loss="aux_conf", aux_max=0.75)
    examples = planted(10, seed=6)
    soft = [ex if i % 3 else _soft([ex], 0.7)[0] for i, ex in enumerate(examples)]
    dist = Distribution.from_examples("planted", soft, [])
    import dataclasses

    fits = [dataclasses.replace(method, micro_batch_size=micro).fit(tiny_llama, dist, FitContext(seed=3))
            for micro in (None, 4, 1)]
    for other in fits[1:]:
        np.testing.assert_allclose(other.train_loss, fits[0].train_loss, atol=1e-5, rtol=0)
        for k, v in fits[0].tensors.items():
            torch.testing.assert_close(other.tensors[k], v, atol=1e-5, rtol=1e-4, msg=k)


def test_the_loss_enters_keys_only_when_it_is_not_xent_and_soft_labels_are_read(tiny_llama) -> None:
    from planted import planted

    from genies.data.schema import Distribution
    from genies.interventions.context import FitContext
    from genies.interventions.lora import Lora

    plain = Lora()
    assert "loss" not in plain.key_hparams() and "aux_max" not in plain.key_hparams()
    assert Lora(aux_max=0.5).key_hparams() == plain.key_hparams()  # aux_max changes nothing under xent
    aux = Lora(loss="aux_conf").key_hparams()
    assert aux["loss"] == "aux_conf" and aux["aux_max"] == 0.75
    fast = Lora(r=8, alpha=16, dropout=0.0, learning_rate=3e-3, steps=2, batch_size=4)
    examples = planted(8, seed=2)
    hard = fast.fit(tiny_llama, Distribution.from_examples("p", examples, []), FitContext(seed=1))
    soft = fast.fit(tiny_llama, Distribution.from_examples("p", _soft(examples, 0.6), []), FitContext(seed=1))
    assert hard.train_loss[0] != pytest.approx(soft.train_loss[0], abs=1e-6)  # the soft target is read
