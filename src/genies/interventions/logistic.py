"""A supervised logistic-regression probe on the residual stream: a linear Bradley-Terry reward
model on frozen hidden states.

Features are one hidden-states layer at the last token, standardised with the SOURCE train
texts' mean and standard deviation (stored in the state, so prediction normalises exactly as
fitting did). The probe is fitted on alternated-order pair differences without intercept, so a
response's score is w . z and P(a beats b) = sigmoid(w . (z_a - z_b)), exactly antisymmetric.
With `layer=None` the layer with the best held-out pair accuracy (seeded 70/30 split of the
source pairs) is used, and the probe is then refitted on all pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genies.data.schema import Distribution
from genies.interventions import _probes as P
from genies.interventions import _representation as R
from genies.interventions.base import FitContext, Intervention, Predictions, State, _sigmoid, hparam, register
from genies.models.base import LoadedModel


@register("logistic", family="representation",
          description="Supervised logistic-regression probe on one residual-stream layer (pairwise, standardised)")
@dataclass
class Logistic(Intervention):
    layer: int | None = hparam(None, "hidden-states index (0 = embeddings, -1 = final); None = the layer with "
                                     "the best held-out pair accuracy")
    C: float = hparam(1.0, "inverse L2 strength of the probe")
    val_fraction: float = hparam(0.3, "share of the training pairs held out to choose the layer (layer=None)")
    max_train_examples: int | None = hparam(None, "first N source prompts (None = all)")
    template: str = hparam("plain", "text template the activations are read from")
    position: str = hparam("last", "token read: 'last' of the text, or 'mean' over the response",
                           choices=("last", "mean"))

    presets = {"paper": {}, "cpu": {"max_train_examples": 200}}

    def _residual(self, lm: LoadedModel, dist: Distribution, split: str, ctx: FitContext):
        acts = R.store_of(ctx).get(lm, dist, split, self.template, "residual", self.position)
        return acts, R.as_sites(acts.values, "residual")

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        source = R.training_source(source, self.max_train_examples)
        pairs = source.train_pairs(ctx.seed)
        acts, x = self._residual(lm, source, "train", ctx)
        mean = x.mean(0, dtype=np.float64)
        std = np.maximum(x.std(0, dtype=np.float64), 1e-6)
        a, b = R.pair_rows(acts, pairs)
        diffs, labels = P.alternated_differences((x[a] - mean) / std, (x[b] - mean) / std)  # [n, L+1, d]
        if self.layer is None:
            train_idx, val_idx = P.split_pairs(len(pairs), ctx.seed, self.val_fraction)
            w, _ = P.fit_logistic(diffs[train_idx].transpose(1, 0, 2), labels[train_idx], C=self.C,
                                  fit_intercept=False)
            val = np.einsum("nsd,sd->sn", diffs[val_idx], w)
            accuracy = ((val > 0) == (labels[val_idx] > 0.5)).mean(1)
            layer = int(P.top_k(accuracy, 1)[0])
        else:
            layer = self.layer % x.shape[1]
            accuracy = None
        w, _ = P.fit_logistic(diffs[:, layer][None], labels, C=self.C, fit_intercept=False)
        tensors = {"weight": torch.as_tensor(w[0]), "mean": torch.as_tensor(mean[layer]),
                   "std": torch.as_tensor(std[layer]), "layer": torch.tensor([layer], dtype=torch.int64)}
        info = {"source": source.id, "n_train_pairs": len(pairs), "layer": layer}
        if accuracy is not None:
            info["layer_val_accuracy"] = accuracy.round(4).tolist()
        return State(self.name, self.hparams(), info, tensors)

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        t = state.tensors
        acts, x = self._residual(lm, dist, split, ctx)
        z = (x[:, int(t["layer"])] - t["mean"].numpy()) / t["std"].numpy()
        scores = z @ t["weight"].numpy()

        return R.predictions(dist, split, acts, scores, lambda sa, sb: _sigmoid(sa - sb), lambda s: s)
