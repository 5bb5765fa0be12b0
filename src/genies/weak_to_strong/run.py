"""`genies.w2s(config)`: plan both stages, run them through an executor, compute the metrics,
write `w2s.json` in the run directory."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from genies._io import write_atomic
from genies.data.home import genies_home
from genies.data.schema import Distribution
from genies.errors import ConfigError
from genies.interventions.base import Intervention
from genies.models.base import LoadedModel
from genies.pipeline.api import resolve_data
from genies.pipeline.executor import JobEnv, LocalExecutor, RunLog
from genies.pipeline.plan import PlanBuilder, configure_methods
from genies.pipeline.run_dir import plain_json
from genies.pipeline.store import JobStore
from genies.pipeline.views import WeakLabels
from genies.weak_to_strong import metrics as M
from genies.weak_to_strong.config import W2SConfig
from genies.weak_to_strong.plan import CEILING, STUDENT, WEAK, W2SPlan, build_w2s_plan, halves

RESULTS_FILE = "w2s.json"


@dataclass(frozen=True)
class ModelHandle:
    """A model as the planner needs it (name, fingerprint, precision) and a loader run only when a
    job first needs the weights."""

    name: str
    fingerprint: str
    precision: Mapping[str, Any]
    load: Callable[[], LoadedModel]

    @classmethod
    def of(cls, lm: LoadedModel) -> ModelHandle:
        return cls(lm.name, lm.fingerprint, lm.precision_key(), lambda: lm)

    @classmethod
    def resolve(cls, spec: str, config: W2SConfig) -> ModelHandle:
        from genies.models.loading import load_folder, model_fingerprint

        folder, fingerprint = model_fingerprint(spec)
        placement = config.placement
        return cls(spec, fingerprint, placement.precision_key(),
                   lambda: load_folder(folder, name=spec, placement=placement))


def _methods(config: W2SConfig) -> dict[str, Intervention]:
    """The weak supervisor's method, the student's (with its loss) and the ceiling's (xent)."""
    weak = configure_methods([config.weak_spec], config.preset, _overrides(config, config.weak_spec))
    ceiling = configure_methods([config.method], config.preset, _overrides(config, config.method))
    student_overrides = _overrides(config, config.method)
    name = config.method.partition(":")[0]
    hparams = {h.name for h in ceiling[config.method].describe()}
    if "loss" in hparams:
        student_overrides.setdefault(name, {}).update(loss=config.loss, aux_max=config.aux_max)
    elif config.loss != "xent":
        raise ConfigError(f"--loss {config.loss} needs a reward-model student (lora, prompt_tuning, full_fine_tune); "
                          f"{config.method} fits on the weak labels as they are (use --loss xent)")
    student = configure_methods([config.method], config.preset, student_overrides)
    methods = {WEAK: weak[config.weak_spec], STUDENT: student[config.method], CEILING: ceiling[config.method]}
    if not methods[STUDENT].needs_training_data:
        raise ConfigError(f"{config.method} reads no training data, so it cannot be a student")
    if methods[WEAK].reads_eval_labels:
        raise ConfigError(f"{config.weak_spec} reads the labels of what it scores, so it cannot label the student's "
                          "half: choose another --weak-method")
    return methods


def _overrides(config: W2SConfig, spec: str) -> dict[str, dict[str, Any]]:
    name = spec.partition(":")[0]
    return {name: dict(config.hparams[name])} if name in config.hparams else {}


def w2s(config: W2SConfig, *, weak_lm: LoadedModel | None = None, strong_lm: LoadedModel | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        executor: LocalExecutor | None = None) -> M.W2SResults:
    """Run the weak-to-strong experiment `config` and write `config.out/w2s.json`.

    `weak_lm` / `strong_lm` run already loaded models instead of `config.weak` / `config.strong`;
    `distributions` replaces the data on disk (tests, notebooks). Every job is cached in the job
    store, so a rerun resumes and a finished run returns in seconds."""
    started = time.time()
    methods = _methods(config)
    budget = config.example_budget
    data = resolve_data(config.shifts, data_root=config.data_root, distributions=distributions,
                        synthetic_size=budget.synthetic_size, seed=config.seed)
    if not data.shifts:
        raise ConfigError("the shift list is empty")
    limited: dict[str, Distribution] = {}

    def distribution(name: str) -> Distribution:
        if name not in limited:
            limited[name] = data.load(name).limited(budget.max_train, budget.max_eval, seed=config.seed)
        return limited[name]

    def data_hash(name: str, split: str) -> str:
        return distribution(name).content_hash(split)

    def handle(lm: LoadedModel | None, spec: str, *users: Intervention) -> ModelHandle:
        if lm is not None:
            return ModelHandle.of(lm)
        if not any(m.uses_run_model for m in users):  # e.g. a tfidf supervisor: the model is never resolved
            return ModelHandle(spec, "", {}, lambda: None)
        return ModelHandle.resolve(spec, config)

    weak = handle(weak_lm, config.weak, methods[WEAK])
    strong = handle(strong_lm, config.strong, methods[STUDENT], methods[CEILING])

    def builder(handle: ModelHandle, specs: tuple[str, ...]) -> PlanBuilder:
        return PlanBuilder({s: methods[s] for s in specs}, seed=config.seed, model_fingerprint=handle.fingerprint,
                           precision=handle.precision, data_hash=data_hash)

    plan = build_w2s_plan(data.shifts, builder(weak, (WEAK,)), builder(strong, (STUDENT, CEILING)),
                          soft=config.labels == "soft", seed=config.seed)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.cache_dir)
    log = RunLog(out / "log.txt")
    log.write(f"start w2s: {plan.n_jobs} jobs in two stages (weak {weak.name}, strong {strong.name})")
    runner = executor or LocalExecutor()
    records = []
    for stage, handle in zip(plan.stages, (weak, strong)):
        env = JobEnv(load_model=handle.load, distribution=distribution, store=store, seed=config.seed,
                     activation_store=_activation_store())
        records += runner.execute(stage, env, log)
    failed = tuple(f"{r.label}: {r.error}" for r in records if r.status == "failed")
    run_info = {"weak": weak.name, "strong": strong.name, "weak_fingerprint": weak.fingerprint,
                "strong_fingerprint": strong.fingerprint, "method": methods[STUDENT].label,
                "weak_method": methods[WEAK].label, "loss": config.loss, "aux_max": config.aux_max,
                "labels": config.labels, "preset": config.preset, "seed": config.seed, "shifts": data.label,
                "max_train": budget.max_train, "max_eval": budget.max_eval,
                "hyperparameters": {**plan.stages[0].hparams, **plan.stages[1].hparams},
                "wall_seconds": round(time.time() - started, 1)}
    results = compute(plan, store, distribution, config.seed, run_info, failed)
    write_atomic(out / RESULTS_FILE, json.dumps(plain_json(asdict(results)), indent=1) + "\n")
    log.write(f"finish w2s: {len(results.sources)} sources, {len(failed)} failed jobs")
    return results


