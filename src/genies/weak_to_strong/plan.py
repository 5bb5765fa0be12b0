"""The jobs of a weak-to-strong run, in two stages that each executor runs like any plan.

Per source, with halves A = Part(0, 1/2, seed) and B = Part(1/2, 1, seed) of its train split:

- stage 1 (the weak model): the weak supervisor fits on A's ground truth, labels B (a prediction
  on B) and is scored on the source's test split;
- stage 2 (the strong model): one student per loss fits on B with the weak labels (its key names
  the labelling job's key), the ceiling on B's ground truth; all are scored on the source's test
  split and on each target's, and each student also on B itself (the report's examples where it
  overrules or follows a wrong weak label); and, for DE, each target's references as `genies run`
  plans them: the strong model's zero-shot baseline on the target and each target-tuned
  candidate fitted on the target's reference (the same keys, so a `genies run` of the strong
  model with a shared cache has them already).

A student needs its weak labels stored before it can fit, hence the stages; within a stage jobs
are deduplicated by content hash as in `genies run` (two shifts from one source share the weak
supervisor, the students and the ceiling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genies.data.shift import Shift
from genies.pipeline.jobs import PredictJob
from genies.pipeline.plan import Plan, PlanBuilder
from genies.pipeline.views import Part, TrainView, WeakLabels

WEAK, CEILING, BASELINE = "weak", "ceiling", "baseline"  # method specs; also `student(loss)`, `reference(name)`


def student(loss: str) -> str:
    """The method spec of the student trained with `loss`."""
    return f"student {loss}"


def reference(name: str) -> str:
    """The method spec of the target-tuned candidate `name` (`lora`, ...)."""
    return f"target-tuned {name}"


def halves(seed: int) -> tuple[Part, Part]:
    """The weak supervisor's half A and the student's half B of a train split."""
    return Part(0.0, 0.5, seed), Part(0.5, 1.0, seed)


@dataclass(frozen=True)
class StudentJobs:
    loss: str
    test: PredictJob  # on the source's test split
    half_b: PredictJob  # on half B: its own labels of the examples it trained on


@dataclass(frozen=True)
class SourceJobs:
    source: str
    weak_labels: PredictJob  # the weak supervisor's predictions on half B
    weak: PredictJob  # ... on the source's test split
    students: tuple[StudentJobs, ...]
    ceiling: PredictJob


@dataclass(frozen=True)
class TargetJobs:
    source: str
    target: str
    students: tuple[tuple[str, PredictJob], ...]  # (loss, prediction on the target's test split)
    ceiling: PredictJob
    target_reference: str
    baseline: PredictJob | None = None  # the strong model's zero-shot on the target (None: no DE)
    target_tuned: tuple[PredictJob, ...] = ()  # each candidate on the reference's test split


@dataclass(frozen=True)
class W2SPlan:
    stages: tuple[Plan, Plan]
    sources: tuple[SourceJobs, ...]
    targets: tuple[TargetJobs, ...]

    @property
    def n_jobs(self) -> int:
        return sum(stage.n_jobs for stage in self.stages)


def build_w2s_plan(shifts: Sequence[Shift], weak: PlanBuilder, strong: PlanBuilder, *, losses: Sequence[str],
                   soft: bool, seed: int, target_tuned: Sequence[str] = ()) -> W2SPlan:
    """`weak` holds the method spec WEAK, `strong` CEILING and `student(loss)` for each of `losses`
    (the same method, each student with its own loss) and, when `target_tuned` names candidates
    (DE), BASELINE and `reference(name)` for each."""
    a, b = halves(seed)
    sources: dict[str, SourceJobs] = {}
    targets: dict[tuple[str, str], TargetJobs] = {}
    for shift in shifts:
        src = shift.source
        if src not in sources:
            supervisor = weak.fit(WEAK, src, TrainView(part=a))
            labels = weak.predict(supervisor, src, "train", b)
            view = TrainView(part=b, labels=WeakLabels(labels.key, soft))
            fits = [(loss, strong.fit(student(loss), src, view)) for loss in losses]
            ceiling = strong.fit(CEILING, src, TrainView(part=b))
            sources[src] = SourceJobs(src, labels, weak.predict(supervisor, src),
                                      tuple(StudentJobs(loss, strong.predict(fit, src), strong.predict(fit, src, "train", b))
                                            for loss, fit in fits),
                                      strong.predict(ceiling, src))
        jobs = sources[src]
        if shift.target != src and (src, shift.target) not in targets:
            ref = shift.target_reference
            targets[(src, shift.target)] = TargetJobs(
                src, shift.target, tuple((s.loss, strong.predict(s.test.fit, shift.target)) for s in jobs.students),
                strong.predict(jobs.ceiling.fit, shift.target), ref,
                strong.predict(strong.fit(BASELINE, shift.target), shift.target) if target_tuned else None,
                tuple(strong.predict(strong.fit(reference(name), ref), ref) for name in target_tuned))
    return W2SPlan((weak.plan, strong.plan), tuple(sources.values()), tuple(targets.values()))
