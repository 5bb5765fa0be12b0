"""Turn (interventions, shifts) into the smallest set of fit and predict jobs.

- The zero-shot baseline is fitted once (it reads no training data) and predicts each target once.
- Target-tuned capability is computed once per target reference R: `default` fits LoRA on R's
  train split and predicts R's test split; `best` does the same for every candidate and keeps
  the maximum (SPEC part A item 5).
- Each intervention is fitted once per source and predicts every target of that source plus
  the source's own test split.
Jobs are deduplicated by content hash, so a LoRA fitted on alpaca_mmlu as a source and as a
target reference is one job, and so is any prediction asked for twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genies.data.shift import Shift
from genies.interventions.base import get_intervention
from genies.pipeline.jobs import FitJob, PredictJob, code_version, fit_key, predict_key, stable_json

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


def resolve_hparams(name: str, preset: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters an intervention will run with: its preset plus explicit overrides,
    normalised through JSON so the hash sees exactly what the state will record."""
    cls = get_intervention(name)
    instance = cls.from_preset(preset if preset in cls.presets else None, **dict(overrides or {}))
    import json

    return json.loads(stable_json(instance.hparams()))


def build_plan(
    *,
    interventions: Sequence[str],
    shifts: Sequence[Shift],
    preset: str,
    seed: int,
    model_fingerprint: str,
    data_hash: Callable[[str, str], str],
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str = BASELINE,
    target_tuned: Sequence[str] = TARGET_TUNED_DEFAULT,
) -> Plan:
    """Build the plan. `data_hash(distribution, split)` gives a split's content hash (after any
    example caps), so the keys change when the data does."""
    hparams = dict(hparams or {})
    plan = Plan()

    def fit(name: str, source: str) -> FitJob:
        cls = get_intervention(name)
        if name not in plan.hparams:
            plan.hparams[name] = resolve_hparams(name, preset, hparams.get(name))
        hp = stable_json(plan.hparams[name])
        src = source if cls.needs_training_data else None
        key = fit_key(model_fingerprint=model_fingerprint, intervention=name, hparams_json=hp,
                      source_hash=None if src is None else f"{src}:{data_hash(src, 'train')}",
                      seed=seed, code=code_version(cls))
        return plan.fits.setdefault(key, FitJob(name, hp, src, key))

    def predict(job: FitJob, distribution: str, split: str = "test") -> PredictJob:
        key = predict_key(fit=job, distribution_hash=f"{distribution}:{data_hash(distribution, split)}",
                          split=split)
        return plan.predicts.setdefault(key, PredictJob(job, distribution, split, key))

    for shift in shifts:
        base = predict(fit(baseline, shift.target), shift.target)
        reference = tuple(predict(fit(name, shift.target_reference), shift.target_reference)
                          for name in target_tuned)
        for name in interventions:
            trained = fit(name, shift.source)
            plan.cells.append(Cell(name, shift, predict(trained, shift.target),
                                   predict(trained, shift.source), base, reference))
    return plan
