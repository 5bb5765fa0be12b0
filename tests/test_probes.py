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


def test_fit_logistic_stays_finite_where_a_step_is_lost_in_rounding():
    """Known answer: on this no-signal problem (seed 7, site 4, no intercept) a late L-BFGS step
    had s.y at rounding level, 1 / s.y overflowed and the site's weights came back NaN; the pair
    is now left out and the fit is sklearn's optimum."""
    rng = np.random.default_rng(7)
    n, sites, d = 40, 6, 8
    rng.normal(size=(n, sites, d))
    rng.normal(size=(n, sites, d))
    x = rng.normal(size=(sites, n, d))
    y = (np.arange(n) % 2).astype(float)
    w, _ = P.fit_logistic(x, y, fit_intercept=False)
    assert np.isfinite(w).all()
    ref = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000, tol=1e-10).fit(x[4], y)
    np.testing.assert_allclose(w[4], ref.coef_[0], atol=1e-3)


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


# ---- edge cases and exact references (mutation testing, docs/TESTING.md) ----


def test_split_pairs_sizes_at_the_edges_and_its_refusals():
    assert [x.tolist() for x in P.split_pairs(2, seed=0)] in ([[0], [1]], [[1], [0]])  # 2 pairs: one each
    assert [len(x) for x in P.split_pairs(3, seed=0, val_fraction=0.9)] == [1, 2]  # at least one to train on
    assert [len(x) for x in P.split_pairs(10, seed=0, val_fraction=0.1)] == [9, 1]
    assert [len(x) for x in P.split_pairs(10, seed=0, val_fraction=0.01)] == [9, 1]  # at least one to validate
    with pytest.raises(ValueError, match=r"^need at least 2 training pairs to split into probe-train and "
                                         r"probe-val, got 1$"):
        P.split_pairs(1, seed=0)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^val_fraction must lie strictly between 0 and 1, got {bad}$"):
            P.split_pairs(10, seed=0, val_fraction=bad)


def test_top_k_refuses_k_outside_one_to_the_number_of_sites():
    for k in (0, 4):
        with pytest.raises(ValueError, match=rf"^cannot select the top {k} of 3 sites$"):
            P.top_k(np.array([0.1, 0.2, 0.3]), k)


def test_class_mean_directions_known_values():
    pref = np.array([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 4.0], [2.0, 0.0]]])  # [n=2, S=2, d=2]
    disp = np.array([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [1.0, 3.0]]])
    np.testing.assert_array_equal(P.class_mean_directions(pref, disp), [[2.0, 2.0], [0.0, -2.0]])


def _sklearn_accuracies(pref, disp, train_idx, val_idx, C):
    """Held-out accuracy per site of sklearn's L2 logistic regression, one site at a time, and the
    smallest |decision| on the held-out texts (how far the reference is from a tie)."""
    acc, margin = [], np.inf
    for s in range(pref.shape[1]):
        x = np.concatenate([pref[train_idx, s], disp[train_idx, s]])
        y = np.r_[np.ones(len(train_idx)), np.zeros(len(train_idx))]
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(x, y)
        x_val = np.concatenate([pref[val_idx, s], disp[val_idx, s]])
        decision = x_val @ ref.coef_[0] + ref.intercept_[0]
        acc.append(np.mean((decision > 0) == (np.arange(len(x_val)) < len(val_idx))))
        margin = min(margin, np.abs(decision).min())
    return np.array(acc), margin


