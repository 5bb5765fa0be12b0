"""Known answer: the auxiliary confidence loss recovers more of the gap than the cross-entropy
when the weak supervisor's errors are systematic and the student can imitate them.

Synthetic pairs with a planted truth feature (salient: scale 4, noise 2) and a spurious feature
(scale 1) that agrees with the truth on 75 % of pairs. The weak supervisor follows the spurious
feature (soft label 0.8): a known 25 % flip rate, and errors a linear student can reproduce
exactly, so the cross-entropy is pulled toward them. The strong student is a feature-level
reward model (r = w . features) trained by plain SGD, whose early steps follow the salient truth
feature, as a strong model's pretrained latent would; its batches go through the same loss steps
as the reward models' training (`genies.interventions._soft_loss`: every second pair flipped,
hardened predictions over the batch, the weight ramp). SGD and not Adam: Adam's per-coordinate
steps would erase the salience that defines the strong student here.
"""

from __future__ import annotations

import torch

from genies.interventions import _soft_loss as S
from genies.weak_to_strong.metrics import pgr

STEPS, BATCH, LR = 200, 32, 0.01


def _pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature differences (first - second response) [n, 10], truth and spurious signs (+1: first)."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    spurious = torch.where(torch.rand(n, generator=g) < 0.75, truth, -truth)
    features = torch.cat([(4.0 * truth + 2.0 * torch.randn(n, generator=g))[:, None],
                          (1.0 * spurious + 0.1 * torch.randn(n, generator=g))[:, None],
                          torch.randn(n, 8, generator=g)], 1)
    return features, truth, spurious


def _train(features: torch.Tensor, p_first: torch.Tensor, loss: str) -> torch.Tensor:
    """A linear reward model on pairs (chosen by the label, rejected) with the label's confidence,
    trained as the reward models are: `loss` on seeded batches, pairs alternately flipped."""
    first = p_first >= 0.5
    chosen = torch.where(first[:, None], features, -features)
    confidence = torch.where(first, p_first, 1.0 - p_first)
    flips = torch.arange(len(features)) % 2 == 1
    w = torch.zeros(features.shape[1], requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=LR)
    g = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        batch = torch.randperm(len(features), generator=g)[:BATCH]
        m, t = S.oriented(chosen[batch] @ w, confidence[batch], flips[batch])
        hard = S.hardened(m, t) if loss == "aux_conf" else None
        optimizer.zero_grad()
        S.step_loss(loss, m, t, hard, S.aux_weight(step, STEPS, 0.75)).mean().backward()
        optimizer.step()
    return w.detach()


def _accuracy(w: torch.Tensor, features: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((features @ w) * truth > 0).double().mean())


def _confidence(w: torch.Tensor, features: torch.Tensor) -> float:
    """The mean probability the reward model gives the response it prefers."""
    return float(torch.sigmoid((features @ w).abs()).mean())


def test_aux_conf_recovers_more_of_the_gap_than_xent() -> None:
    train, truth, spurious = _pairs(512, seed=1)
    test, test_truth, test_spurious = _pairs(4000, seed=2)
    weak_labels = torch.where(spurious > 0, 0.8, 0.2)  # P(first preferred) by the weak supervisor
    assert float((spurious == truth).double().mean()) == 383 / 512  # the planted flip rate: 25 % (129 of 512)
    weak = float((test_spurious == test_truth).double().mean())
    ceiling = _accuracy(_train(train, (truth > 0).double(), "xent"), test, test_truth)
    xent_w, aux_w = _train(train, weak_labels, "xent"), _train(train, weak_labels, "aux_conf")
    xent, aux = _accuracy(xent_w, test, test_truth), _accuracy(aux_w, test, test_truth)
    assert 0.74 < weak < 0.78 and ceiling > 0.97
    pgr_xent, pgr_aux = pgr(weak, xent, ceiling), pgr(weak, aux, ceiling)
    assert pgr_aux > 0.8  # well above 0: the student recovers most of the gap
    assert pgr_aux > pgr_xent + 0.3  # and the confidence loss recovers more than the cross-entropy
    assert 0 < pgr_xent < 0.7  # the cross-entropy student is pulled toward the weak errors
    # its own hardened predictions make the aux_conf student confident (0.84 against 0.64): a
    # hardening that labelled the wrong side would shrink its margins toward 0 instead
    assert _confidence(aux_w, test) > _confidence(xent_w, test) + 0.1
