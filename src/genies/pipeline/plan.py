"""Turn (interventions, shifts) into the smallest set of fit and predict jobs.

- The zero-shot baseline is fitted once (it reads no training data) and predicts each target once.
- Target-tuned capability is computed once per target reference R: `default` fits LoRA on R's
  train split and predicts R's test split; `best` does the same for every candidate and keeps
  the maximum (docs/methods.md#target-tuned-capability).
- Each intervention is fitted once per source and predicts every target of that source plus
  the source's own test split.
- With target mixing (`--mix-target`), each intervention is also fitted, per shift and fraction,
  on the source's train split with that fraction replaced by the target's train examples
  (`TargetMix`, seeded by the run seed), and predicts the target and the source like the
  ordinary fit; baseline and target-tuned jobs are the ordinary cell's.
Jobs are deduplicated by content hash, so a LoRA fitted on alpaca_mmlu as a source and as a
target reference is one job, and so is any prediction asked for twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genies.data.shift import Shift
from genies.interventions.base import Intervention
from genies.interventions.registry import load_intervention
from genies.pipeline.jobs import FitJob, PredictJob, fit_key, predict_key, stable_json
from genies.pipeline.views import Part, TargetMix, TrainView

TARGET_TUNED_DEFAULT = ("lora",)
TARGET_TUNED_BEST = ("lora", "prompt_tuning", "mms", "few_shot", "zero_shot")
BASELINE = "zero_shot"


@dataclass(frozen=True)
class Cell:
    """One (intervention, shift) row of the results and the predictions it is computed from."""

    intervention: str
    shift: Shift
    generalization: PredictJob
    source_id: PredictJob
    baseline: PredictJob
    target_tuned: tuple[PredictJob, ...]
    target_mix: float = 0.0  # the fraction of the training set drawn from the target (0: the ordinary cell)


@dataclass
class Plan:
    fits: dict[str, FitJob] = field(default_factory=dict)
    predicts: dict[str, PredictJob] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)

    def predicts_of(self, fit: FitJob) -> list[PredictJob]:
        return [p for p in self.predicts.values() if p.fit.key == fit.key]

    @property
    def n_jobs(self) -> int:
        return len(self.fits) + len(self.predicts)


def configure_methods(specs: Sequence[str], preset: str | None,
                      overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Intervention]:
    """Each spec (`mms`, `legacy:PATH`) configured with the preset and its `--set` overrides
    (keyed by the registered name), parsed and checked: every configuration error surfaces here,
    before a job starts."""
    overrides = dict(overrides or {})
    methods = {}
    for spec in dict.fromkeys(specs):
        name = spec.partition(":")[0]
        methods[spec] = load_intervention(spec, preset, **dict(overrides.get(name, {})))
    unused = sorted(set(overrides) - {spec.partition(":")[0] for spec in specs})
    if unused:
        from genies.errors import ConfigError

        raise ConfigError(f"--set names {', '.join(map(repr, unused))}, which the run does not use "
                          f"(it runs {', '.join(sorted(methods))})")
    return methods


class PlanBuilder:
    """Adds fit and predict jobs to a `Plan`, each once by content hash. `build_plan` uses it for
    `genies run`; sweeps and other experiments use it for their own jobs (a fit on part of a
    source, a prediction on a held-out part) so they share keys, store and executors with runs.

    `data_hash(distribution, split)` gives a split's content hash (after any example caps), so the
    keys change when the data does; `precision` is the model's (`Placement.precision_key()`)."""

    def __init__(self, methods: Mapping[str, Intervention], *, seed: int, model_fingerprint: str,
                 precision: Mapping[str, Any], data_hash: Callable[[str, str], str]) -> None:
        self.plan = Plan()
        self.methods, self.seed, self.data_hash = methods, seed, data_hash
        self.model_fingerprint, self.precision = model_fingerprint, dict(precision)

    def fit(self, spec: str, source: str, view: TrainView | None = None) -> FitJob:
        """Fit method `spec` on `source`'s train split, or on the data `view` derives from it."""
        method = self.methods[spec]
        self.plan.hparams.setdefault(method.label, method.hparams())
        src = source if method.needs_training_data else None
        view = view if src is not None else None  # a method that reads no data ignores what it would read
        own_models = not method.uses_run_model  # an external judge: its code_version names its models
        key = fit_key(method=method, model_fingerprint="" if own_models else self.model_fingerprint,
                      precision={} if own_models else self.precision, seed=self.seed,
                      source_hash=None if src is None else self._train_hash(src, view))
        return self.plan.fits.setdefault(key, FitJob(method.label, method.name, stable_json(method.hparams()), src,
                                                     key, view))

    def predict(self, job: FitJob, distribution: str, split: str = "test", part: Part | None = None) -> PredictJob:
        """Score `distribution`'s `split` (or a seeded `part` of it) with the state `job` fits."""
        key = predict_key(fit=job, distribution_hash=f"{distribution}:{self.data_hash(distribution, split)}",
                          split=split, part=part)
        return self.plan.predicts.setdefault(key, PredictJob(job, distribution, split, key, part))

    def _train_hash(self, source: str, view: TrainView | None) -> str:
        plain = f"{source}:{self.data_hash(source, 'train')}"  # the hash every whole-split fit has had
        if view is None:
            return plain
        read = {name: self.data_hash(name, "train") for name in view.distributions()}
        return f"{plain}:{stable_json([view.key(), read])}"


def build_plan(
    *,
    interventions: Sequence[str],
    shifts: Sequence[Shift],
    methods: Mapping[str, Intervention],
    seed: int,
    model_fingerprint: str,
    precision: Mapping[str, Any],
    data_hash: Callable[[str, str], str],
    baseline: str = BASELINE,
    target_tuned: Sequence[str] = TARGET_TUNED_DEFAULT,
    mix_target: Sequence[float] = (),
) -> Plan:
    """Build the plan from configured `methods` (by spec, as `configure_methods` returns them);
    the other arguments are `PlanBuilder`'s."""
    jobs = PlanBuilder(methods, seed=seed, model_fingerprint=model_fingerprint, precision=precision,
                       data_hash=data_hash)
    for shift in shifts:
        base = jobs.predict(jobs.fit(baseline, shift.target), shift.target)
        reference = tuple(jobs.predict(jobs.fit(name, shift.target_reference), shift.target_reference)
                          for name in target_tuned)
        for spec in interventions:
            for fraction in (0.0, *mix_target):
                view = TrainView(mix=TargetMix(shift.target, fraction, seed)) if fraction else None
                trained = jobs.fit(spec, shift.source, view)
                jobs.plan.cells.append(Cell(methods[spec].label, shift, jobs.predict(trained, shift.target),
                                            jobs.predict(trained, shift.source), base, reference, fraction))
    return jobs.plan