def test_probe_accuracies_are_sklearns_held_out_accuracies_and_follow_C():
    """12 pairs, 3 sites of 2 features, a weak offset signal: few training texts, so C changes
    which held-out texts fall on which side (sklearn's accuracies differ at C = 1, 2 and 0.05).
    The batched fit must give sklearn's accuracies exactly, at the default C = 1 and a given C,
    and fit_cosine_probe must pass its C and val_fraction on."""
    rng = np.random.default_rng(29)
    pref, disp = rng.normal(size=(12, 3, 2)) + 1.3, rng.normal(size=(12, 3, 2)) + 0.7
    train_idx, val_idx = P.split_pairs(12, seed=0, val_fraction=0.5)
    at_1, margin_1 = _sklearn_accuracies(pref, disp, train_idx, val_idx, C=1.0)
    at_2, _ = _sklearn_accuracies(pref, disp, train_idx, val_idx, C=2.0)
    at_small, margin_small = _sklearn_accuracies(pref, disp, train_idx, val_idx, C=0.05)
    assert min(margin_1, margin_small) > 0.01  # no held-out text near a tie
    assert (at_1 != at_2).any() and (at_1 != at_small).any()
    np.testing.assert_array_equal(P.probe_accuracies(pref, disp, train_idx, val_idx), at_1)
    np.testing.assert_array_equal(P.probe_accuracies(pref, disp, train_idx, val_idx, C=0.05), at_small)
    _, acc = P.fit_cosine_probe(pref, disp, k=1, seed=0, val_fraction=0.5)
    np.testing.assert_array_equal(acc, at_1)
    _, acc = P.fit_cosine_probe(pref, disp, k=1, seed=0, val_fraction=0.5, C=0.05)
    np.testing.assert_array_equal(acc, at_small)


def test_fit_logistic_default_is_sklearns_C_1():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 20, 3))
    y = (rng.random(20) < 0.5).astype(float)
    x[0, y == 1, 0] += 1.0
    w, b = P.fit_logistic(x, y)
    ref = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x[0], y)
    np.testing.assert_allclose(w[0], ref.coef_[0], atol=1e-4)
    assert b[0] == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert np.abs(P.fit_logistic(x, y, C=2.0)[0][0] - w[0]).max() > 0.01  # C = 2 is another answer


def test_fit_logistic_refuses_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"^fit_logistic: y has shape \(3,\), expected \(4,\)$"):
        P.fit_logistic(np.zeros((2, 4, 3)), np.zeros(3))


def test_fit_cosine_probe_refusals_and_k_above_the_number_of_sites():
    pref, disp, _ = planted_pairs(20, 3, 8, [1], seed=0)
    with pytest.raises(ValueError, match=r"^pref and disp must both be \[n_pairs, sites, d\]; got "
                                         r"\(20, 3, 8\) and \(20, 3, 7\)$"):
        P.fit_cosine_probe(pref, disp[:, :, :7], k=1, seed=0)
    with pytest.raises(ValueError, match=r"^unknown direction 'svd'; expected 'mean' or 'pca'$"):
        P.fit_cosine_probe(pref, disp, k=1, seed=0, direction="svd")  # type: ignore[arg-type]
    probe, _ = P.fit_cosine_probe(pref, disp, k=10, seed=0)  # more than the 3 sites (d = 8): all 3
    assert sorted(probe.sites.tolist()) == [0, 1, 2]


