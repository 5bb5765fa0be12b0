"""The array mathematics shared by the representation methods (MMS, LAT, CRA, CCS, logistic).

Everything here works on plain arrays of activations, with no model and no data set in sight, so
each piece has a known-answer test on planted directions (tests/test_probes.py). Shapes:
activations of one kind of text are `[n, S, d]`: n texts, S "sites" (attention heads flattened
over layers, or residual-stream layers), d features per site.

The pieces follow the original's MMS, LAT, CRA and CCS (docs/methods.md#mms and the sections
after it):

- `split_pairs`: the seeded 70/30 probe-train / probe-val split of training pairs.
- `fit_logistic`: L2 logistic regression (sklearn's objective, C=1) fitted for every site at
  once by batched L-BFGS. sklearn's `LogisticRegression` one site at a time took 4.8 s for 270
  heads and 16 s for 31 residual layers on this machine; the objective is strictly convex, so
  the batched solver reaches the same optimum (tested against sklearn) in a fraction of that.
- `class_mean_directions`, `pca_directions`: one direction per site.
- `mean_cosine_score` + `Calibrator`: the MMS score `0.5 * (1 + mean_h cos(d_h, dir_h))` and the
  1-D logistic calibrator fitted on alternated-order validation differences.
- `CosineProbe` / `fit_cosine_probe`: the whole MMS / LAT / CRA pipeline on arrays.
- `fit_ccs` / `CCSProbe`: Contrast-Consistent Search with its normalisation statistics stored.

Soft labels (weak-to-strong students, docs/w2s.md): the supervised pieces take each pair's
`confidence` c, the probability its label gives the preferred response, and weigh the pair by
`weights_of` w = 2c - 1 (class means, the PCA, the logistic fits, the calibrator) and score
held-out pairs by their expected accuracy under the soft labels (`held_out_accuracy`). Without
confidences, or with every one 1, they run exactly the unweighted code (`weights_of` is None),
so ground-truth fits keep their numbers bit for bit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

Direction = Literal["mean", "pca"]


def weights_of(confidence: np.ndarray | None) -> np.ndarray | None:
    """Each pair's weight w = 2c - 1 for its label's confidence c, or None (unweighted) when there
    are no confidences or every one is 1 (ground truth, hard labels).

    Why 2c - 1: a soft label c says the pair's difference points the preferred way with
    probability c and the other way with 1 - c, so its expected contribution to a class-mean
    difference is (2c - 1) times the difference: a coin flip (0.5) contributes nothing, a sure
    label (1) fully. c below 0.5 would say the other response is preferred and is refused;
    so is a set of labels that are all coin flips (nothing to fit)."""
    if confidence is None:
        return None
    c = np.asarray(confidence, dtype=np.float64)
    if np.all(c == 1.0):
        return None
    if c.ndim != 1:
        raise ValueError(f"label confidences must be one value per training pair, got an array of shape {c.shape}")
    bad = np.flatnonzero(~((c >= 0.5) & (c <= 1.0)))  # NaN included
    if bad.size:
        raise ValueError(f"training pair {bad[0]}: label confidence {c[bad[0]]:.4g} is outside [0.5, 1] (the "
                         f"probability the label gives the preferred response; {bad.size} of {c.size} pairs)")
    w = 2.0 * c - 1.0
    if not w.sum() > 0:
        raise ValueError(f"all {c.size} training labels have confidence 0.5 (a coin flip): there is nothing "
                         "to fit a probe on")
    return w


def held_out_accuracy(correct: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
    """Per site, the share of held-out items a probe gets right ([S, n] booleans -> [S]); with soft
    labels, its expected accuracy against labels drawn from them, mean(c hit + (1 - c) miss),
    which ranks sites as the w-weighted hit count does (it is mean(1 - c) + sum(w hit) / n) and
    stays defined when every held-out label is a coin flip."""
    if confidence is None:
        return correct.mean(1)
    c = np.asarray(confidence, dtype=np.float64)
    return (c * correct + (1.0 - c) * ~correct).mean(1)


def split_pairs(n_pairs: int, seed: int, val_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded probe-train / probe-val indices (sorted), at least one pair in each part."""
    if n_pairs < 2:
        raise ValueError(f"need at least 2 training pairs to split into probe-train and probe-val, got {n_pairs}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n_pairs)
    n_val = min(n_pairs - 1, max(1, int(round(n_pairs * val_fraction))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def alternated_differences(pref: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair differences in alternating order: even pairs `pref - disp` (label 1), odd pairs
    `disp - pref` (label 0). The original's calibration data; deterministic, balanced labels."""
    sign = np.where(np.arange(len(pref)) % 2 == 0, 1.0, -1.0).reshape((-1,) + (1,) * (pref.ndim - 1))
    diffs = (np.asarray(pref, dtype=np.float64) - np.asarray(disp, dtype=np.float64)) * sign
    return diffs, (np.arange(len(pref)) % 2 == 0).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Logistic regression, batched over sites


def fit_logistic(x: np.ndarray | torch.Tensor, y: np.ndarray, *, C: float = 1.0, fit_intercept: bool = True,
                 max_iter: int = 1000, tol: float = 1e-5, ftol: float = 1e-10, history: int = 10,
                 sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimise `C * sum_i s_i logloss_i + ||w||^2 / 2` (intercept unpenalised; sklearn's L2
    objective, `s` its `sample_weight`, 1 when None) independently for every site. `x`: [S, n, d],
    `y`: [n] of 0/1. Returns (w [S, d], b [S]).

    L-BFGS (as sklearn's default solver) run for all sites at once: every site has its own
    curvature history and its own backtracking line search, so the result is each site's own
    optimum; one iteration costs two batched matrix-vector products. (Batched Newton needs a
    d x d factorisation per site and iteration, which is slower for residual-stream widths.) A
    site stops once its largest gradient entry, divided by `C * n`, is below `tol`, or once an
    iteration lowers its objective by less than `ftol` (relative).

    The data are held in float32 (one copy and one transposed copy): the matrix-vector products
    are memory-bound, and float32 halves their time. Weights, losses and gradients are float64.
    """
    X = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if X.ndim != 3:
        raise ValueError(f"fit_logistic expects x of shape [sites, n, d], got {tuple(X.shape)}")
    S, n, d = X.shape
    target = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if target.shape != (n,):
        raise ValueError(f"fit_logistic: y has shape {tuple(target.shape)}, expected ({n},)")
    weight = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float64)
    if weight is not None and weight.shape != (n,):
        raise ValueError(f"fit_logistic: sample_weight has shape {tuple(weight.shape)}, expected ({n},)")
    if fit_intercept:
        X = torch.cat([X, torch.ones(S, n, 1, dtype=torch.float32)], dim=2)
    XT = X.transpose(1, 2).contiguous()
    p = X.shape[2]
    reg = torch.ones(p, dtype=torch.float64)
    if fit_intercept:
        reg[-1] = 0.0
    scale = C * n if weight is None else C * max(float(weight.sum()), 1e-12)

    def weighed(per_item: torch.Tensor) -> torch.Tensor:
        return per_item if weight is None else per_item * weight

    def value_and_grad(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Divided by C * n (the weights' sum) so that step sizes and tolerances do not depend on the data size.
        z = torch.bmm(X, w.float().unsqueeze(2)).squeeze(2).double()
        f = (C * weighed(torch.nn.functional.softplus(z) - target * z).sum(1) + 0.5 * (reg * w * w).sum(1)) / scale
        residual = weighed(torch.sigmoid(z) - target).float().unsqueeze(2)
        g = (C * torch.bmm(XT, residual).squeeze(2).double() + reg * w) / scale
        return f, g

    w_all = torch.zeros(S, p, dtype=torch.float64)
    live = torch.arange(S)  # sites still iterating; X and XT hold only these
    w = w_all.clone()
    f, g = value_and_grad(w)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    done = g.abs().amax(1) < tol
    for _ in range(max_iter):
        if done.all():
            break
        if done.sum() * 2 >= len(live):  # drop converged sites so they stop costing time
            w_all[live[done]] = w[done]
            keep = ~done
            live, X, XT, w, f, g = live[keep], X[keep], XT[keep], w[keep], f[keep], g[keep]
            s_hist = [h[keep] for h in s_hist]
            y_hist = [h[keep] for h in y_hist]
            done = done[keep]
        # Two-loop recursion, per site (sums over the feature axis only). A pair whose curvature
        # s.y is not clearly positive -- a step lost in float32 noise near the optimum -- is left
        # out (rho 0), as L-BFGS requires: 1 / s.y of a rounding-level s.y overflowed to NaN.
        q = g.clone()
        alphas = []
        for s_k, y_k in zip(reversed(s_hist), reversed(y_hist), strict=True):
            rho = _inverse_curvature(s_k, y_k)
            a = rho * (s_k * q).sum(1)
            q -= a.unsqueeze(1) * y_k
            alphas.append((rho, a))
        if s_hist:
            gamma = (s_hist[-1] * y_hist[-1]).sum(1) / (y_hist[-1] * y_hist[-1]).sum(1).clamp_min(1e-300)
            usable = alphas[0][0] > 0  # the newest pair's rho
            q *= torch.where(usable, gamma, 1.0 / g.norm(dim=1).clamp_min(1e-300)).unsqueeze(1)
        else:
            q /= g.norm(dim=1, keepdim=True).clamp_min(1e-300)
        for (s_k, y_k), (rho, a) in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            b = rho * (y_k * q).sum(1)
            q += (a - b).unsqueeze(1) * s_k
        direction = -q
        slope = (g * direction).sum(1)
        direction = torch.where((slope < 0).unsqueeze(1), direction, -g)  # fall back to steepest descent
        slope = (g * direction).sum(1)
        direction = torch.where(done.unsqueeze(1), torch.zeros_like(direction), direction)
        t = torch.ones(len(live), dtype=torch.float64)
        for _ in range(40):  # Armijo backtracking, each site with its own step
            f_new, g_new = value_and_grad(w + t.unsqueeze(1) * direction)
            bad = (f_new > f + 1e-4 * t * slope) & ~done
            if not bad.any():
                break
            t = torch.where(bad, t / 2, t)
        step = t.unsqueeze(1) * direction
        s_hist.append(step)
        y_hist.append(torch.where(done.unsqueeze(1), torch.ones_like(g), g_new - g))
        if len(s_hist) > history:
            s_hist.pop(0)
            y_hist.pop(0)
        stalled = (f - f_new) <= ftol * f.abs().clamp_min(1.0)
        w, f, g = w + step, f_new, g_new
        done = done | (g.abs().amax(1) < tol) | stalled
    w_all[live] = w
    w = w_all
    w_np = w.numpy()
    if fit_intercept:
        return w_np[:, :-1].copy(), w_np[:, -1].copy()
    return w_np, np.zeros(S)


def _inverse_curvature(s_k: torch.Tensor, y_k: torch.Tensor) -> torch.Tensor:
    """L-BFGS's rho = 1 / (s.y) per site, 0 where s.y <= 1e-10 * y.y (the curvature condition
    fails or is rounding noise), which drops that pair from the two-loop recursion."""
    sy = (s_k * y_k).sum(1)
    usable = sy > 1e-10 * (y_k * y_k).sum(1)
    return torch.where(usable, 1.0 / torch.where(usable, sy, 1.0), 0.0)


def probe_accuracies(pref: np.ndarray, disp: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                     *, C: float = 1.0, confidence: np.ndarray | None = None) -> np.ndarray:
    """Held-out accuracy per site of a logistic probe on individual activations (label 1 =
    preferred) trained on the probe-train pairs' responses and tested on the probe-val pairs'.
    With soft labels (`confidence`, per pair) both responses of a pair carry its weight in the
    fit and its confidence in the held-out accuracy (`held_out_accuracy`)."""
    def stack(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([pref[idx], disp[idx]]).astype(np.float64)  # [2m, S, d]
        y = np.concatenate([np.ones(len(idx)), np.zeros(len(idx))])
        return np.ascontiguousarray(x.transpose(1, 0, 2)), y

    x_train, y_train = stack(train_idx)
    x_val, y_val = stack(val_idx)
    weights = weights_of(confidence)
    if weights is None:
        w, b = fit_logistic(x_train, y_train, C=C)
        val_confidence = None
    else:
        w, b = fit_logistic(x_train, y_train, C=C, sample_weight=np.tile(weights[train_idx], 2))
        val_confidence = np.tile(np.asarray(confidence, dtype=np.float64)[val_idx], 2)
    decision = np.einsum("snd,sd->sn", x_val, w) + b[:, None]
    return held_out_accuracy((decision > 0) == (y_val > 0.5), val_confidence)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores; ties go to the lower index, so the choice is deterministic."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"cannot select the top {k} of {len(scores)} sites")
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores)))[:k]


# ---------------------------------------------------------------------------------------------
# Directions and the mean-cosine score


def class_mean_directions(pref: np.ndarray, disp: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """mean(preferred) - mean(dispreferred) per site, not normalised: [n, S, d] -> [S, d]; with
    `weights` (per pair, `weights_of`) the weighted means."""
    if weights is None:
        return np.asarray(pref, dtype=np.float64).mean(0) - np.asarray(disp, dtype=np.float64).mean(0)
    return (np.average(np.asarray(pref, dtype=np.float64), axis=0, weights=weights)
            - np.average(np.asarray(disp, dtype=np.float64), axis=0, weights=weights))


def pca_directions(pref: np.ndarray, disp: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """First principal component of the pair differences per site (representation engineering's
    LAT), oriented so that preferred-minus-dispreferred projects positively on average.

    The differences are taken in alternating order (the deterministic version of RepE's random
    order), so their mean is near zero and the leading component is the axis along which the two
    responses of a pair differ most consistently. With `weights` (per pair) it is the weighted
    PCA: the differences are centred on their weighted mean and each enters X^T X with its weight,
    and the orientation follows the weighted class means."""
    diffs, _ = alternated_differences(pref, disp)
    x = torch.as_tensor(diffs.transpose(1, 0, 2))  # [S, n, d]
    if weights is None:
        x = (x - x.mean(1, keepdim=True)).float()
    else:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64))[None, :, None]
        x = ((x - (w * x).sum(1, keepdim=True) / w.sum()) * w.sqrt()).float()
    mean_diff = class_mean_directions(pref, disp, weights)
    # Power iteration on X^T X from the class-mean direction: two matrix-vector products per step
    # instead of a full SVD per site (which took ~30 s at SmolLM2's residual width here).
    v = torch.as_tensor(mean_diff, dtype=torch.float32) + 1e-3 * torch.ones(x.shape[0], x.shape[2])
    v = v / v.norm(dim=1, keepdim=True)
    # Capped at 100 steps: a site with a clear leading axis converges in a few; one without
    # (pure noise, tiny eigengap) has no meaningful first component to converge to anyway.
    for _ in range(100):
        nxt = torch.bmm(x.transpose(1, 2), torch.bmm(x, v.unsqueeze(2))).squeeze(2)
        nxt = nxt / nxt.norm(dim=1, keepdim=True).clamp_min(1e-30)
        change = (nxt - v).abs().max()
        v = nxt
        if change < 1e-6:
            break
    v = v.double().numpy()  # [S, d], unit length
    sign = np.where((v * mean_diff).sum(1) < 0, -1.0, 1.0)
    return v * sign[:, None]


def mean_cosine_score(diffs: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """`0.5 * (1 + mean over sites of cos(diff_site, direction_site))`: [n, K, d], [K, d] -> [n]."""
    diffs = np.asarray(diffs, dtype=np.float64)
    dn = np.linalg.norm(diffs, axis=2)
    un = np.linalg.norm(directions, axis=1)
    cos = np.einsum("nkd,kd->nk", diffs, directions) / np.maximum(dn * un[None, :], 1e-30)
    return 0.5 * (1.0 + cos.mean(1))


@dataclass(frozen=True)
class Calibrator:
    """P(label 1 | s) = sigmoid(slope * s + intercept); monotone in s."""

    slope: float
    intercept: float

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * np.asarray(s, dtype=np.float64) + self.intercept)))


def fit_calibrator(scores: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None = None) -> Calibrator:
    """Unpenalised 1-D logistic regression (step 4 of `fit_cosine_probe`). On perfectly separable scores the
    unpenalised optimum is at infinity; lbfgs then stops at its iteration limit with a steep but
    finite slope, which is what the original did, so that warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=np.inf, max_iter=1000, random_state=0)
        model.fit(np.asarray(scores, dtype=np.float64).reshape(-1, 1), np.asarray(labels), sample_weight=sample_weight)
    return Calibrator(float(model.coef_[0, 0]), float(model.intercept_[0]))


def symmetric_probability(p_ab: np.ndarray, p_ba: np.ndarray) -> np.ndarray:
    """P(a beats b) from both presentation orders: `(P(a|a,b) + 1 - P(b|b,a)) / 2`.

    This replaces the original's unseeded test-time shuffle. It is a function of the two
    responses only, so P(a beats b) + P(b beats a) = 1 exactly and the order in which the labels
    lay a pair out cannot change what the method says about it."""
    return 0.5 * (np.asarray(p_ab) + 1.0 - np.asarray(p_ba))


# ---------------------------------------------------------------------------------------------
# MMS / LAT / CRA on arrays


@dataclass(frozen=True)
class CosineProbe:
    """Selected sites, their directions and the calibrator: everything scoring needs."""

    sites: np.ndarray  # [K] indices into the flattened sites
    directions: np.ndarray  # [K, d]
    calibrator: Calibrator

    def raw_score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The mean-cosine score of `a - b` over the selected sites; a, b: [n, S, d]."""
        return mean_cosine_score(np.asarray(a)[:, self.sites] - np.asarray(b)[:, self.sites], self.directions)

    def p_first(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Calibrated P(a preferred over b), averaged over both orders (`symmetric_probability`)."""
        s_ab = self.raw_score(a, b)
        return symmetric_probability(self.calibrator(s_ab), self.calibrator(1.0 - s_ab))

    def response_scores(self, x: np.ndarray) -> np.ndarray:
        """A per-response score for browsing: mean over the selected sites of the projection on
        the unit direction. Pairs are scored by cosine of differences, not by this."""
        unit = self.directions / np.maximum(np.linalg.norm(self.directions, axis=1, keepdims=True), 1e-30)
        return np.einsum("nkd,kd->n", np.asarray(x, dtype=np.float64)[:, self.sites], unit) / len(self.sites)


def fit_cosine_probe(pref: np.ndarray, disp: np.ndarray, *, k: int, seed: int, val_fraction: float = 0.3,
                     C: float = 1.0, direction: Direction = "mean",
                     confidence: np.ndarray | None = None) -> tuple[CosineProbe, np.ndarray]:
    """The MMS pipeline (docs/methods.md#mms) on arrays `[n_pairs, S, d]` of preferred /
    dispreferred activations.

    1. seeded 70/30 split of the pairs; 2. one direction per site from ALL pairs (class means, or
    the PCA variant); 3. per-site logistic probes on the 70 % rank the sites by accuracy on the
    30 %, keep the top k; 4. the calibrator is fitted on the 30 %'s alternated differences.
    Returns the probe and every site's held-out accuracy. With soft labels (`confidence`, per
    pair) each step weighs the pairs by `weights_of` (steps 2 to 4) and step 3 ranks by
    `held_out_accuracy`.
    """
    if pref.shape != disp.shape or pref.ndim != 3:
        raise ValueError(f"pref and disp must both be [n_pairs, sites, d]; got {pref.shape} and {disp.shape}")
    train_idx, val_idx = split_pairs(len(pref), seed, val_fraction)
    weights = weights_of(confidence)
    if direction == "mean":
        dirs = class_mean_directions(pref, disp, weights)
    elif direction == "pca":
        dirs = pca_directions(pref, disp, weights)
    else:
        raise ValueError(f"unknown direction {direction!r}; expected 'mean' or 'pca'")
    accuracies = probe_accuracies(pref, disp, train_idx, val_idx, C=C, confidence=confidence)
    sites = top_k(accuracies, min(k, pref.shape[1]))
    diffs, labels = alternated_differences(pref[val_idx][:, sites], disp[val_idx][:, sites])
    calibrator = fit_calibrator(mean_cosine_score(diffs, dirs[sites]), labels,
                                None if weights is None else weights[val_idx])
    return CosineProbe(sites, dirs[sites], calibrator), accuracies


# ---------------------------------------------------------------------------------------------
# CCS


@dataclass(frozen=True)
class CCSProbe:
    """A fitted CCS probe with the centring means of its fit data (docs/methods.md#ccs), so that
    scoring normalises exactly as fit did."""

    weight: np.ndarray  # [d]
    bias: float
    mean_yes: np.ndarray  # [d]
    mean_no: np.ndarray  # [d]
    loss: float

    def probabilities(self, x_yes: np.ndarray, x_no: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p0 (Yes text) and p1 (No text) with the stored centring."""
        def prob(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
            z = (np.asarray(x, dtype=np.float64) - mean) @ self.weight + self.bias
            return 1.0 / (1.0 + np.exp(-z))
        return prob(x_yes, self.mean_yes), prob(x_no, self.mean_no)

    def confidence(self, x_yes: np.ndarray, x_no: np.ndarray) -> np.ndarray:
        """`0.5 * (p0 + 1 - p1)`: the probe's consistent credence in one response. Its sign
        (whether high means preferred) is arbitrary until fixed on labelled source data."""
        p0, p1 = self.probabilities(x_yes, x_no)
        return 0.5 * (p0 + 1.0 - p1)


def ccs_loss(p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    """Consistency `(p0 - (1 - p1))^2` plus confidence `min(p0, p1)^2`, averaged over texts
    (last axis), one value per leading index (restart)."""
    return (torch.minimum(p0, p1) ** 2).mean(-1) + ((p0 - (1 - p1)) ** 2).mean(-1)


def fit_ccs(x_yes: np.ndarray, x_no: np.ndarray, *, seed: int, epochs: int = 1000, restarts: int = 10,
            lr: float = 1e-3, weight_decay: float = 0.01) -> CCSProbe:
    """Fit Linear(d, 1) + sigmoid on the centred Yes / No activations without labels.

    Full batch AdamW; the restarts run side by side as one [restarts, d] weight (AdamW and the
    loss are separable across restarts, so this equals running them one after another) and the
    restart with the lowest final loss is kept. Initialisation follows torch's Linear default
    (uniform in +-1/sqrt(d)) from a generator seeded with `seed`.
    """
    x_yes = np.asarray(x_yes, dtype=np.float64)
    x_no = np.asarray(x_no, dtype=np.float64)
    if x_yes.shape != x_no.shape or x_yes.ndim != 2:
        raise ValueError(f"CCS needs Yes and No activations of equal shape [n, d]; got {x_yes.shape}, {x_no.shape}")
    mean_yes, mean_no = x_yes.mean(0), x_no.mean(0)
    a = torch.as_tensor(x_yes - mean_yes, dtype=torch.float32)
    b = torch.as_tensor(x_no - mean_no, dtype=torch.float32)
    d = a.shape[1]
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / np.sqrt(d)
    weight = ((torch.rand(restarts, d, generator=gen) * 2 - 1) * bound).requires_grad_()
    bias = ((torch.rand(restarts, generator=gen) * 2 - 1) * bound).requires_grad_()
    opt = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=weight_decay)

    def losses() -> torch.Tensor:
        p0 = torch.sigmoid(weight @ a.T + bias[:, None])
        p1 = torch.sigmoid(weight @ b.T + bias[:, None])
        return ccs_loss(p0, p1)

    for _ in range(epochs):
        opt.zero_grad()
        losses().sum().backward()
        opt.step()
    with torch.no_grad():
        final = losses()
    best = int(torch.argmin(final))
    return CCSProbe(weight[best].detach().double().numpy(), float(bias[best].detach()), mean_yes, mean_no,
                    float(final[best]))


def orientation_sign(score_pref: np.ndarray, score_disp: np.ndarray) -> float:
    """+1 if the preferred response scores higher in at least half of the (labelled, source)
    pairs, else -1: how an unsupervised direction is oriented without touching target labels."""
    wins = np.mean(np.asarray(score_pref) > np.asarray(score_disp))
    return 1.0 if wins >= 0.5 else -1.0
