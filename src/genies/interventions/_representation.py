"""Glue between the activation store and the probe mathematics, shared by MMS, LAT, CRA, CCS and
the logistic probe: which rows of a split's activations belong to which pair, how a fitted pair
scorer becomes `Predictions`, and how probe arrays travel in a `State`.

Orientation at evaluation time. The original shuffled each test pair's two responses with an
unseeded generator and asked the probe which came second. Here every method defines
P(a beats b) as a function of the two responses alone, symmetrised over both presentation orders
(`_probes.symmetric_probability`), and `eval_pairs` only says which of the two to report. So the
target labels decide nothing but the layout, and swapping them turns p into exactly 1 - p.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch

from genies.data.schema import Distribution, Pair
from genies.interventions import _probes as P
from genies.interventions.base import FitContext, Intervention, Predictions, State, hparam
from genies.models.activations import Activations, ActivationStore
from genies.models.base import LoadedModel


def store_of(ctx: FitContext) -> ActivationStore:
    """The pipeline's shared store, or the default one under GENIES_HOME."""
    return ctx.activation_store if ctx.activation_store is not None else ActivationStore()


def yes_no_activations(lm: LoadedModel, dist: Distribution, split: str, ctx: FitContext, yes_template: str,
                       no_template: str, site: str, position: str) -> tuple[Activations, Activations]:
    """The activations of every text read with the Yes and with the No ending (cra, ccs), checked
    to list the same texts in the same order, since their rows are combined one to one."""
    store = store_of(ctx)
    yes = store.get(lm, dist, split, yes_template, site, position)
    no = store.get(lm, dist, split, no_template, site, position)
    if not (np.array_equal(yes.example_index, no.example_index)
            and np.array_equal(yes.response_index, no.response_index)):
        raise ValueError(f"{dist.id}/{split}: the Yes and No activations list different texts")
    return yes, no


def training_source(source: Distribution, max_examples: int | None) -> Distribution:
    """The source's first `max_examples` train prompts (all when None): the `cpu` presets' budget."""
    return source.limited(max_train=max_examples) if max_examples else source


def as_sites(values: np.ndarray, site: str) -> np.ndarray:
    """Flatten a store array to `[n, sites, d]`: heads [n, L, H, hd] -> [n, L*H, hd]; residual
    [n, L+1, d] stays as it is (one site per hidden-states entry)."""
    values = np.asarray(values, dtype=np.float32)
    if site == "heads":
        n, layers, heads, dim = values.shape
        return values.reshape(n, layers * heads, dim)
    return values


def row_lookup(acts: Activations) -> dict[tuple[int, int], int]:
    """(example index, response index) -> row of the activations."""
    return {(int(e), int(r)): t for t, (e, r) in enumerate(zip(acts.example_index, acts.response_index, strict=True))}


