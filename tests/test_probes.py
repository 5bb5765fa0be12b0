"""Known-answer tests for the probe mathematics on planted directions (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from genies.interventions import _probes as P


def planted_pairs(n: int, sites: int, d: int, signal_sites: list[int], seed: int, strength: float = 1.5):
    """Pairs of activations [n, sites, d]: noise everywhere, plus a planted axis per signal site
    on which the preferred response sits higher than the dispreferred one."""
    rng = np.random.default_rng(seed)
    axes = np.random.default_rng(1234).normal(size=(sites, d))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    pref = rng.normal(size=(n, sites, d))
    disp = rng.normal(size=(n, sites, d))
    for s in signal_sites:
        pref[:, s] += strength * axes[s]
        disp[:, s] -= strength * axes[s]
    return pref, disp, axes


def test_fit_logistic_matches_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 150, 6)) * np.array([1, 5, 30, 1, 1, 1.0])
    y = (rng.random(150) < 0.5).astype(float)
    x[:, y == 1, 0] += 1.0
    w, b = P.fit_logistic(x, y, C=1.0)
    for s in range(3):
        ref = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x[s], y)
        scale = np.abs(ref.coef_[0]).max()
        np.testing.assert_allclose(w[s], ref.coef_[0], atol=2e-3 * scale)
        assert b[s] == pytest.approx(ref.intercept_[0], abs=2e-3 * max(1.0, abs(ref.intercept_[0])))


def with_decoys(pref: np.ndarray, disp: np.ndarray, axes: np.ndarray, decoys: list[int], strength: float,
                split_seed: int = 0):
    """Add to the decoy sites a planted axis that only the probe-TRAINING pairs carry (the split
    `fit_cosine_probe(..., seed=split_seed)` makes): a site whose probe learns it perfectly and
    that says nothing about new pairs, as a memorised quirk of the training texts would."""
    train_idx, _ = P.split_pairs(len(pref), split_seed)
    pref, disp = pref.copy(), disp.copy()
    for s in decoys:
        pref[train_idx, s] += strength * axes[s]
        disp[train_idx, s] -= strength * axes[s]
    return pref, disp


def test_planted_heads_are_selected_and_scored():
    """Three sites carry a moderate planted signal in every pair (single-text probe accuracy about
    0.79); three decoys carry a stronger one in the probe-training pairs only (training accuracy
    about 0.93, held-out 0.5). Ranking by held-out accuracy keeps the signal sites; ranking by
    training accuracy would keep the decoys, and the probe would score fresh pairs at chance."""
    signal, decoys = [3, 17, 29], [5, 11, 23]
    pref, disp, axes = planted_pairs(200, 40, 8, signal, seed=0, strength=0.8)
    pref, disp = with_decoys(pref, disp, axes, decoys, strength=1.5)
    probe, acc = P.fit_cosine_probe(pref, disp, k=3, seed=0)
    assert sorted(probe.sites.tolist()) == signal
    assert acc[signal].min() > acc[np.setdiff1d(np.arange(40), signal)].max()
    assert acc[decoys].max() < 0.65  # held out, the decoys are noise ...
    train_idx, _ = P.split_pairs(200, 0)
    train_acc = P.probe_accuracies(pref, disp, train_idx, train_idx)
    assert train_acc[decoys].min() > train_acc[signal].max()  # ... though on the training pairs they win
    # Fresh pairs: the preferred response must win in >= 95 % of them, in both orders.
    test_pref, test_disp, _ = planted_pairs(300, 40, 8, signal, seed=1, strength=0.8)
    p = probe.p_first(test_pref, test_disp)
    assert np.mean(p > 0.5) >= 0.95
    np.testing.assert_allclose(p + probe.p_first(test_disp, test_pref), 1.0, atol=1e-12)


def test_calibrator_is_fitted_on_the_held_out_pairs():
    """The probe-training pairs carry a strong signal (their mean-cosine scores spread over
    about +-0.4), the held-out pairs a weak one (about +-0.12): a calibrator fitted on the former
    is about twice as steep. The probe's calibrator must be the held-out maximum-likelihood fit,
    recognised without refitting it: at the optimum of an unpenalised logistic regression with an
    intercept, the residuals p - y on ITS data have mean 0 and are uncorrelated with the score."""
    n, sites, d = 200, 2, 8
    rng = np.random.default_rng(0)
    axes = np.random.default_rng(1234).normal(size=(sites, d))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    pref, disp = rng.normal(size=(n, sites, d)), rng.normal(size=(n, sites, d))
    train_idx, val_idx = P.split_pairs(n, seed=0)
    for idx, strength in ((train_idx, 3.0), (val_idx, 0.25)):
        pref[idx] += strength * axes
        disp[idx] -= strength * axes
    probe, _ = P.fit_cosine_probe(pref, disp, k=2, seed=0)
    assert sorted(probe.sites.tolist()) == [0, 1]

    def scores_and_labels(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diffs, labels = P.alternated_differences(pref[idx][:, probe.sites], disp[idx][:, probe.sites])
        return P.mean_cosine_score(diffs, probe.directions), labels

    s_val, y_val = scores_and_labels(val_idx)
    s_train, y_train = scores_and_labels(train_idx)
    assert s_train.std() > 3 * s_val.std()
    residual = probe.calibrator(s_val) - y_val
    assert abs(residual.mean()) < 1e-3 and abs((s_val * residual).mean()) < 1e-3
    slope_from_training_pairs = P.fit_calibrator(s_train, y_train).slope
    assert 0 < probe.calibrator.slope < slope_from_training_pairs / 1.5


def test_noise_sites_give_chance():
    """No planted signal: the probe must not find one (guards against label leakage in the code)."""
    pref, disp, _ = planted_pairs(200, 10, 8, [], seed=0)
    probe, _ = P.fit_cosine_probe(pref, disp, k=3, seed=0)
    test_pref, test_disp, _ = planted_pairs(2000, 10, 8, [], seed=5)
    assert abs(np.mean(probe.p_first(test_pref, test_disp) > 0.5) - 0.5) < 0.05


def test_split_is_seeded_and_disjoint():
    a = P.split_pairs(100, seed=3)
    b = P.split_pairs(100, seed=3)
    c = P.split_pairs(100, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    assert len(a[1]) == 30 and not set(a[0]) & set(a[1])


def test_top_k_breaks_ties_by_index():
    assert P.top_k(np.array([0.5, 0.9, 0.9, 0.1, 0.9]), 2).tolist() == [1, 2]


def test_calibrator_is_monotone_and_follows_the_data():
    rng = np.random.default_rng(0)
    s = rng.random(400)
    labels = (rng.random(400) < s).astype(float)  # P(label 1) rises with s
    cal = P.fit_calibrator(s, labels)
    grid = np.linspace(0, 1, 50)
    assert cal.slope > 0 and np.all(np.diff(cal(grid)) > 0)
    reversed_cal = P.fit_calibrator(s, 1 - labels)
    assert reversed_cal.slope < 0


def test_mean_cosine_score_known_values():
    dirs = np.array([[1.0, 0.0], [0.0, 2.0]])
    diffs = np.array([[[3.0, 0.0], [0.0, 1.0]],  # both aligned: cos 1, 1 -> 1
                      [[-1.0, 0.0], [1.0, 0.0]]])  # opposite and orthogonal: cos -1, 0 -> 0.25
    np.testing.assert_allclose(P.mean_cosine_score(diffs, dirs), [1.0, 0.25])


def test_pca_recovers_the_planted_axis_with_its_sign():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=16)
    axis /= np.linalg.norm(axis)
    magnitude = rng.uniform(0.5, 3.0, size=(300, 1))
    base = rng.normal(size=(300, 16)) * 3  # shared by both responses: cancels in differences
    pref = (base + magnitude * axis / 2 + 0.05 * rng.normal(size=(300, 16)))[:, None, :]
    disp = (base - magnitude * axis / 2 + 0.05 * rng.normal(size=(300, 16)))[:, None, :]
    v = P.pca_directions(pref, disp)[0]
    assert v @ axis > 0.99


def planted_ccs(n: int, d: int, seed: int, axis: np.ndarray):
    """Texts with a hidden truth t in {+1, -1}: the Yes-version carries +t on the axis, the
    No-version -t; a large shared nuisance component is identical in both versions."""
    rng = np.random.default_rng(seed)
    truth = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    nuisance = rng.normal(size=(n, d)) * 2
    x_yes = nuisance + 2.0 * truth[:, None] * axis + 0.3 * rng.normal(size=(n, d))
    x_no = nuisance - 2.0 * truth[:, None] * axis + 0.3 * rng.normal(size=(n, d))
    return x_yes + 5.0, x_no - 3.0, truth  # offsets that only centring removes


def test_ccs_recovers_a_planted_direction_without_labels():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=12)
    axis /= np.linalg.norm(axis)
    x_yes, x_no, truth = planted_ccs(300, 12, seed=1, axis=axis)
    probe = P.fit_ccs(x_yes, x_no, seed=0, epochs=300, restarts=4, lr=1e-2)
    cos = probe.weight @ axis / np.linalg.norm(probe.weight)
    assert abs(cos) > 0.9
    conf = probe.confidence(x_yes, x_no)
    acc = np.mean((conf > 0.5) == (truth > 0))
    assert max(acc, 1 - acc) >= 0.95

    # The sign comes from labelled SOURCE pairs: pair a true text with a false one.
    pos, neg = np.flatnonzero(truth > 0), np.flatnonzero(truth < 0)
    m = min(len(pos), len(neg))
    sign = P.orientation_sign(conf[pos[:m]], conf[neg[:m]])
    assert sign == (1.0 if acc >= 0.5 else -1.0)
    assert P.orientation_sign(conf[neg[:m]], conf[pos[:m]]) == -sign
    # New target texts, oriented with the source sign only, come out right.
    t_yes, t_no, t_truth = planted_ccs(200, 12, seed=2, axis=axis)
    t_conf = sign * (probe.confidence(t_yes, t_no) - 0.5)
    assert np.mean((t_conf > 0) == (t_truth > 0)) >= 0.95


def test_ccs_normalisation_parity_and_determinism():
    rng = np.random.default_rng(0)
    axis = np.eye(6)[0]
    x_yes, x_no, _ = planted_ccs(80, 6, seed=3, axis=axis)
    probe = P.fit_ccs(x_yes, x_no, seed=7, epochs=50, restarts=3)
    np.testing.assert_allclose(probe.mean_yes, x_yes.mean(0))
    np.testing.assert_allclose(probe.mean_no, x_no.mean(0))
    # Predicting on the fit data with the stored statistics reproduces the fit-time loss ...
    p0, p1 = probe.probabilities(x_yes, x_no)
    loss = P.ccs_loss(torch.as_tensor(p0), torch.as_tensor(p1)).item()
    assert loss == pytest.approx(probe.loss, abs=1e-5)
    # ... and a text's confidence does not depend on what else is in the batch.
    one = probe.confidence(x_yes[:1], x_no[:1])
    np.testing.assert_allclose(one, probe.confidence(x_yes, x_no)[:1])
    again = P.fit_ccs(x_yes, x_no, seed=7, epochs=50, restarts=3)
    np.testing.assert_array_equal(again.weight, probe.weight)


def test_fit_logistic_rejects_bad_shapes():
    with pytest.raises(ValueError, match="sites, n, d"):
        P.fit_logistic(np.zeros((4, 3)), np.zeros(4))


def test_fitted_probes_survive_save_and_load(tmp_path):
    """The probe value types are what methods nest in their fitted states: saved and loaded by
    genies.interventions.fitted, they score bit for bit as before (arrays keep their dtype, the
    calibrator's floats come back exactly)."""
    from dataclasses import dataclass

    from genies.interventions.fitted import load_fitted, save_fitted

    @dataclass(frozen=True)
    class Both:
        cosine: P.CosineProbe
        ccs: P.CCSProbe

    pref, disp, _ = planted_pairs(60, 6, 4, [2], seed=0)
    cosine, _ = P.fit_cosine_probe(pref, disp, k=2, seed=0)
    x_yes, x_no, _ = planted_ccs(40, 4, seed=3, axis=np.eye(4)[0])
    ccs = P.fit_ccs(x_yes, x_no, seed=0, epochs=20, restarts=2)
    save_fitted(Both(cosine, ccs), tmp_path, intervention="probes")
    back = load_fitted(Both, tmp_path)
    assert back.cosine.sites.dtype == cosine.sites.dtype and back.cosine.calibrator == cosine.calibrator
    assert (back.ccs.bias, back.ccs.loss) == (ccs.bias, ccs.loss)
    np.testing.assert_array_equal(back.cosine.p_first(pref, disp), cosine.p_first(pref, disp))
    np.testing.assert_array_equal(back.cosine.response_scores(pref), cosine.response_scores(pref))
    np.testing.assert_array_equal(back.ccs.confidence(x_yes, x_no), ccs.confidence(x_yes, x_no))
