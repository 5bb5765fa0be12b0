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