def _pairs_with(alt: np.ndarray, mean_diff: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One site's pref / disp [n, d] whose alternated differences are `alt` (plus sign_i * delta)
    and whose mean difference pref - disp is exactly `mean_diff`, on a large shared base."""
    sign = np.where(np.arange(len(alt)) % 2 == 0, 1.0, -1.0)[:, None]
    alt = alt + sign * (mean_diff - (sign * alt).mean(0))
    base = np.random.default_rng(seed).normal(size=alt.shape) * 3
    return base + sign * alt / 2, base - sign * alt / 2


def _svd_directions(pref: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """The reference: per site, the first right singular vector of the centred alternated
    differences, signed so that the mean difference projects positively."""
    out = []
    for s in range(pref.shape[1]):
        diffs, _ = P.alternated_differences(pref[:, s], disp[:, s])
        u = np.linalg.svd(diffs - diffs.mean(0), full_matrices=False)[2][0]
        out.append(u if u @ (pref[:, s] - disp[:, s]).mean(0) > 0 else -u)
    return np.array(out)


def test_pca_directions_equal_the_svd_reference_at_every_site():
    """Three sites, each against numpy's SVD: (0) differences at a scale of 0.01 with per-feature
    offsets and a mean difference far from the leading axis (so one power step, a missing or
    global centring, or a normalisation that assumes norms above 1 all miss it); (1) a mean
    difference of -1e-3 along the leading axis u = (1, 1, 1, 1) / 2, from which the iteration (it
    starts at mean + 1e-3) converges to +u, so only the final orientation makes it -u; (2) a mean
    difference (1, -0.1, ...) and a leading axis (1, 1, 0, 0) / sqrt 2: the signs of v . m and of
    sum(v / m) disagree. The directions are unit length and the mean difference projects
    positively on each."""
    rng = np.random.default_rng(0)
    n, d = 40, 4
    spread = np.array([3.0, 1.0, 0.7, 0.5])

    def rotation(first: np.ndarray | None) -> np.ndarray:
        cols = rng.normal(size=(d, d)) if first is None else np.column_stack([first, rng.normal(size=(d, d - 1))])
        return np.linalg.qr(cols)[0]

    r0 = rotation(None)
    alt0 = 0.01 * ((rng.normal(size=(n, d)) * spread) @ r0.T + np.array([4.0, -3.0, 0.0, 2.0]))
    m0 = 0.01 * (r0[:, 1] + 0.2 * r0[:, 0])
    u = np.ones(d) / 2
    alt1 = (rng.normal(size=(n, d)) * spread) @ rotation(u).T
    alt2 = (rng.normal(size=(n, d)) * spread) @ rotation(np.array([1.0, 1.0, 0.0, 0.0]) / np.sqrt(2)).T
    m2 = np.array([1.0, -0.1, 0.05, 0.05])
    sites = [_pairs_with(alt0, m0, 9), _pairs_with(alt1, -1e-3 * u, 9), _pairs_with(alt2, m2, 9)]
    pref, disp = np.stack([p for p, _ in sites], 1), np.stack([q for _, q in sites], 1)
    ref = _svd_directions(pref, disp)
    assert ref[1] @ u < -0.99 and (ref[2] / m2).sum() < 0 < ref[2] @ m2  # the cases are what they claim
    v = P.pca_directions(pref, disp)
    np.testing.assert_allclose(v, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert np.all((v * (pref.mean(0) - disp.mean(0))).sum(1) > 0)


def test_fit_logistic_reaches_the_optimum_in_quasi_newton_time():
    """Features scaled 1 to 30 (condition number about 900): L-BFGS reaches the optimum of the
    L2 objective in under 50 iterations, where steepest descent (or a quasi-Newton step with a
    broken curvature update, which its safeguards turn into a poorer descent) needs thousands.
    The optimum is recognised by its gradient, computed here in numpy: sum_i (p_i - y_i) x_i + w
    and sum_i (p_i - y_i) for the unpenalised intercept, per site, divided by n."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 150, 6)) * np.array([1, 5, 30, 1, 1, 1.0])
    y = (rng.random(150) < 0.5).astype(float)
    x[:, y == 1, 0] += 1.0

    def gradient(w: np.ndarray, b: np.ndarray) -> float:
        residual = 1.0 / (1.0 + np.exp(-(np.einsum("snd,sd->sn", x, w) + b[:, None]))) - y
        g = np.concatenate([np.einsum("snd,sn->sd", x, residual) + w, residual.sum(1, keepdims=True)], axis=1)
        return float(np.abs(g).max() / len(y))

    assert gradient(np.zeros((3, 6)), np.zeros(3)) > 1.0
    assert gradient(*P.fit_logistic(x, y, max_iter=60)) < 1e-3


def test_alternated_differences_known_values():
    pref = np.array([[3.0, 1.0], [2.0, 2.0], [5.0, 0.0]])
    disp = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 4.0]])
    diffs, labels = P.alternated_differences(pref, disp)
    np.testing.assert_array_equal(diffs, [[2.0, 0.0], [-2.0, -1.0], [4.0, -4.0]])  # +, -, +
    np.testing.assert_array_equal(labels, [1.0, 0.0, 1.0])