def pair_rows(acts: Activations, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the preferred and of the dispreferred response of every pair."""
    rows = row_lookup(acts)
    try:
        first = np.array([rows[(p.example_index, p.preferred_index)] for p in pairs], dtype=np.int64)
        second = np.array([rows[(p.example_index, p.dispreferred_index)] for p in pairs], dtype=np.int64)
    except KeyError as missing:
        raise ValueError(f"the activation store has no row for (example, response) {missing}; "
                         "was it computed for a different split?") from None
    return first, second


def predictions(dist: Distribution, split: str, acts: Activations, features: np.ndarray,
                p_first: Callable[[np.ndarray, np.ndarray], np.ndarray],
                response_score: Callable[[np.ndarray], np.ndarray]) -> Predictions:
    """Score every evaluation pair of `split` with `p_first(features_a, features_b)` (P(a beats
    b), a function of the two responses only) and attach every response's own score."""
    pairs = dist.eval_pairs(split)
    a, b = pair_rows(acts, pairs)
    p = np.clip(np.asarray(p_first(features[a], features[b]), dtype=np.float64), 0.0, 1.0)
    scores = np.asarray(response_score(features), dtype=np.float64)
    per_example = [scores[acts.example_index == i][np.argsort(acts.response_index[acts.example_index == i])]
                   for i in range(len(dist.split(split)))]
    return Predictions(
        example_index=np.array([q.example_index for q in pairs], dtype=np.int64),
        preferred_index=np.array([q.preferred_index for q in pairs], dtype=np.int64),
        dispreferred_index=np.array([q.dispreferred_index for q in pairs], dtype=np.int64),
        p_preferred=p,
        response_scores=per_example,
    )


def cosine_probe_tensors(probe: P.CosineProbe) -> dict[str, torch.Tensor]:
    """A fitted MMS/LAT/CRA probe as state tensors (float64, so a reload scores identically)."""
    return {
        "sites": torch.as_tensor(probe.sites, dtype=torch.int64),
        "directions": torch.as_tensor(probe.directions, dtype=torch.float64),
        "calibrator": torch.tensor([probe.calibrator.slope, probe.calibrator.intercept], dtype=torch.float64),
    }


def cosine_probe_from(tensors: dict[str, torch.Tensor]) -> P.CosineProbe:
    slope, intercept = tensors["calibrator"].tolist()
    return P.CosineProbe(tensors["sites"].numpy(), tensors["directions"].numpy(), P.Calibrator(slope, intercept))


def fit_info(probe: P.CosineProbe, accuracies: np.ndarray, source: Distribution, n_pairs: int) -> dict:
    """What a reader of state.json wants to know about a cosine-probe fit."""
    return {
        "source": source.id,
        "n_train_pairs": n_pairs,
        "selected_sites": probe.sites.tolist(),
        "selected_site_val_accuracy": accuracies[probe.sites].round(4).tolist(),
        "calibrator": [probe.calibrator.slope, probe.calibrator.intercept],
    }


def fit_cosine_method(lm: LoadedModel, source: Distribution, ctx: FitContext, *,
                      features: Callable[[Distribution, str], tuple[Activations, np.ndarray]],
                      k: int, val_fraction: float, C: float, direction: P.Direction = "mean",
                      ) -> tuple[P.CosineProbe, dict]:
    """The MMS pipeline on whatever per-text features [n_texts, S, d] `features` returns: one
    seeded pair per source prompt, then `_probes.fit_cosine_probe`."""
    pairs = source.train_pairs(ctx.seed)
    acts, feats = features(source, "train")
    a, b = pair_rows(acts, pairs)
    probe, accuracies = P.fit_cosine_probe(feats[a], feats[b], k=k, seed=ctx.seed, val_fraction=val_fraction,
                                           C=C, direction=direction)
    return probe, fit_info(probe, accuracies, source, len(pairs))


FeatureFn = Callable[[Distribution, str], tuple[Activations, np.ndarray]]


@dataclass
class CosineProbeMethod(Intervention):
    """Fit and predict for the methods that score a pair by a calibrated mean cosine over
    selected sites (mms, lat, cra). They differ only in their per-text features, so a subclass
    defines `features` and any hyperparameters of its own (e.g. lat's direction)."""

    k: int = hparam(16, "sites (heads or layers) kept, ranked by held-out logistic-probe accuracy")
    val_fraction: float = hparam(0.3, "share of the training pairs held out for site ranking and calibration")
    C: float = hparam(1.0, "inverse L2 strength of the per-site probes")
    max_train_examples: int | None = hparam(None, "first N source prompts (None = all)")
    position: str = hparam("last", "token read: 'last' of the text, or 'mean' over the response",
                           choices=("last", "mean"))

    presets = {"paper": {}, "cpu": {"max_train_examples": 200}}

    @abstractmethod
    def features(self, lm: LoadedModel, ctx: FitContext) -> FeatureFn:
        """(distribution, split) -> (activations index, features [n_texts, sites, dim])."""

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        source = training_source(source, self.max_train_examples)
        probe, info = fit_cosine_method(lm, source, ctx, features=self.features(lm, ctx), k=self.k,
                                        val_fraction=self.val_fraction, C=self.C,
                                        direction=getattr(self, "direction", "mean"))
        return State(self.name, self.hparams(), info, cosine_probe_tensors(probe))

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        probe = cosine_probe_from(state.tensors)
        acts, feats = self.features(lm, ctx)(dist, split)
        return predictions(dist, split, acts, feats, probe.p_first, probe.response_scores)
