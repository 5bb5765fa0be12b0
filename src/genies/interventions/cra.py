"""CRA, contrastive Yes/No head activations (docs/methods.md#cra).

Each response is read twice, followed by "### Does the responder successfully follow the
instruction?" and the answer "Yes" or "No"; its feature per head is act(Yes) - alpha * act(No)
at the last token. Then the MMS pipeline runs on these features.
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


@register("cra", family="representation",
          description="MMS on Yes-minus-No contrast features of the attention heads")
@dataclass
class CRA(R.CosineProbeMethod):
    version = 3  # 2: hidden states from the prefix-tree extractor (float-level differences can flip tied site rankings);
    # 3: the logistic site-ranking probes skip L-BFGS pairs without positive curvature (were NaN on some
    # sites), and soft weak labels weigh the pairs (a student fitted before would be served from the cache)
    alpha: float = hparam(1.0, "weight of the No activations: feature = act(..Yes) - alpha * act(..No)")

    def features(self, lm: LoadedModel, ctx: FitContext) -> R.FeatureFn:
        def get(data: EvalSet) -> tuple[Activations, np.ndarray]:
            yes, no = R.yes_no_activations(lm, data, ctx, "cra_yes", "cra_no", "heads", self.position)
            return yes, R.as_sites(yes.values, "heads") - self.alpha * R.as_sites(no.values, "heads")
        return get
