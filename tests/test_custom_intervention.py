"""The template of docs/interventions.md ("adding an intervention: one file and one decorator"),
tested: a complete method in one small file.

`length` learns from the source whether longer or shorter responses are preferred and scores
responses by signed length. Copy this file into src/genies/interventions/<name>.py (or a plugin
package with a `genies.interventions` entry point) and change the two methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genies.data.schema import Distribution
from genies.interventions.base import FitContext, Intervention, Predictions, State, hparam, register
from genies.models.base import LoadedModel


@register("length_example", family="baseline", description="Prefers longer or shorter responses, as the source does.")
@dataclass
class LengthPreference(Intervention):
    scale: float = hparam(10.0, "characters of length difference per unit of log-odds")

    presets = {"paper": {}, "cpu": {}}

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        pairs = source.train_pairs(ctx.seed)  # one seeded pair per source prompt
        longer_wins = np.mean([len(p.preferred) > len(p.dispreferred) for p in pairs])
        sign = torch.tensor([1.0 if longer_wins >= 0.5 else -1.0])
        return State(self.name, self.hparams(), info={"source": source.id}, tensors={"sign": sign})

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        examples = dist.split(split)  # labels are only used to lay out the pairs
        sign = float(state.tensors["sign"][0])
        scores = [np.array([sign * len(r) / self.scale for r in ex.responses]) for ex in examples]
        return Predictions.from_scores(examples, scores)


# --- the tests of the template -----------------------------------------------------------------

def test_template_is_registered_fits_saves_and_predicts(tiny_llama, tmp_path) -> None:
    from genies.data.schema import Example
    from genies.interventions.base import available, get_intervention

    assert available()["length_example"] is LengthPreference
    short_wins = [Example(f"p{i}", ("ok", "a much longer answer"), 0) for i in range(10)]
    target = [Example("q", ("tiny", "a long long reply", "mid"), 1)]
    source = Distribution.from_examples("short", short_wins, [])
    method = get_intervention("length_example").from_preset("cpu", scale=2.0)
    state = method.fit(tiny_llama, source, FitContext(seed=0))
    state.save(tmp_path / "state")
    pred = State.load(tmp_path / "state").predict(tiny_llama, Distribution.from_examples("t", [], target))
    # shorter is better: pair (long, tiny) -> sigmoid(-(17 - 4) / 2); pair (long, mid) -> sigmoid(-(17 - 3) / 2)
    np.testing.assert_allclose(pred.p_preferred, 1 / (1 + np.exp([13 / 2, 14 / 2])))
