"""Our mean DE beside the published GENIES numbers: like for like, or not drawn (issue 13).

Three things can make a published mean DE unlike ours; each is settled here, once, for the
report (`genies report --reference`) and the terminal (`genies results compare`):

1. Which published method ours is. The original's folders name methods by variant: our `lat` is
   `lat_stim_1` or `lat_stim_2` by its `stimulus` hyperparameter, our `lora` its
   `lora_fine_tuning`. The published `ccs` is the original's per-response accuracy with the sign
   chosen on the target's labels (docs/methods.md#ccs): only our `ccs` with
   `variant=legacy_oracle` measures that, so only it is compared, with its DE recomputed from the
   original's per-response figure over its evaluations' legacy pairs. Pairwise `ccs` never is.
2. The target-tuned capability A_tt that divides DE. The published tables divide by the best of
   five methods' accuracy on the reference R (docs/methods.md#target-tuned-capability); a run in
   the default mode divides by LoRA's. For such a run every published DE is recomputed with
   LoRA's A_tt on R, which the tables hold in two places: a row's own A_tt where LoRA won the best-of, and the source
   in-distribution accuracy of the published LoRA row trained on R. Where neither exists the
   published DE is kept and the comparison says that it mixes definitions.
3. Which shifts are averaged: both means are over the shifts both sides have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from genies.errors import UnknownNameError
from genies.pipeline.run_dir import Evaluation, ResultRow, RunResults, read_evaluation
from genies.report.load import ReportError
from genies.report.reference import ReferenceRow, canonical_intervention

LORA = "lora"
# The candidates of the published best-of A_tt (docs/methods.md#target-tuned-capability); genies'
# `--target-tuned best` uses the same.
PUBLISHED_TARGET_TUNED = frozenset({"lora", "prompt_tuning", "mms", "few_shot", "zero_shot"})
CCS_LEGACY_LABEL = "ccs (legacy oracle, per response)"


class TargetTunedMatch(Enum):
    """How the A_tt behind the published DE relates to the run's."""

    SAME = "same definition"  # the run used the published best-of
    RECOMPUTED = "recomputed with LoRA A_tt"  # default-mode run: published DE divided by LoRA's A_tt
    MIXED = "mixes definitions"  # the published DE keeps an A_tt the run did not use


@dataclass(frozen=True)
class PublishedMatch:
    """Which published method one of ours is comparable with: `published` is its folder name as
    `load_reference` reads it (None when nothing is comparable, and `reason` says why)."""

    intervention: str
    published: str | None
    label: str  # how a table or figure names the published side
    per_response: bool = False  # ours is compared through the original's per-response CCS figure
    reason: str | None = None


@dataclass(frozen=True)
class ShiftPair:
    """One shift both sides have: our DE and the published DE as compared (recomputed with
    LoRA's A_tt where `att_recomputed`), beside the DE the published table prints."""

    source: str
    target: str
    target_reference: str
    ours_de: float
    published_de: float
    published_de_as_printed: float
    att_recomputed: bool


@dataclass(frozen=True)
class PublishedComparison:
    """Our intervention beside one published model's numbers for the same method, over the same
    shifts; `caveat` says what still differs (None when nothing does)."""

    intervention: str
    published: str  # the published side's label (`lat_stim_2`, `ccs (legacy oracle, per response)`)
    model: str
    shifts: tuple[ShiftPair, ...]
    att_match: TargetTunedMatch
    caveat: str | None

    @property
    def n_shifts(self) -> int:
        return len(self.shifts)

    @property
    def ours_mean_de(self) -> float:
        return float(np.mean([s.ours_de for s in self.shifts]))

    @property
    def published_mean_de(self) -> float:
        return float(np.mean([s.published_de for s in self.shifts]))

    @property
    def n_recomputed(self) -> int:
        return sum(s.att_recomputed for s in self.shifts)

    @property
    def att_text(self) -> str:
        """"same definition", "recomputed with LoRA A_tt on k of n shifts" or "mixes definitions"."""
        if self.att_match is TargetTunedMatch.RECOMPUTED:
            return f"{self.att_match.value} on {self.n_recomputed} of {self.n_shifts} shifts"
        return self.att_match.value

    def record(self) -> dict[str, Any]:
        """Plain values for csv and json output (the per-shift pairs left out)."""
        return {
            "intervention": self.intervention, "published": self.published, "model": self.model,
            "n_shifts": self.n_shifts, "ours_mean_de": self.ours_mean_de,
            "published_mean_de": self.published_mean_de,
            "difference": self.ours_mean_de - self.published_mean_de,
            "target_tuned": self.att_text, "caveat": self.caveat,
        }


@dataclass(frozen=True)
class NotCompared:
    """One of our interventions with no comparable published number (for `model`, or for any
    model when `model` is None), and why."""

    intervention: str
    model: str | None
    reason: str