def _activation_store() -> Any:
    from genies.models.activations import ActivationStore

    return ActivationStore(genies_home() / "activations")


def compute(plan: W2SPlan, store: JobStore, distribution: Callable[[str], Distribution], seed: int,
            run_info: Mapping[str, Any], failed: tuple[str, ...] = ()) -> M.W2SResults:
    """The metrics of every source and target whose jobs are all stored (the others failed)."""
    def stored(*jobs: Any) -> bool:
        return all(store.has_predictions(j.key) for j in jobs)

    sources = []
    half_b = halves(seed)[1]
    for jobs in plan.sources:
        if not stored(jobs.weak_labels, jobs.weak, jobs.student, jobs.ceiling):
            continue
        dist = distribution(jobs.source)
        part = half_b.select(dist.train, f"{jobs.source}/train")
        weak_labels = store.load_predictions(jobs.weak_labels.key)
        relabel = WeakLabels(jobs.weak_labels.key, soft=False)
        sources.append(M.source_result(jobs.source, dist, *(store.load_predictions(j.key) for j in
                                                             (jobs.weak, jobs.student, jobs.ceiling)),
                                       M.weak_label_accuracy(part, lambda ex: relabel.apply(ex, weak_labels)),
                                       len(part), jobs.weak_labels.key, seed))
    targets = [M.target_result(t.source, t.target, len(distribution(t.target).test),
                               store.load_predictions(t.student.key), store.load_predictions(t.ceiling.key), seed)
               for t in plan.targets if stored(t.student, t.ceiling)]
    return M.W2SResults(dict(run_info), tuple(sources), tuple(targets), failed)


def print_summary(results: M.W2SResults, console: Console) -> None:
    """The per-source table (weak, student, ceiling, PGR with its interval) and the targets'."""
    from rich.markup import escape

    from genies.commands._format import Column, interval, number, print_table

    def acc(a: M.Accuracy) -> str:
        return number(a.value)

    def pgr(r: M.SourceResult) -> str:
        return "undefined" if not r.pgr.defined else number(r.pgr.value)

    def pgr_ci(r: M.SourceResult) -> str:
        return "-" if r.pgr.low is None else interval(r.pgr.low, r.pgr.high)

    run = results.run
    title = f"weak-to-strong: {run['weak']} -> {run['strong']}, {run['method']} ({run['loss']}, {run['labels']} labels)"
    print_table(console, escape(title), [
        Column("source", lambda r: escape(r.source)),
        Column("weak", lambda r: acc(r.weak), "number"),
        Column("labels", lambda r: number(r.weak_label_accuracy), "number", drop=2),
        Column("student", lambda r: acc(r.student), "number"),
        Column("ceiling", lambda r: acc(r.ceiling), "number"),
        Column("PGR", pgr, "number"),
        Column("PGR 95% CI", pgr_ci, "number", drop=1),
    ], results.sources, notes=["accuracy on each source's test split; labels: share of the student's half "
                               "whose weak label (first-ranked response) is the preferred one (chance: 1 / "
                               "responses per prompt); PGR = (student - weak) / (ceiling - weak)"])
    if results.targets:
        print_table(console, "generalization accuracy on the targets", [
            Column("source", lambda t: escape(t.source)),
            Column("target", lambda t: escape(t.target)),
            Column("student", lambda t: acc(t.student), "number"),
            Column("student CI", lambda t: interval(t.student.low, t.student.high), "number", drop=1),
            Column("ceiling", lambda t: acc(t.ceiling), "number"),
            Column("ceiling CI", lambda t: interval(t.ceiling.low, t.ceiling.high), "number", drop=1),
        ], results.targets)
    for line in results.failed:
        console.print(f"failed: {escape(line)}", highlight=False, style="red")
