"""A supervised logistic-regression probe on the residual stream: a linear Bradley-Terry reward
model on frozen hidden states.

Features are one hidden-states layer at the last token, standardised with the SOURCE train
texts' mean and standard deviation (stored in the fitted state, so scoring normalises exactly as
fitting did). The probe is fitted on alternated-order pair differences without intercept, so a
response's score is w . z and P(a beats b) = sigmoid(w . (z_a - z_b)), exactly antisymmetric.
With `layer=None` the layer with the best held-out pair accuracy (seeded 70/30 split of the
source pairs) is used, and the probe is then refitted on all pairs. With soft labels (a
weak-to-strong student, docs/w2s.md) each pair is a `sample_weight` of 2c - 1 for its label's
confidence c, and the layer is chosen by the expected held-out accuracy (`_probes.weights_of`,
`_probes.held_out_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data.schema import Distribution, EvalSet
from genies.interventions import _probes as P
from genies.interventions import _representation as R
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores, sigmoid
from genies.models.activations import Activations
from genies.models.base import LoadedModel


@dataclass(frozen=True)
class LogisticFit:
    """The probe on one hidden-states layer with the source standardisation it was fitted under."""

    layer: int  # hidden-states index, non-negative
    weight: np.ndarray  # [d], on standardised features
    mean: np.ndarray  # [d] source train texts' mean at `layer`
    std: np.ndarray  # [d] their standard deviation (floored at 1e-6)
    n_train_pairs: int
    layer_val_accuracy: np.ndarray | None  # [L+1] held-out pair accuracy per layer when the layer was chosen


@register("logistic", family="representation",
          description="Supervised logistic-regression probe on one residual-stream layer (pairwise, standardised)")
@dataclass
class Logistic(Intervention[LogisticFit]):
    version = 3  # 2: hidden states from the prefix-tree extractor (float-level differences can flip tied site rankings);
    # 3: fit_logistic skips L-BFGS pairs without positive curvature (were NaN on some sites), and soft
    # weak labels weigh the pairs (a student fitted before would be served from the cache)
    layer: int | None = hparam(None, "hidden-states index (0 = embeddings, -1 = final); None = the layer with "
                                     "the best held-out pair accuracy")
    C: float = hparam(1.0, "inverse L2 strength of the probe")
    val_fraction: float = hparam(0.3, "share of the training pairs held out to choose the layer (layer=None)")
    template: str = hparam("plain", "text template the activations are read from")
    position: str = hparam("last", "token read: 'last' of the text, or 'mean' over the response",
                           choices=("last", "mean"))

    presets = {"paper": {}, "cpu": {}}

    def _residual(self, lm: LoadedModel, data: EvalSet, ctx: FitContext) -> tuple[Activations, np.ndarray]:
        acts = ctx.activations().get(lm, data, self.template, "residual", self.position)
        return acts, R.as_sites(acts.values, "residual")

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> LogisticFit:
        pairs = train.train_pairs(ctx.seed)
        acts, x = self._residual(lm, train.eval_set("train"), ctx)
        mean = x.mean(0, dtype=np.float64)
        std = np.maximum(x.std(0, dtype=np.float64), 1e-6)
        a, b = R.pair_rows(acts, pairs)
        diffs, labels = P.alternated_differences((x[a] - mean) / std, (x[b] - mean) / std)  # [n, L+1, d]
        confidence = R.pair_confidence(pairs)
        weights = P.weights_of(confidence)
        if self.layer is None:
            train_idx, val_idx = P.split_pairs(len(pairs), ctx.seed, self.val_fraction)
            w, _ = P.fit_logistic(diffs[train_idx].transpose(1, 0, 2), labels[train_idx], C=self.C,
                                  fit_intercept=False, sample_weight=None if weights is None else weights[train_idx])
            val = np.einsum("nsd,sd->sn", diffs[val_idx], w)
            accuracy = P.held_out_accuracy((val > 0) == (labels[val_idx] > 0.5),
                                           None if confidence is None else confidence[val_idx])
            layer = int(P.top_k(accuracy, 1)[0])
        else:
            layer = self.layer % x.shape[1]
            accuracy = None
        w, _ = P.fit_logistic(diffs[:, layer][None], labels, C=self.C, fit_intercept=False, sample_weight=weights)
        return LogisticFit(layer, w[0], mean[layer], std[layer], len(pairs), accuracy)

    def scorer(self, lm: LoadedModel, fitted: LogisticFit, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            acts, x = self._residual(lm, data, ctx)
            scores = ((x[:, fitted.layer] - fitted.mean) / fitted.std) @ fitted.weight
            return R.pairwise_scores(data, acts, scores, lambda sa, sb: sigmoid(sa - sb), lambda s: s)
        return score