@dataclass(frozen=True)
class PublishedComparisons:
    """Everything one run has to say beside the published tables."""

    comparisons: tuple[PublishedComparison, ...]
    not_compared: tuple[NotCompared, ...]


def published_match(intervention: str, hyperparameters: Mapping[str, Any] | None,
                    baseline: str = "zero_shot") -> PublishedMatch:
    """The published method comparable with `intervention` configured with `hyperparameters`
    (its entry of the run info's `hyperparameters`; None when the run did not record them)."""
    hp = hyperparameters or {}
    if intervention == baseline:
        return PublishedMatch(intervention, None, intervention,
                              reason="the baseline: its DE is 0 by construction, here and in the tables")
    if intervention == "lat":
        stimulus = hp.get("stimulus")
        if stimulus not in (1, 2):
            return PublishedMatch(intervention, None, intervention,
                                  reason="the run does not record lat's stimulus (1 or 2), which decides between "
                                         "the published lat_stim_1 and lat_stim_2")
        return PublishedMatch(intervention, f"lat_stim_{stimulus}", f"lat_stim_{stimulus}")
    if intervention == "ccs":
        variant = hp.get("variant")
        if variant == "legacy_oracle":
            return PublishedMatch(intervention, "ccs", CCS_LEGACY_LABEL, per_response=True)
        why = ("the run does not record ccs's variant" if variant is None else
               f"ccs variant {variant!r} scores pairs with a sign fixed on the source; the published ccs is "
               "per-response accuracy with the sign chosen on the target's labels (docs/methods.md#ccs), so the two "
               "are not comparable (--set ccs.variant=legacy_oracle runs the original's)")
        return PublishedMatch(intervention, None, intervention, reason=why)
    name = canonical_intervention(intervention)
    return PublishedMatch(intervention, name, name)


def lora_target_tuned(reference: Sequence[ReferenceRow], model: str) -> dict[str, float]:
    """LoRA's A_tt on each reference R that `model`'s published LoRA table gives: the source
    in-distribution accuracy of its row trained on R, overridden by a row's own A_tt where LoRA won
    the best-of on R (the number the table itself divided by; the two differ where the best-of
    came from an older run)."""
    lora = [r for r in reference if r.model == model and r.intervention == LORA]
    found = {r.source: r.source_ID_accuracy for r in lora if math.isfinite(r.source_ID_accuracy)}
    found.update({r.target_reference: r.target_tuned_capability for r in lora
                  if r.target_tuned_capability_intervention == LORA and math.isfinite(r.target_tuned_capability)})
    return found


def per_response_accuracy(evaluation: Evaluation) -> float | None:
    """The original CCS figure from a `ccs` legacy-oracle evaluation: max(acc, 1 - acc) over the
    2n responses of its legacy pairs (preferred first), a response right when its oriented
    credence is on the correct side of 0.5; None when the evaluation lacks the pairs or scores
    (written by ccs before version 2)."""
    pairs, scores = evaluation.info.get("legacy_pairs"), evaluation.response_scores
    if not isinstance(pairs, list) or not pairs or scores is None or len(scores) < len(pairs):
        return None
    hits = []
    for e, pair in enumerate(pairs):
        row = scores[e]
        if row is None:
            return None
        hits += [(row[r] > 0.5) == (k == 0) for k, r in enumerate(pair)]
    accuracy = float(np.mean(hits))
    return max(accuracy, 1.0 - accuracy)


def _run_candidates(run: Mapping[str, Any]) -> frozenset[str]:
    """The run's A_tt candidates: recorded by every `genies run`, else read from its mode."""
    recorded = run.get("target_tuned_candidates")
    if recorded:
        return frozenset(recorded)
    return {"default": frozenset({LORA}), "best": PUBLISHED_TARGET_TUNED}.get(str(run.get("target_tuned")),
                                                                            frozenset())


def _interventions(results: RunResults) -> list[str]:
    return list(dict.fromkeys([*(results.run.get("interventions") or []), *(r.intervention for r in results.rows)]))


def _ours(rows: Sequence[ResultRow], match: PublishedMatch,
          evaluation: Callable[[str], Evaluation]) -> dict[tuple[str, str], tuple[ResultRow, float]] | None:
    """Our DE per shift as the published side computed it (None when it cannot be)."""
    out = {}
    for row in rows:
        de = row.differential_elicitation
        if match.per_response:
            accuracy = per_response_accuracy(evaluation(row.target_evaluation))
            if accuracy is None:
                return None
            tt = row.target_tuned_capability
            de = (accuracy - row.baseline_accuracy) / tt if tt else math.nan
        if math.isfinite(de):
            out[(row.source, row.target)] = (row, de)
    return out


