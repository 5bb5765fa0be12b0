"""LAT, linear artificial tomography on the residual stream (docs/methods.md#lat).

As the original: the MMS pipeline on residual-stream hidden states (embedding output and layers
1..L-1; the final normed state is left out) at the last token, top-k layers by held-out logistic
probes. `stimulus` 1 reads prompt + response, 2 wraps the response in the LAT stimulus template
(`lat_stim_2`). `direction="pca"` replaces the class-mean difference by the first principal
component of the pair differences, as representation engineering (Zou et al. 2023) defines LAT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from genies.data.schema import EvalSet
from genies.interventions import _probes as P
from genies.interventions import _representation as R
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.models.activations import Activations
from genies.models.base import LoadedModel

STIMULUS_TEMPLATES = {1: "plain", 2: "lat_stim_2"}


@register("lat", family="representation",
          description="Residual-stream directions (class-mean or PCA) on the top-k layers, stimulus 1 or 2")
@dataclass
class LAT(R.CosineProbeMethod):
    version = 3  # 2: hidden states from the prefix-tree extractor (float-level differences can flip tied site rankings);
    # 3: the logistic site-ranking probes skip L-BFGS pairs without positive curvature (were NaN on some
    # sites), and soft weak labels weigh the pairs (a student fitted before would be served from the cache)
    stimulus: int = hparam(1, "1: prompt + response; 2: the LAT stimulus template around the response",
                           choices=tuple(STIMULUS_TEMPLATES))
    direction: str = hparam("mean", "'mean' (the original code) or 'pca' (representation engineering)",
                            choices=("mean", "pca"))

    def probe_direction(self) -> P.Direction:
        return cast(P.Direction, self.direction)  # one of the choices, checked when configured

    def features(self, lm: LoadedModel, ctx: FitContext) -> R.FeatureFn:
        def get(data: EvalSet) -> tuple[Activations, np.ndarray]:
            acts = ctx.activations().get(lm, data, STIMULUS_TEMPLATES[self.stimulus], "residual", self.position)
            return acts, R.as_sites(acts.values, "residual")[:, :-1]  # drop the final normed state
        return get
