"""Weak-to-strong metrics from stored predictions: accuracies with prompt-bootstrap intervals
and PGR with a paired bootstrap interval.

PGR = (student - weak) / (ceiling - weak), the accuracies on the source's test split. It is
undefined (None, never a number) when the ceiling is not above the weak supervisor. Its interval
resamples the test prompts once per replicate for weak, ceiling and every student
(`intervals.prompt_draws`: they are measured on the same prompts) and keeps the replicates where
the ceiling is above the weak supervisor; `undefined_share` says how many were dropped, so a wide
gap in the data shows.

Per target, each student's and the ceiling's DE (differential elicitation) as `genies run`
computes it (`genies.metrics.differential_elicitation`): (A(S->T) - A_zero_shot(T)) / A_tt(R),
the strong model's zero-shot accuracy on the target and its target-tuned capability on the
target's reference (the best of the candidates, as `genies run --target-tuned` picks it), with
the interval `genies run` gives a row's DE (`intervals.de_replicates`: the target's prompts drawn
jointly for the student and the baseline, the reference's for A_tt).

Results are partial when jobs failed: a missing weak supervisor or ceiling is None (and so is
every student's PGR, which needs both), a missing student is left out of `students`, missing
DE references leave every DE of that target None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genies import intervals, metrics
from genies.interventions.scores import Predictions
from genies.rounding import number


@dataclass(frozen=True)
class Accuracy:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Pgr:
    value: float | None  # None: undefined (ceiling <= weak)
    low: float | None
    high: float | None
    undefined_share: float  # of bootstrap replicates with ceiling <= weak

    @property
    def defined(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class StudentResult:
    """One strong student (one loss) on the source's test split."""

    loss: str
    accuracy: Accuracy
    pgr: Pgr | None  # None: the weak supervisor's or the ceiling's jobs failed, so there is no gap


@dataclass(frozen=True)
class SourceResult:
    source: str
    test_pairs: int
    weak: Accuracy | None  # None: its jobs failed
    ceiling: Accuracy | None
    students: tuple[StudentResult, ...]  # in the run's order of losses; failed students left out
    weak_label_accuracy: float | None  # share of half B whose weak label is the ground truth (read after the fact)
    train_examples: int  # in half B
    weak_labels_job: str  # the job store's key of the weak labels (predict/<key>.json), example by example

    def student(self, loss: str) -> StudentResult | None:
        return next((s for s in self.students if s.loss == loss), None)


