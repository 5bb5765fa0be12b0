"""Representation students on soft labels (docs/w2s.md): each training pair weighs w = 2c - 1 for
its label's confidence c in mms, lat, cra and the logistic probe, and with every confidence 1 the
fits are the unweighted ones bit for bit.

The planted set (`_planted`) is where the weighting matters: pair differences carry a truth
feature (scale 2) and a spurious one (scale 1.5) that agrees with it on 60 % of pairs; the weak
supervisor follows the spurious feature, sure (0.95) where the two agree and nearly a coin flip
(0.51) where they do not, which are exactly its wrong labels. A probe that reads the labels'
choices only is pulled onto the spurious axis (about 60 % on ground truth); one that weighs
them by confidence follows the truth. The activations come from a stand-in store that reads
each response's planted vector, so no model runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from genies.data.schema import Distribution, EvalSet, Example
from genies.interventions import _probes as P
from genies.interventions import _representation as R
from genies.interventions.context import FitContext
from genies.interventions.cra import CRA
from genies.interventions.lat import LAT
from genies.interventions.logistic import Logistic
from genies.interventions.mms import MMS
from genies.interventions.scores import pair_with_labels
from genies.models.activations import Activations


class PlantedStore:
    """`ActivationStore.get` on planted vectors: one per response text (`cra_no` reads zeros, so
    cra's Yes-minus-No feature is the vector itself); heads as [n, 1 layer, 1 head, d], the
    residual stream as [n, 2, d] (the same vector twice: lat drops the last entry)."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def get(self, lm, data: EvalSet, template: str, site: str, position: str) -> Activations:
        rows = [(q, r) for q, query in enumerate(data.queries) for r in range(len(query.responses))]
        vecs = np.stack([self.vectors[data.queries[q].responses[r]] for q, r in rows]).astype(np.float32)
        if template == "cra_no":
            vecs = np.zeros_like(vecs)
        values = vecs[:, None, None, :] if site == "heads" else np.stack([vecs, vecs], 1)
        return Activations(values, np.array([q for q, _ in rows]), np.array([r for _, r in rows]), "planted", {})


def _planted(n_train: int = 80, n_test: int = 80, seed: int = 0) -> tuple[list[Example], list[Example], dict]:
    """Weak-labelled train examples (soft labels) and ground-truth test examples with their
    vectors: pair difference (2 t, 1.5 s) + noise, t = truth (+1 for the truly preferred first),
    s = the spurious sign, equal to t on 60 % of pairs; every text on a large shared base."""
    rng = np.random.default_rng(seed)
    vectors: dict[str, np.ndarray] = {}

    def examples(n: int, split: str, weak: bool) -> list[Example]:
        out = []
        for i in range(n):
            agree = i % 5 < 3  # 60 %
            diff = np.array([2.0, 1.5 if agree else -1.5]) + 0.1 * rng.normal(size=2)
            base = 5.0 * rng.normal(size=2)
            good, bad = f"{split}{i} good", f"{split}{i} bad"
            vectors[good], vectors[bad] = base + diff / 2, base - diff / 2
            responses = (good, bad) if i % 2 == 0 else (bad, good)
            truth = responses.index(good)
            if weak:  # the spurious feature's choice, sure where it agrees with the truth
                out.append(Example(f"Q{split}{i}", responses, truth if agree else 1 - truth,
                                   confidence=0.95 if agree else 0.51))
            else:
                out.append(Example(f"Q{split}{i}", responses, truth))
        return out

    return examples(n_train, "train", True), examples(n_test, "test", False), vectors


METHODS = {"mms": lambda: MMS(k=1), "lat": lambda: LAT(k=1), "cra": lambda: CRA(k=1), "logistic": lambda: Logistic()}


def _test_accuracy(method, train: list[Example], test: list[Example], vectors: dict) -> float:
    ctx = FitContext(seed=0, activation_store=PlantedStore(vectors))
    fitted = method.fit(None, Distribution.from_examples("planted", train, []), ctx)
    dist = Distribution.from_examples("planted", [], test)
    pred = pair_with_labels(method.scorer(None, fitted, ctx)(dist.eval_set("test")), dist.test, "planted/test")
    return float(np.mean(pred.p_preferred > 0.5))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_confidence_weighted_students_beat_the_unweighted_ones_where_the_unsure_labels_are_wrong(name) -> None:
    train, test, vectors = _planted()
    hard = [dataclasses.replace(ex, confidence=1.0) for ex in train]  # the same choices, unweighted
    weighted = _test_accuracy(METHODS[name](), train, test, vectors)
    unweighted = _test_accuracy(METHODS[name](), hard, test, vectors)
    assert unweighted <= 0.7, unweighted  # pulled onto the spurious feature
    assert weighted >= 0.9, weighted


def test_weighted_class_means_are_the_hand_computed_weighted_mean_difference() -> None:
    """Three pairs at one site with confidences 1, 0.75, 0.5: weights 1, 0.5, 0."""
    pref = np.array([[[1.0, 0.0]], [[3.0, 2.0]], [[9.0, 9.0]]])
    disp = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[-9.0, 5.0]]])
    w = P.weights_of(np.array([1.0, 0.75, 0.5]))
    np.testing.assert_array_equal(w, [1.0, 0.5, 0.0])
    # ((1, 0) * 1 + (2, 2) * 0.5 + (18, 4) * 0) / 1.5 = (2, 1) / 1.5
    np.testing.assert_allclose(P.class_mean_directions(pref, disp, w), [[2 / 1.5, 1 / 1.5]])


