"""Losses for reward models trained on soft labels: weak-to-strong students (docs/w2s.md).

A pair's label is the probability `t` that its first response is preferred (1 for ground truth, a
weak supervisor's confidence for a student); the reward model gives the margin m = r_first -
r_second, so P(first) = sigmoid(m) and the Bradley-Terry cross-entropy with a soft target is
-(t log sigmoid(m) + (1 - t) log sigmoid(-m)). The auxiliary confidence loss (Burns et al. 2023)
mixes it with the cross-entropy against the student's own hardened predictions, so a confident
student may overrule its weak supervisor:

    L = (1 - a) CE(m, t) + a CE(m, hardened(m)),

where hardened(m) labels the top share of the batch's margins 1 and the rest 0, the share being
the weak labels' class balance (the share of targets above 1/2), and a rises linearly from 0 to
`a_max` over the first `warmup` share of the steps. The class balance only means something when
pairs come in both orders: `oriented` flips some of them (the training step flips every second
pair), which leaves the plain cross-entropy unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("xent", "aux_conf")
WARMUP = 0.2


def bt_cross_entropy(margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per pair, the Bradley-Terry cross-entropy of margins [n] against soft targets [n] in [0, 1];
    with target 1 exactly -log sigmoid(margin)."""
    return -(target * F.logsigmoid(margin) + (1.0 - target) * F.logsigmoid(-margin))


def soft_bt_loss(margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Bradley-Terry cross-entropy of margins [n] against soft targets [n] in [0, 1]."""
    return bt_cross_entropy(margin, target).mean()


def step_loss(kind: str, margin: torch.Tensor, target: torch.Tensor, hard: torch.Tensor | None,
              alpha: float) -> torch.Tensor:
    """Per pair, the training loss `kind` of one (micro) batch: the cross-entropy against the
    targets, mixed for `aux_conf` with the cross-entropy against `hard`, the hardened predictions
    of the whole optimizer batch (computed once for it, so micro-batching changes nothing)."""
    ce = bt_cross_entropy(margin, target)
    if kind == "xent":
        return ce
    if kind == "aux_conf" and hard is not None:
        return (1.0 - alpha) * ce + alpha * bt_cross_entropy(margin, hard)
    raise ValueError(f"unknown loss {kind!r} (or aux_conf without hardened targets); expected one of "
                     f"{', '.join(LOSSES)}")


def oriented(margin: torch.Tensor, target: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same pairs with the responses of those where `flip` is true swapped: margin -> -margin,
    target -> 1 - target (the cross-entropy of each pair is unchanged)."""
    return torch.where(flip, -margin, margin), torch.where(flip, 1.0 - target, target)


def hardened(margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The student's own predictions made hard: 1 for the round(s x n) largest margins of the
    batch, 0 for the others, where s is the share of weak targets above 1/2 (the threshold is the
    batch quantile matching the weak labels' class balance). No gradient flows through it."""
    n = margin.numel()
    k = int(round(float((target > 0.5).float().mean()) * n)) if n else 0
    out = torch.zeros_like(margin)
    if k:
        out[torch.topk(margin.detach(), k).indices] = 1.0
    return out


def aux_weight(step: int, total_steps: int, a_max: float, warmup: float = WARMUP) -> float:
    """The auxiliary weight at 0-based `step` of `total_steps`: linear from 0 at step 0 to `a_max`
    at `warmup` x total_steps, then constant."""
    ramp = warmup * total_steps
    return a_max if ramp <= 0 else a_max * min(1.0, step / ramp)


def aux_confidence_loss(margin: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) CE(margin, target) + alpha CE(margin, hardened(margin, target))."""
    return ((1.0 - alpha) * soft_bt_loss(margin, target)
            + alpha * soft_bt_loss(margin, hardened(margin, target)))


def pair_loss(kind: str, margin: torch.Tensor, target: torch.Tensor, step: int, total_steps: int,
              a_max: float) -> torch.Tensor:
    """The training loss `kind` (`xent` or `aux_conf`) of one batch at `step`; with hard targets
    (all 1) `xent` is the usual -log sigmoid(margin)."""
    if kind == "xent":
        return soft_bt_loss(margin, target)
    if kind == "aux_conf":
        return aux_confidence_loss(margin, target, aux_weight(step, total_steps, a_max))
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