@dataclass(frozen=True)
class De:
    """Differential elicitation on one target with its 95 % prompt-bootstrap interval; NaN where
    A_tt is 0 (as in `genies run`)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class DeReference:
    """What a target's DEs are measured against: the strong model's zero-shot accuracy on the
    target's test split and its target-tuned capability A_tt on the reference's (the winning
    candidate's), each with its interval."""

    target_reference: str
    baseline: Accuracy
    baseline_method: str
    target_tuned: Accuracy
    target_tuned_method: str


@dataclass(frozen=True)
class TargetStudent:
    loss: str
    accuracy: Accuracy  # generalization accuracy on the target's test split
    de: De | None = None  # None: no DE references (--target-tuned none, their jobs failed, or an older file)


@dataclass(frozen=True)
class TargetResult:
    source: str
    target: str
    students: tuple[TargetStudent, ...]
    ceiling: Accuracy | None
    ceiling_de: De | None = None
    reference: DeReference | None = None  # None: DE not computed

    def student(self, loss: str) -> TargetStudent | None:
        return next((s for s in self.students if s.loss == loss), None)


@dataclass(frozen=True)
class W2SRun:
    """What was run: models, methods, losses and the settings that change the numbers."""

    weak: str
    strong: str
    weak_fingerprint: str
    strong_fingerprint: str
    method: str
    weak_method: str
    losses: tuple[str, ...]
    aux_max: float
    labels: str
    preset: str
    seed: int
    shifts: str
    max_train: int | None
    max_eval: int | None
    hyperparameters: Mapping[str, Mapping[str, Any]]  # by role: weak, ceiling, student <loss>, DE's references
    wall_seconds: float
    target_tuned: str = "none"  # DE's target-tuned mode (`genies run --target-tuned`); files before DE: none


@dataclass(frozen=True)
class W2SResults:
    run: W2SRun
    sources: tuple[SourceResult, ...]
    targets: tuple[TargetResult, ...]
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudentChoice:
    """A student's own label of a half-B example, derived as the weak labels are: the response
    it ranks first and its mean probability of beating each other one."""

    loss: str
    preferred: int
    probability: float


@dataclass(frozen=True)
class LabelledExample:
    """A half-B example whose weak label is wrong, with the truth and what each student chose."""

    index: int  # in half B
    prompt: str
    responses: tuple[str, ...]
    truth: int
    weak: int
    weak_confidence: float
    students: tuple[StudentChoice, ...]


@dataclass(frozen=True)
class SourceExamples:
    source: str
    half_b: int  # examples in half B
    wrong_weak_labels: tuple[LabelledExample, ...] = field(default=())

    def overruled(self, loss: str) -> list[LabelledExample]:
        """The examples where the `loss` student picks the truth against its wrong weak label."""
        return [e for e in self.wrong_weak_labels for s in e.students if s.loss == loss and s.preferred == e.truth]

    def followed(self, loss: str) -> list[LabelledExample]:
        """The examples where the `loss` student picks the same wrong response as its weak label."""
        return [e for e in self.wrong_weak_labels for s in e.students if s.loss == loss and s.preferred == e.weak]


def _hits(pred: Predictions, n_prompts: int, seed: int) -> intervals.PromptHits:
    return intervals.PromptHits.from_pairs(metrics.pair_correct(pred.p_preferred, seed), pred.example_index,
                                           n_prompts)


def _accuracy(pred: Predictions, reps: np.ndarray, seed: int) -> Accuracy:
    low, high = intervals.percentile_interval(reps)
    return Accuracy(metrics.accuracy(pred.p_preferred, seed), low, high)


def pgr_text(p: Pgr | None) -> str:
    """PGR as the tables show it: `undefined` when ceiling <= weak, `-` when it cannot be computed."""
    return "-" if p is None else "undefined" if not p.defined else number(p.value)


def pgr(weak: float, student: float, ceiling: float) -> float | None:
    """(student - weak) / (ceiling - weak); None when ceiling <= weak."""
    return None if ceiling <= weak else (student - weak) / (ceiling - weak)


def compare_on_split(preds: Sequence[Predictions], n_prompts: int, distribution: str, split: str,
                     seed: int) -> tuple[list[Accuracy], list[np.ndarray]]:
    """Each prediction's accuracy with its interval, and its replicates over shared prompt draws."""
    draws = intervals.prompt_draws(n_prompts, seed, distribution, split)
    reps = [_hits(p, n_prompts, seed).resampled_accuracy(draws) for p in preds]
    return [_accuracy(p, r, seed) for p, r in zip(preds, reps)], reps


def _pgr(w: Accuracy, s: Accuracy, c: Accuracy, rw: np.ndarray, rs: np.ndarray, rc: np.ndarray) -> Pgr:
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = np.where(rc > rw, (rs - rw) / np.where(rc > rw, rc - rw, 1.0), np.nan)
    point = pgr(w.value, s.value, c.value)
    low, high = intervals.percentile_interval(replicates) if point is not None else (None, None)
    if low is not None and not np.isfinite(low):
        low, high = None, None
    return Pgr(point, low, high, float(np.mean(~np.isfinite(replicates))))


def source_result(source: str, n_prompts: int, weak: Predictions | None, students: Mapping[str, Predictions],
                  ceiling: Predictions | None, weak_label_accuracy: float | None, train_examples: int,
                  weak_labels_job: str, seed: int) -> SourceResult:
    """The source's accuracies (each None or left out where its jobs failed) and each student's PGR."""
    named = {name: p for name, p in (("weak", weak), ("ceiling", ceiling), *students.items()) if p is not None}
    accs, reps = compare_on_split(list(named.values()), n_prompts, source, "test", seed)
    acc, rep = dict(zip(named, accs)), dict(zip(named, reps))
    w, c = acc.pop("weak", None), acc.pop("ceiling", None)
    results = tuple(StudentResult(loss, a, None if w is None or c is None else
                                  _pgr(w, a, c, rep["weak"], rep[loss], rep["ceiling"])) for loss, a in acc.items())
    pairs = len(next(iter(named.values())).p_preferred) if named else 0
    return SourceResult(source, pairs, w, c, results, weak_label_accuracy, train_examples, weak_labels_job)


@dataclass(frozen=True)
class DePredictions:
    """The stored predictions a target's DEs need: the strong model's zero-shot predictions on the
    target's test split and each target-tuned candidate's on the reference's (by method label)."""

    target_reference: str
    reference_prompts: int  # test examples of the reference
    baseline_method: str
    baseline: Predictions
    target_tuned: Mapping[str, Predictions]

    def __post_init__(self) -> None:
        if not self.target_tuned:
            raise ValueError("DE needs at least one target-tuned candidate's predictions")


def _de(gen: intervals.PromptHits, gen_accuracy: Accuracy, base: intervals.PromptHits, base_accuracy: Accuracy,
        tt: intervals.PromptHits, tt_accuracy: Accuracy, target_draws: np.ndarray, reference_draws: np.ndarray) -> De:
    """DE and its interval exactly as `genies.pipeline.results.result_row` computes a row's, from
    the prompt hits of the generalizing predictions, the baseline and the target-tuned winner."""
    reps = intervals.de_replicates(gen, base, tt, target_draws, reference_draws)
    low, high = intervals.percentile_interval(reps)
    return De(metrics.differential_elicitation(gen_accuracy.value, base_accuracy.value, tt_accuracy.value), low, high)


def target_result(source: str, target: str, n_prompts: int, students: Mapping[str, Predictions],
                  ceiling: Predictions | None, seed: int, references: DePredictions | None = None) -> TargetResult:
    """Each student's and the ceiling's generalization accuracy on the target's test split and,
    with `references`, their DE (the target-tuned winner: the candidate with the best accuracy on
    the reference, the first among ties, as `genies run` picks it)."""
    named = {name: p for name, p in (("ceiling", ceiling), *students.items()) if p is not None}
    if references is not None:
        named["baseline"] = references.baseline
    accs, _ = compare_on_split(list(named.values()), n_prompts, target, "test", seed)
    acc = dict(zip(named, accs))
    de: dict[str, De] = {}
    reference = None
    if references is not None:
        ref = references.target_reference
        tt_accs = dict(zip(references.target_tuned, compare_on_split(
            list(references.target_tuned.values()), references.reference_prompts, ref, "test", seed)[0]))
        winner = max(tt_accs, key=lambda name: tt_accs[name].value)
        base = acc.pop("baseline")
        reference = DeReference(ref, base, references.baseline_method, tt_accs[winner], winner)
        target_draws = intervals.prompt_draws(n_prompts, seed, target, "test")
        reference_draws = intervals.prompt_draws(references.reference_prompts, seed, ref, "test")
        base_hits = _hits(references.baseline, n_prompts, seed)  # shared by every student and the ceiling
        tt_hits = _hits(references.target_tuned[winner], references.reference_prompts, seed)
        de = {name: _de(_hits(named[name], n_prompts, seed), a, base_hits, base, tt_hits, tt_accs[winner],
                        target_draws, reference_draws)
              for name, a in acc.items()}
    c = acc.pop("ceiling", None)
    return TargetResult(source, target, tuple(TargetStudent(loss, a, de.get(loss)) for loss, a in acc.items()), c,
                        de.get("ceiling"), reference)


def weak_label_accuracy(examples: Sequence[Any], relabel: Callable[[Sequence[Any]], Sequence[Any]]) -> float:
    """The share of examples whose weak label (`relabel`) is their ground truth."""
    weak = relabel(examples)
    return float(np.mean([a.preferred == b.preferred for a, b in zip(examples, weak, strict=True)]))