def _published_de(row: ReferenceRow, lora_att: Mapping[str, float] | None) -> tuple[float, bool]:
    """The published DE with LoRA's A_tt where `lora_att` is given and the tables allow it, and
    whether it is."""
    if lora_att is None:
        return row.differential_elicitation, False
    if row.target_tuned_capability_intervention == LORA:
        return row.differential_elicitation, True  # the table already divided by LoRA's A_tt
    tt = lora_att.get(row.target_reference)
    if not tt:
        return row.differential_elicitation, False
    return (row.generalization_accuracy - row.baseline_accuracy) / tt, True


def compare_with_published(results: RunResults, reference: Sequence[ReferenceRow],
                           models: Sequence[str] | None = None,
                           evaluation: Callable[[str], Evaluation] | None = None) -> PublishedComparisons:
    """Each of the run's interventions beside each published model (all, or `models`) where the
    two are comparable, else a `NotCompared` with the reason. `evaluation` reads a run-relative
    evaluation file (default: from `results.run_dir`); only a legacy-oracle `ccs` needs one."""
    known = sorted({r.model for r in reference})
    for model in models or ():
        if model not in known:
            raise UnknownNameError("published model", model, known)
    models = list(models) if models else known

    def read(relpath: str) -> Evaluation:
        if results.run_dir is None:
            raise ReportError(relpath, "the run has no folder to read this evaluation from")
        return read_evaluation(results.run_dir / relpath)

    evaluation = evaluation or read
    candidates = _run_candidates(results.run)
    hyperparameters = results.run.get("hyperparameters") or {}
    baseline = str(results.run.get("baseline_intervention") or "zero_shot")
    by_method: dict[tuple[str, str], dict[tuple[str, str], ReferenceRow]] = {}
    for r in reference:
        by_method.setdefault((r.model, r.intervention), {})[(r.source, r.target)] = r
    comparisons: list[PublishedComparison] = []
    not_compared: list[NotCompared] = []
    for intervention in _interventions(results):
        match = published_match(intervention, hyperparameters.get(intervention), baseline)
        if match.published is None:
            not_compared.append(NotCompared(intervention, None, str(match.reason)))
            continue
        ours = _ours([r for r in results.rows if r.intervention == intervention], match, evaluation)
        if ours is None:
            not_compared.append(NotCompared(intervention, None, "its evaluations lack the legacy pairs that the "
                                            "per-response figure is computed on (ccs before version 2): rerun it"))
            continue
        for model in models:
            table = by_method.get((model, match.published))
            if not table:
                not_compared.append(NotCompared(intervention, model, f"published {model} has no {match.published}"))
                continue
            lora_att = lora_target_tuned(reference, model) if candidates == {LORA} else None
            pairs = []
            for key, (row, de) in ours.items():
                if key in table:
                    published, recomputed = _published_de(table[key], lora_att)
                    if math.isfinite(published):
                        pairs.append(ShiftPair(row.source, row.target, row.target_reference, de, published,
                                               table[key].differential_elicitation, recomputed))
            if not pairs:
                not_compared.append(NotCompared(intervention, model,
                                                f"no shift with a DE in common with published {model}"))
                continue
            comparisons.append(_comparison(match, model, tuple(pairs), candidates))
    return PublishedComparisons(tuple(comparisons), tuple(not_compared))


def _comparison(match: PublishedMatch, model: str, pairs: tuple[ShiftPair, ...],
                candidates: frozenset[str]) -> PublishedComparison:
    """The comparison's A_tt match and its caveats, in words."""
    caveats = []
    if match.per_response:
        caveats.append("both sides are the original's per-response CCS accuracy with the sign chosen on the target's "
                       "labels: comparable with each other, not with any other method")
    n, k = len(pairs), sum(p.att_recomputed for p in pairs)
    if candidates == PUBLISHED_TARGET_TUNED:
        att = TargetTunedMatch.SAME
    elif candidates == {LORA} and k:
        att = TargetTunedMatch.RECOMPUTED
        if k < n:
            caveats.append(f"the published DE of {n - k} of {n} shifts keeps the best-of-interventions A_tt (the "
                           "tables give no LoRA A_tt for their reference), so the mean mixes definitions")
    else:
        att = TargetTunedMatch.MIXED
        ours = ("LoRA's" if candidates == {LORA} else
                f"the best of {', '.join(sorted(candidates))}" if candidates else "an unrecorded")
        caveats.append(f"the published DE divides by the best-of-interventions A_tt, this run's by {ours} A_tt"
                       + (" (the tables give no LoRA A_tt for these references)" if candidates == {LORA} else ""))
    return PublishedComparison(match.intervention, match.label, model, pairs, att,
                               "; ".join(caveats) if caveats else None)