def test_response_scores_are_mean_projections_on_unit_directions():
    """Sites 0 and 2 of three, directions of length 2 and 0.5 (neither unit, one shorter than 1):
    the score is the mean over the two sites of x . direction / |direction|."""
    probe = P.CosineProbe(np.array([0, 2]), np.array([[2.0, 0.0], [0.0, 0.5]]), P.Calibrator(1.0, 0.0))
    x = np.array([[[3.0, 7.0], [9.0, 9.0], [1.0, -5.0]],
                  [[-1.0, 0.0], [9.0, 9.0], [0.0, 2.0]]])
    np.testing.assert_allclose(probe.response_scores(x), [(3.0 + -5.0) / 2, (-1.0 + 2.0) / 2])


def test_ccs_loss_known_values_per_restart():
    """Confidence min(p0, p1)^2 plus consistency (p0 - (1 - p1))^2, each averaged over the texts
    (last axis), one value per restart (first axis)."""
    p0 = torch.tensor([[0.2, 0.9], [0.5, 0.5]], dtype=torch.float64)
    p1 = torch.tensor([[0.6, 0.3], [0.5, 0.5]], dtype=torch.float64)
    # restart 0: min^2 (0.04, 0.09), consistency (0.04, 0.04); restart 1: 0.25 and 0 per text
    np.testing.assert_allclose(P.ccs_loss(p0, p1).numpy(), [0.065 + 0.04, 0.25], atol=1e-12)


def test_orientation_sign_counts_strict_wins_and_keeps_an_even_split():
    assert P.orientation_sign(np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0])) == -1.0  # a tie is no win: 1/3
    assert P.orientation_sign(np.array([2.0, 0.0]), np.array([1.0, 1.0])) == 1.0  # exactly half: +1
    assert P.orientation_sign(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == -1.0


def test_fit_ccs_refuses_mismatched_or_non_matrix_activations():
    with pytest.raises(ValueError, match=r"^CCS needs Yes and No activations of equal shape \[n, d\]; "
                                         r"got \(4, 3\), \(4, 2\)$"):
        P.fit_ccs(np.zeros((4, 3)), np.zeros((4, 2)), seed=0)
    with pytest.raises(ValueError, match=r"got \(4, 3, 2\), \(4, 3, 2\)$"):
        P.fit_ccs(np.zeros((4, 3, 2)), np.zeros((4, 3, 2)), seed=0)


def test_fit_ccs_starts_from_torchs_linear_init_and_takes_adamw_steps():
    """With no epochs the probe is its seeded initialisation: weight and bias uniform in
    +-1/sqrt(d) (torch's Linear default), both signs, filling the range. One AdamW step from there
    moves each weight by exactly lr (Adam's first step is lr * g / |g|) after the decoupled decay
    w * (1 - lr * weight_decay)."""
    rng = np.random.default_rng(0)
    x_yes, x_no = rng.normal(size=(30, 16)), rng.normal(size=(30, 16))
    bound = 1 / np.sqrt(16)
    starts = [P.fit_ccs(x_yes, x_no, seed=s, epochs=0, restarts=1) for s in range(40)]
    weights = np.concatenate([p.weight for p in starts])
    biases = np.array([p.bias for p in starts])
    for values in (weights, biases):
        assert np.all(np.abs(values) <= bound) and values.min() < -bound / 2 and values.max() > bound / 2
    w0 = starts[3].weight
    lr, wd = 0.1, 0.5
    w1 = P.fit_ccs(x_yes, x_no, seed=3, epochs=1, restarts=1, lr=lr, weight_decay=wd).weight
    np.testing.assert_allclose(np.abs(w1 - w0 * (1 - lr * wd)), lr, atol=1e-4)


def test_lbfgs_pairs_without_positive_curvature_are_left_out():
    """rho = 1 / s.y, and 0 where s.y <= 0 or is rounding-level against y.y (1e-320 overflowed
    to inf before): such a pair then adds nothing to the two-loop recursion."""
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1e-160, 0.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[-1.0, 0.0], [0.0, 1.0], [1e-160, 1.0], [0.5, 0.0]], dtype=torch.float64)
    rho = P._inverse_curvature(s, y)
    assert rho.tolist() == [0.0, 0.0, 0.0, 1.0]
