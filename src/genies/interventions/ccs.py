"""CCS, contrast-consistent search (Burns et al. 2022; SPEC part A item 8, part B §5.9).

Each response is read with the question "Does the responder successfully follow the
instruction?" answered "Yes" and answered "No" (EOS appended); the final residual state at the
last token of each goes into an unsupervised probe trained to be consistent (p(Yes) = 1 - p(No))
and confident. genies departs from the original in three documented ways:

- centring statistics come from the SOURCE fit data and are stored in the state, so prediction
  normalises exactly as fitting did (the original centred each test set with its own means);
- the probe's sign is fixed on the labelled source pairs, never on target labels;
- a pair is scored by comparing its two responses' CCS credences through a 1-D calibrator fitted
  on the source pairs, so CCS is a pairwise reward model comparable with the other methods.

`variant="legacy_oracle"` reproduces the original instead: each evaluated split is centred with
its own means and the sign is chosen with THAT split's labels. It reads target labels, so its
numbers are NOT comparable with any other method; `legacy_response_accuracy` gives the original's
per-response max(acc, 1 - acc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genies.data.schema import Distribution
from genies.interventions import _probes as P
from genies.interventions import _representation as R
from genies.interventions.base import FitContext, Intervention, Predictions, State, hparam, register
from genies.models.activations import Activations
from genies.models.base import LoadedModel

VARIANTS = ("pairwise", "legacy_oracle")


@register("ccs", family="representation",
          description="Contrast-consistent search on Yes/No answers; sign fixed on source pairs, pairwise scoring")
@dataclass
class CCS(Intervention):
    max_train_examples: int | None = hparam(300, "first N source prompts used (None = all; the original: 300 "
                                                 "for llama-30b)")
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

    presets = {"paper": {}, "cpu": {"max_train_examples": 100, "epochs": 300}}

    def _activations(self, lm: LoadedModel, dist: Distribution, split: str,
                     ctx: FitContext) -> tuple[Activations, np.ndarray, np.ndarray]:
        yes, no = R.yes_no_activations(lm, dist, split, ctx, "ccs_yes", self.no_template, "residual", self.position)
        return yes, np.asarray(yes.values[:, self.layer], np.float64), np.asarray(no.values[:, self.layer], np.float64)

    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        source = R.training_source(source, self.max_train_examples)
        pairs = source.train_pairs(ctx.seed)
        acts, x_yes, x_no = self._activations(lm, source, "train", ctx)
        a, b = R.pair_rows(acts, pairs)
        rows = np.concatenate([a, b])
        if self.resample:
            rows = rows[np.random.default_rng(ctx.seed).integers(0, len(rows), len(rows))]
        probe = P.fit_ccs(x_yes[rows], x_no[rows], seed=ctx.seed, epochs=self.epochs, restarts=self.restarts,
                          lr=self.lr, weight_decay=self.weight_decay)
        conf = probe.confidence(x_yes, x_no)
        sign = P.orientation_sign(conf[a], conf[b])
        diffs, labels = P.alternated_differences(sign * conf[a], sign * conf[b])
        calibrator = P.fit_calibrator(diffs, labels)
        tensors = {
            "weight": torch.as_tensor(probe.weight), "bias": torch.tensor([probe.bias], dtype=torch.float64),
            "mean_yes": torch.as_tensor(probe.mean_yes), "mean_no": torch.as_tensor(probe.mean_no),
            "sign": torch.tensor([sign], dtype=torch.float64),
            "calibrator": torch.tensor([calibrator.slope, calibrator.intercept], dtype=torch.float64),
        }
        info = {"source": source.id, "n_train_pairs": len(pairs), "ccs_loss": probe.loss, "sign": sign,
                "source_pair_accuracy": float(np.mean(sign * (conf[a] - conf[b]) > 0))}
        if self.variant == "legacy_oracle":
            info["warning"] = "legacy_oracle: sign chosen on each evaluated split's labels; not comparable"
        return State(self.name, self.hparams(), info, tensors)

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        t = state.tensors
        probe = P.CCSProbe(t["weight"].numpy(), float(t["bias"]), t["mean_yes"].numpy(), t["mean_no"].numpy(), 0.0)
        acts, x_yes, x_no = self._activations(lm, dist, split, ctx)
        if self.variant == "legacy_oracle":
            return self._predict_legacy(probe, dist, split, acts, x_yes, x_no)
        calibrator = P.Calibrator(*t["calibrator"].tolist())
        sign = float(t["sign"])
        scores = sign * probe.confidence(x_yes, x_no)

        def p_first(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
            return P.symmetric_probability(calibrator(sa - sb), calibrator(sb - sa))

        return R.predictions(dist, split, acts, scores, p_first, lambda s: s)

    @staticmethod
    def _predict_legacy(probe: P.CCSProbe, dist: Distribution, split: str, acts: Activations,
                        x_yes: np.ndarray, x_no: np.ndarray) -> Predictions:
        """The original: centre with this split's means, orient with this split's labels."""
        own = P.CCSProbe(probe.weight, probe.bias, x_yes.mean(0), x_no.mean(0), probe.loss)
        conf = own.confidence(x_yes, x_no)
        examples = dist.split(split)
        is_pref = np.array([examples[e].preferred == r for e, r in zip(acts.example_index, acts.response_index,
                                                                       strict=True)])
        sign = 1.0 if np.mean((conf > 0.5) == is_pref) >= 0.5 else -1.0  # the oracle sign
        oriented = 0.5 + sign * (conf - 0.5)
        return R.predictions(dist, split, acts, oriented, lambda ca, cb: 0.5 * (1.0 + ca - cb), lambda c: c)


def legacy_response_accuracy(predictions: Predictions, dist: Distribution, split: str = "test") -> float:
    """The original CCS metric from `variant="legacy_oracle"` predictions: the fraction of
    responses whose oriented credence is on the correct side of 0.5 (preferred vs not)."""
    examples = dist.split(split)
    if predictions.response_scores is None:
        raise ValueError("legacy_response_accuracy needs predictions with response scores")
    hits = [(score > 0.5) == (j == ex.preferred)
            for ex, scores in zip(examples, predictions.response_scores, strict=True)
            for j, score in enumerate(scores)]
    return float(np.mean(hits))