def test_the_mms_student_fits_the_weighted_mean_difference(monkeypatch) -> None:
    """Through the method: the pairs' confidences reach the probe as weights (the directions are
    the weighted class means of the training pairs)."""
    train, _, vectors = _planted(n_train=20)
    seen = {}

    def spy(pref, disp, **kw):
        seen.update(pref=pref, disp=disp, **kw)
        return real(pref, disp, **kw)

    real = P.fit_cosine_probe
    monkeypatch.setattr(P, "fit_cosine_probe", spy)
    ctx = FitContext(seed=0, activation_store=PlantedStore(vectors))
    fitted = MMS(k=1).fit(None, Distribution.from_examples("planted", train, []), ctx)
    np.testing.assert_array_equal(seen["confidence"], [ex.confidence for ex in train])
    pref = np.stack([vectors[ex.preferred_response] for ex in train])
    disp = np.stack([vectors[ex.responses[1 - ex.preferred]] for ex in train])
    w = np.array([2 * ex.confidence - 1 for ex in train])
    as_read = [np.asarray(x, np.float32).astype(np.float64) for x in (pref, disp)]  # the store's float32
    expected = (w[:, None] * (as_read[0] - as_read[1])).sum(0) / w.sum()
    np.testing.assert_allclose(fitted.probe.directions[0], expected, rtol=1e-9)


def test_all_ones_confidence_gives_the_unweighted_probes_bit_for_bit() -> None:
    """Explicit confidences of 1 are no weights at all; and the weighted code with unit weights
    (forced past that shortcut) computes exactly the unweighted numbers."""
    rng = np.random.default_rng(3)
    pref, disp = rng.normal(size=(30, 4, 3)), rng.normal(size=(30, 4, 3))
    pref[:, 1, 0] += 1.0
    ones = np.ones(30)
    assert P.weights_of(ones) is None and P.weights_of(None) is None
    for direction in ("mean", "pca"):
        a, acc_a = P.fit_cosine_probe(pref, disp, k=2, seed=0, direction=direction)
        b, acc_b = P.fit_cosine_probe(pref, disp, k=2, seed=0, direction=direction, confidence=ones)
        np.testing.assert_array_equal(acc_a, acc_b)
        np.testing.assert_array_equal(a.directions, b.directions)
        np.testing.assert_array_equal(a.sites, b.sites)
        assert a.calibrator == b.calibrator
    np.testing.assert_array_equal(P.class_mean_directions(pref, disp, ones), P.class_mean_directions(pref, disp))
    # the weighted PCA with unit weights (fit_cosine_probe never reaches it: weights_of(ones) is None)
    np.testing.assert_allclose(P.pca_directions(pref, disp, ones), P.pca_directions(pref, disp), atol=1e-6)
    x, y = rng.normal(size=(2, 40, 3)), (np.arange(40) % 2).astype(float)
    for got, want in zip(P.fit_logistic(x, y, sample_weight=np.ones(40)), P.fit_logistic(x, y), strict=True):
        np.testing.assert_array_equal(got, want)
    train, _, vectors = _planted(n_train=20)
    hard = [dataclasses.replace(ex, confidence=1.0) for ex in train]
    assert R.pair_confidence(Distribution.from_examples("p", hard, []).train_pairs(0)) is None


def test_weighted_logistic_is_sklearns_with_sample_weight() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 120, 4))
    y = (rng.random(120) < 0.5).astype(float)
    x[:, y == 1, 0] += 1.0
    weight = rng.random(120)
    w, b = P.fit_logistic(x, y, sample_weight=weight, tol=1e-8)
    for s in range(2):
        ref = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x[s], y, sample_weight=weight)
        np.testing.assert_allclose(w[s], ref.coef_[0], atol=2e-3 * np.abs(ref.coef_[0]).max())
        assert b[s] == pytest.approx(ref.intercept_[0], abs=2e-3)


def test_weighted_pca_is_the_svd_of_the_weighted_centred_differences() -> None:
    rng = np.random.default_rng(2)
    pref, disp = rng.normal(size=(40, 2, 5)), rng.normal(size=(40, 2, 5))
    pref[:, :, 1] += 2.0
    weights = rng.random(40)
    got = P.pca_directions(pref, disp, weights)
    for s in range(2):
        diffs, _ = P.alternated_differences(pref[:, s], disp[:, s])
        centred = (diffs - np.average(diffs, axis=0, weights=weights)) * np.sqrt(weights)[:, None]
        u = np.linalg.svd(centred, full_matrices=False)[2][0]
        mean_diff = np.average(pref[:, s] - disp[:, s], axis=0, weights=weights)
        np.testing.assert_allclose(got[s], u if u @ mean_diff > 0 else -u, atol=1e-4)


def test_held_out_accuracy_is_the_expected_accuracy_under_soft_labels() -> None:
    hits = np.array([[True, False, True]])
    np.testing.assert_allclose(P.held_out_accuracy(hits, None), [2 / 3])
    # 0.9 * 1 + (1 - 0.6) * 1 + 0.5 * 1 over 3
    np.testing.assert_allclose(P.held_out_accuracy(hits, np.array([0.9, 0.6, 0.5])), [(0.9 + 0.4 + 0.5) / 3])


def test_confidences_outside_a_half_to_one_or_all_coin_flips_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^training pair 1: label confidence 0.3 is outside \[0.5, 1\] .*1 of 3 pairs"):
        P.weights_of(np.array([1.0, 0.3, 0.9]))
    with pytest.raises(ValueError, match=r"training pair 0: label confidence nan"):
        P.weights_of(np.array([np.nan, 0.9]))
    with pytest.raises(ValueError, match="coin flip"):
        P.weights_of(np.array([0.5, 0.5]))
