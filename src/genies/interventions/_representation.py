"""Glue between the activation store and the probe mathematics, shared by MMS, LAT, CRA, CCS and
the logistic probe: which rows of a split's activations belong to which response, and how a
fitted pair probability becomes label-free `Scores`.

Orientation at evaluation time. The original shuffled each test pair's two responses with an
unseeded generator and asked the probe which came second. Here every method defines
P(a beats b) as a function of the two responses alone, symmetrised over both presentation orders
(`_probes.symmetric_probability`), and evaluates it for every ordered pair of a query's
responses; the pipeline then reads the (preferred, dispreferred) entries. So the target labels
decide nothing but which entry is read, and swapping them turns p into exactly 1 - p.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution, EvalSet, Pair
from genies.interventions import _probes as P
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.scores import Scores
from genies.models.activations import Activations
from genies.models.base import LoadedModel


def yes_no_activations(lm: LoadedModel, data: EvalSet, ctx: FitContext, yes_template: str, no_template: str,
                       site: str, position: str) -> tuple[Activations, Activations]:
    """The activations of every text read with the Yes and with the No ending (cra, ccs), checked
    to list the same texts in the same order, since their rows are combined one to one."""
    store = ctx.activations()
    yes = store.get(lm, data, yes_template, site, position)
    no = store.get(lm, data, no_template, site, position)
    if not (np.array_equal(yes.example_index, no.example_index)
            and np.array_equal(yes.response_index, no.response_index)):
        raise ValueError(f"{data.distribution}/{data.split}: the Yes and No activations list different texts")
    return yes, no


def as_sites(values: np.ndarray, site: str) -> np.ndarray:
    """Flatten a store array to `[n, sites, d]`: heads [n, L, H, hd] -> [n, L*H, hd]; residual
    [n, L+1, d] stays as it is (one site per hidden-states entry). A view, not a copy: the
    store's float32 memory map stays on disk, and indexing rows (a fit's pairs) reads only those."""
    values = np.asarray(values, dtype=np.float32)
    if site == "heads":
        n, layers, heads, dim = values.shape
        return values.reshape(n, layers * heads, dim)
    return values


def row_lookup(acts: Activations) -> Callable[[int, int], int]:
    """(query index, response index) -> row of the activations, with a clear error for a
    response the store has no row for (activations of another split)."""
    rows = {(int(e), int(r)): t for t, (e, r) in enumerate(zip(acts.example_index, acts.response_index, strict=True))}

    def row(query: int, response: int) -> int:
        try:
            return rows[(query, response)]
        except KeyError:
            raise ValueError(f"the activation store has no row for (example, response) {(query, response)}; "
                             "was it computed for a different split?") from None
    return row


def pair_rows(acts: Activations, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the preferred and of the dispreferred response of every (training) pair."""
    row = row_lookup(acts)
    return (np.array([row(p.example_index, p.preferred_index) for p in pairs], dtype=np.int64),
            np.array([row(p.example_index, p.dispreferred_index) for p in pairs], dtype=np.int64))


def pair_confidence(pairs: list[Pair]) -> np.ndarray | None:
    """The training pairs' label confidences (`Pair.confidence`: a weak supervisor's soft labels
    in weak-to-strong, docs/w2s.md), or None when every label is sure (ground truth, hard labels):
    the supervised probes then run their unweighted code, so those fits never change."""
    confidence = np.array([p.confidence for p in pairs], dtype=np.float64)
    return None if np.all(confidence == 1.0) else confidence


def response_rows(acts: Activations, data: EvalSet) -> np.ndarray:
    """The activation row of every response of `data`, numbered query after query, response
    after response (the global rows `Scores.pairwise` hands to `p_first`)."""
    row = row_lookup(acts)
    return np.array([row(q, r) for q, query in enumerate(data.queries) for r in range(len(query.responses))],
                    dtype=np.int64)


def pairwise_scores(data: EvalSet, acts: Activations, features: np.ndarray,
                    p_first: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    response_score: Callable[[np.ndarray], np.ndarray], info: dict | None = None) -> Scores:
    """Scores of every query of `data` from per-text `features` (rows as in `acts`):
    `p_first(features_a, features_b)` is P(a beats b), a function of the two responses only,
    and `response_score(features)` every response's own score."""
    rows = response_rows(acts, data)
    per_text = np.asarray(response_score(features), dtype=np.float64)[rows]
    n_responses = [len(q.responses) for q in data.queries]
    per_query = np.split(per_text, np.cumsum(n_responses)[:-1]) if n_responses else []
    return Scores.pairwise(n_responses, lambda a, b: p_first(features[rows[a]], features[rows[b]]), per_query,
                           info)


@dataclass(frozen=True)
class CosineProbeFit:
    """What MMS, LAT and CRA learn: the probe (selected sites, their directions, the calibrator)
    and, for the reader of a stored state, how it was chosen."""

    probe: P.CosineProbe
    n_train_pairs: int
    site_val_accuracy: np.ndarray  # [S] held-out accuracy of every site's probe: the ranking behind probe.sites


FeatureFn = Callable[[EvalSet], tuple[Activations, np.ndarray]]


@dataclass
class CosineProbeMethod(Intervention[CosineProbeFit]):
    """Fit and score for the methods that score a pair by a calibrated mean cosine over selected
    sites (mms, lat, cra). They differ only in their per-text features, so a subclass defines
    `features` and any hyperparameters of its own (e.g. lat's direction)."""

    k: int = hparam(16, "sites (heads or layers) kept, ranked by held-out logistic-probe accuracy")
    val_fraction: float = hparam(0.3, "share of the training pairs held out for site ranking and calibration")
    C: float = hparam(1.0, "inverse L2 strength of the per-site probes")
    position: str = hparam("last", "token read: 'last' of the text, or 'mean' over the response",
                           choices=("last", "mean"))

    presets = {"paper": {}, "cpu": {}}

    @abstractmethod
    def features(self, lm: LoadedModel, ctx: FitContext) -> FeatureFn:
        """EvalSet -> (activations index, features [n_texts, sites, dim])."""

    def probe_direction(self) -> P.Direction:
        """How each site's direction is found: class means unless a subclass says otherwise."""
        return "mean"

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> CosineProbeFit:
        """One seeded pair per source prompt, then `_probes.fit_cosine_probe`, each pair weighted
        by its label's confidence when the labels are soft (`pair_confidence`)."""
        pairs = train.train_pairs(ctx.seed)
        acts, feats = self.features(lm, ctx)(train.eval_set("train"))
        a, b = pair_rows(acts, pairs)
        probe, accuracies = P.fit_cosine_probe(feats[a], feats[b], k=self.k, seed=ctx.seed,
                                               val_fraction=self.val_fraction, C=self.C,
                                               direction=self.probe_direction(), confidence=pair_confidence(pairs))
        return CosineProbeFit(probe, len(pairs), accuracies)

    def scorer(self, lm: LoadedModel, fitted: CosineProbeFit, ctx: FitContext) -> Scorer:
        features = self.features(lm, ctx)

        def score(data: EvalSet) -> Scores:
            acts, feats = features(data)
            return pairwise_scores(data, acts, feats, fitted.probe.p_first, fitted.probe.response_scores)
        return score
