"""MMS, mass-mean shift over attention heads (docs/methods.md#mms).

Per-head attention outputs (before o_proj) at the last token of prompt + response; one
class-mean direction per head; the top-k heads by held-out logistic-probe accuracy; a pair is
scored by the mean cosine between the two responses' head-output difference and the directions,
mapped to a probability by a 1-D logistic calibrator fitted on the probe-validation pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data.schema import EvalSet
from genies.interventions import _representation as R
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.models.activations import Activations
from genies.models.base import LoadedModel


@register("mms", family="representation",
          description="Mass-mean shift: class-mean directions on the top-k attention heads, calibrated cosine score")
@dataclass
class MMS(R.CosineProbeMethod):
    version = 3  # 2: hidden states from the prefix-tree extractor (float-level differences can flip tied site rankings);
    # 3: the logistic site-ranking probes skip L-BFGS pairs without positive curvature (were NaN on some
    # sites), and soft weak labels weigh the pairs (a student fitted before would be served from the cache)
    template: str = hparam("plain", "text template the head activations are read from")

    def features(self, lm: LoadedModel, ctx: FitContext) -> R.FeatureFn:
        def get(data: EvalSet) -> tuple[Activations, np.ndarray]:
            acts = ctx.activations().get(lm, data, self.template, "heads", self.position)
            return acts, R.as_sites(acts.values, "heads")
        return get
