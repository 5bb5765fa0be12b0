"""CCS, contrast-consistent search (Burns et al. 2022; docs/methods.md#ccs).

Each response is read with the question "Does the responder successfully follow the
instruction?" answered "Yes" and answered "No" (EOS appended); the final residual state at the
last token of each goes into an unsupervised probe trained to be consistent (p(Yes) = 1 - p(No))
and confident. genies departs from the original in three documented ways:

- centring statistics come from the SOURCE fit data and are stored in the fitted state, so
  scoring normalises exactly as fitting did (the original centred each test set with its own means);
- the probe's sign is fixed on the labelled source pairs, never on target labels;
- a pair is scored by comparing its two responses' CCS credences through a 1-D calibrator fitted
  on the source pairs, so CCS is a pairwise reward model comparable with the other methods.

Soft labels (a weak-to-strong student, docs/w2s.md) are not weighted here, unlike the supervised
probes: the probe is fitted without labels, and only its sign (one bit, by majority) and the
calibrator read the labels' choices.

The original fitted on 300 examples for llama-30b; `--max-train 300` reproduces that cap (the
run's train cap is the only one).

`variant="legacy_oracle"` reproduces the original's evaluation instead: each test prompt becomes
one pair, its preferred response and one dispreferred response drawn with a seed (the original
drew it unseeded); those 2n responses are centred with their own means and the sign is chosen
with their labels, so this variant declares `reads_eval_labels` and its EvalSets carry labels.
`legacy_response_accuracy` gives the original's figure, max(acc, 1 - acc) over those 2n
responses, half of them preferred (scoring every response of a 3- or 4-response prompt would
make only 25-33 % preferred and measure something else). Its numbers are NOT comparable with
any other method.
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
from genies.interventions.scores import Predictions, Scores
from genies.models.activations import Activations
from genies.models.base import LoadedModel

VARIANTS = ("pairwise", "legacy_oracle")
LEGACY_WARNING = "legacy_oracle: sign chosen on each evaluated split's labels; not comparable"


@dataclass(frozen=True)
class CCSFit:
    """The unsupervised probe, its orientation and the pair calibrator, all fixed on the source."""

    probe: P.CCSProbe  # weight, bias, the source centring means and the final CCS loss
    sign: float  # +1 / -1: the orientation that makes the preferred source response score higher
    calibrator: P.Calibrator  # P(a beats b) from the difference of oriented credences
    n_train_pairs: int
    source_pair_accuracy: float  # share of source training pairs the oriented credence orders right


@register("ccs", family="representation",
          description="Contrast-consistent search on Yes/No answers; sign fixed on source pairs, pairwise scoring")
@dataclass
class CCS(Intervention[CCSFit]):
    version = 3  # 2: legacy_oracle evaluates one seeded pair per prompt, as the original did; 3: hidden
    # states from the prefix-tree extractor (float-level differences can flip tied rankings)
    epochs: int = hparam(1000, "full-batch AdamW steps of the probe")
    restarts: int = hparam(10, "random initialisations of the probe; the one with the lowest CCS loss is kept")
    lr: float = hparam(1e-3, "AdamW learning rate of the probe")
    weight_decay: float = hparam(0.01, "AdamW weight decay of the probe")
    resample: bool = hparam(True, "seeded bootstrap of the training responses, as the original (unseeded there)")
    layer: int = hparam(-1, "hidden-states index (0 = embeddings, -1 = the final normed state)")
    no_template: str = hparam("ccs_no", "template of the No version; 'ccs_no_legacy' reproduces the original's "
                                        "'###Does' spelling")
    variant: str = hparam("pairwise", "'pairwise', or 'legacy_oracle': NOT comparable, reads the evaluated "
                                      "split's labels", choices=VARIANTS)
    position: str = hparam("last", "token read: 'last' of the text, or 'mean' over the response",
                           choices=("last", "mean"))

    presets = {"paper": {}, "cpu": {"epochs": 300}}

    @property
    def reads_eval_labels(self) -> bool:
        """Only the legacy oracle: it orients the probe with the evaluated split's labels."""
        return self.variant == "legacy_oracle"

    def _activations(self, lm: LoadedModel, data: EvalSet,
                     ctx: FitContext) -> tuple[Activations, np.ndarray, np.ndarray]:
        yes, no = R.yes_no_activations(lm, data, ctx, "ccs_yes", self.no_template, "residual", self.position)
        return yes, np.asarray(yes.values[:, self.layer], np.float64), np.asarray(no.values[:, self.layer], np.float64)

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> CCSFit:
        pairs = train.train_pairs(ctx.seed)
        acts, x_yes, x_no = self._activations(lm, train.eval_set("train"), ctx)
        a, b = R.pair_rows(acts, pairs)
        rows = np.concatenate([a, b])
        if self.resample:
            rows = rows[np.random.default_rng(ctx.seed).integers(0, len(rows), len(rows))]
        probe = P.fit_ccs(x_yes[rows], x_no[rows], seed=ctx.seed, epochs=self.epochs, restarts=self.restarts,
                          lr=self.lr, weight_decay=self.weight_decay)
        conf = probe.confidence(x_yes, x_no)
        sign = P.orientation_sign(conf[a], conf[b])
        diffs, labels = P.alternated_differences(sign * conf[a], sign * conf[b])
        return CCSFit(probe, sign, P.fit_calibrator(diffs, labels), len(pairs),
                      float(np.mean(sign * (conf[a] - conf[b]) > 0)))

    def scorer(self, lm: LoadedModel, fitted: CCSFit, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            acts, x_yes, x_no = self._activations(lm, data, ctx)
            if self.variant == "legacy_oracle":
                return self._score_legacy(fitted.probe, data, acts, x_yes, x_no, ctx.seed)
            scores = fitted.sign * fitted.probe.confidence(x_yes, x_no)

            def p_first(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
                return P.symmetric_probability(fitted.calibrator(sa - sb), fitted.calibrator(sb - sa))

            return R.pairwise_scores(data, acts, scores, p_first, lambda s: s)
        return score

    @staticmethod
    def _score_legacy(probe: P.CCSProbe, data: EvalSet, acts: Activations, x_yes: np.ndarray,
                      x_no: np.ndarray, seed: int) -> Scores:
        """The original: one seeded pair per prompt, centred with those responses' own means and
        oriented with their labels. Every response gets an oriented credence (for browsing);
        `info["legacy_pairs"]` names the pair of each prompt that the figure is computed on."""
        if data.labels is None:
            raise ValueError(f"{data.distribution}/{data.split}: ccs variant 'legacy_oracle' orients its probe with "
                             "the evaluated split's labels, and this EvalSet carries none "
                             "(build it with eval_set(split, with_labels=True))")
        pairs = legacy_pairs(data, seed)
        row = {(e, r): i for i, (e, r) in enumerate(zip(acts.example_index, acts.response_index, strict=True))}
        chosen = np.array([row[e, r] for e, pair in enumerate(pairs) for r in pair])
        own = P.CCSProbe(probe.weight, probe.bias, x_yes[chosen].mean(0), x_no[chosen].mean(0), probe.loss)
        conf = own.confidence(x_yes, x_no)
        is_pref = np.tile([True, False], len(pairs))
        sign = 1.0 if np.mean((conf[chosen] > 0.5) == is_pref) >= 0.5 else -1.0  # the oracle sign
        oriented = 0.5 + sign * (conf - 0.5)
        return R.pairwise_scores(data, acts, oriented, lambda ca, cb: 0.5 * (1.0 + ca - cb), lambda c: c,
                                 {"warning": LEGACY_WARNING, "legacy_pairs": [list(p) for p in pairs]})


def legacy_pairs(data: EvalSet, seed: int) -> list[tuple[int, int]]:
    """(preferred, one dispreferred response drawn with (seed, prompt index)) for every prompt."""
    assert data.labels is not None
    out = []
    for e, (query, preferred) in enumerate(zip(data.queries, data.labels, strict=True)):
        others = [r for r in range(len(query.responses)) if r != preferred]
        out.append((int(preferred), int(others[np.random.default_rng([seed, e]).integers(len(others))])))
    return out


def legacy_response_accuracy(predictions: Predictions) -> float:
    """The original CCS figure from `variant="legacy_oracle"` predictions: the share of the 2n
    responses of the prompts' legacy pairs whose oriented credence is on the correct side of 0.5."""
    pairs = predictions.info.get("legacy_pairs")
    if predictions.response_scores is None or pairs is None:
        raise ValueError("legacy_response_accuracy needs the predictions of ccs variant 'legacy_oracle'")
    hits = [(predictions.response_scores[e][r] > 0.5) == (k == 0)
            for e, pair in enumerate(pairs) for k, r in enumerate(pair)]
    return float(np.mean(hits))
