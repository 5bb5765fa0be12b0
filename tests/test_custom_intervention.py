"""The template of docs/interventions.md ("adding an intervention: one file"), tested: a complete
method in one small file, written against the public names only.

`length` learns from the source whether longer or shorter responses are preferred and scores
responses by signed length. Copy this file into src/genies/interventions/<name>.py (or a plugin
package with a `genies.interventions` entry point) and change the two methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genies.data import Distribution, EvalSet
from genies.interventions import FitContext, Intervention, Scorer, Scores, hparam, register
from genies.models import LoadedModel


@dataclass(frozen=True)
class LengthSign:
    """What the method learns: +1 if longer responses win on the source, -1 if shorter do."""

    sign: float


@register("length_example", family="baseline", description="Prefers longer or shorter responses, as the source does.")
@dataclass
class LengthPreference(Intervention[LengthSign]):
    scale: float = hparam(10.0, "characters of length difference per unit of log-odds")

    presets = {"paper": {}, "cpu": {}}

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> LengthSign:
        pairs = train.train_pairs(ctx.seed)  # one seeded pair per source prompt
        longer_wins = np.mean([len(p.preferred) > len(p.dispreferred) for p in pairs])
        return LengthSign(1.0 if longer_wins >= 0.5 else -1.0)

    def scorer(self, lm: LoadedModel, fitted: LengthSign, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:  # queries only: no labels reach a method
            return Scores.bradley_terry([np.array([fitted.sign * len(r) / self.scale for r in q.responses])
                                         for q in data.queries])
        return score


# --- the tests of the template -----------------------------------------------------------------

def test_template_is_registered_fits_saves_and_scores(tiny_llama, tmp_path) -> None:
    from genies.data import Example
    from genies.interventions import available, load_intervention
    from genies.interventions.fitted import load_fitted, save_fitted
    from genies.interventions.scores import pair_with_labels

    assert available()["length_example"] is LengthPreference
    short_wins = [Example(f"p{i}", ("ok", "a much longer answer"), 0) for i in range(10)]
    target = Distribution.from_examples("t", [], [Example("q", ("tiny", "a long long reply", "mid"), 1)])
    method = load_intervention("length_example", "cpu", scale="2.0")  # a --set value arrives as text
    fitted = method.fit(tiny_llama, Distribution.from_examples("short", short_wins, []), FitContext(seed=0))
    save_fitted(fitted, tmp_path / "state", intervention=method.name)
    assert load_fitted(LengthPreference.fitted_type(), tmp_path / "state") == LengthSign(-1.0)
    scores = method.scorer(tiny_llama, fitted, FitContext())(target.eval_set("test"))
    pred = pair_with_labels(scores, target.test, "t/test")
    # shorter is better: pair (long, tiny) -> sigmoid(-(17 - 4) / 2); pair (long, mid) -> sigmoid(-(17 - 3) / 2)
    np.testing.assert_allclose(pred.p_preferred, 1 / (1 + np.exp([13 / 2, 14 / 2])))
