"""`genies.w2s(config)`: plan both stages, run them through an executor, compute the metrics,
write `w2s.json` in the run directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from genies.data.home import genies_home
from genies.data.schema import Distribution
from genies.errors import ConfigError
from genies.interventions.base import Intervention
from genies.interventions.scores import Predictions
from genies.models.base import LoadedModel
from genies.pipeline.api import TARGET_TUNED_CANDIDATES, resolve_data
from genies.pipeline.executor import JobEnv, LocalExecutor, RunLog
from genies.pipeline.jobs import PredictJob
from genies.pipeline.plan import BASELINE as BASELINE_METHOD
from genies.pipeline.plan import PlanBuilder, configure_methods
from genies.pipeline.store import JobStore
from genies.pipeline.views import WeakLabels, weak_choices
from genies.rounding import number
from genies.weak_to_strong import metrics as M
from genies.weak_to_strong.config import W2SConfig
from genies.weak_to_strong.files import write_results
from genies.weak_to_strong.plan import (
    BASELINE,
    CEILING,
    WEAK,
    TargetJobs,
    W2SPlan,
    build_w2s_plan,
    halves,
    reference,
    student,
)


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
    """The weak supervisor's method, one student per loss, the ceiling (xent) and DE's zero-shot
    baseline and target-tuned candidates (configured as `genies run` configures them), by plan spec."""
    weak = configure_methods([config.weak_spec], config.preset, _overrides(config, config.weak_spec))
    ceiling = configure_methods([config.method], config.preset, _overrides(config, config.method))[config.method]
    name = config.method.partition(":")[0]
    takes_loss = "loss" in {h.name for h in ceiling.describe()}
    methods = {WEAK: weak[config.weak_spec], CEILING: ceiling}
    for loss in config.losses:
        if not takes_loss and loss != "xent":
            raise ConfigError(f"--loss {loss} needs a reward-model student (lora, prompt_tuning, full_fine_tune); "
                              f"{config.method} fits on the weak labels as they are (use --loss xent)")
        overrides = _overrides(config, config.method)
        if takes_loss:
            overrides.setdefault(name, {}).update(loss=loss, aux_max=config.aux_max)
        methods[student(loss)] = configure_methods([config.method], config.preset, overrides)[config.method]
    if config.target_tuned != "none":
        for spec, name in ((BASELINE, BASELINE_METHOD),
                           *((reference(c), c) for c in TARGET_TUNED_CANDIDATES[config.target_tuned])):
            methods[spec] = configure_methods([name], config.preset, _overrides(config, name))[name]
    if not ceiling.needs_training_data:
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
    _check_placements(config, methods, weak_lm, strong_lm)
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
    strong_specs = tuple(s for s in methods if s != WEAK)  # ceiling, students, DE's baseline and references
    strong = handle(strong_lm, config.strong, *(methods[s] for s in strong_specs))

    def builder(handle: ModelHandle, specs: tuple[str, ...]) -> PlanBuilder:
        return PlanBuilder({s: methods[s] for s in specs}, seed=config.seed, model_fingerprint=handle.fingerprint,
                           precision=handle.precision, data_hash=data_hash)

    plan = build_w2s_plan(data.shifts, builder(weak, (WEAK,)), builder(strong, strong_specs),
                          losses=config.losses, soft=config.labels == "soft", seed=config.seed,
                          target_tuned=TARGET_TUNED_CANDIDATES[config.target_tuned])
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
    run_info = M.W2SRun(weak.name, strong.name, weak.fingerprint, strong.fingerprint, methods[CEILING].label,
                        methods[WEAK].label, config.losses, config.aux_max, config.labels, config.preset, config.seed,
                        data.label, budget.max_train, budget.max_eval,
                        {role: methods[role].hparams() for role in (WEAK, *strong_specs)},
                        round(time.time() - started, 1), config.target_tuned)
    results = compute(plan, store, distribution, config.seed, run_info, failed)
    write_results(out, results, collect_examples(plan, store, distribution, config.seed))
    log.write(f"finish w2s: {len(results.sources)} sources, {len(failed)} failed jobs")
    return results


def _activation_store() -> Any:
    from genies.models.activations import ActivationStore

    return ActivationStore(genies_home() / "activations")


def _check_placements(config: W2SConfig, methods: dict[str, Intervention], weak_lm: LoadedModel | None,
                      strong_lm: LoadedModel | None) -> None:
    """Refuse, before data or weights are touched, a device this machine lacks or a method that
    cannot work on its model's placement: one line, as `genies run` does."""
    if weak_lm is None or strong_lm is None:
        config.placement.check()
    for role, method in methods.items():
        lm = weak_lm if role == WEAK else strong_lm
        method.check_placement(lm.placement if lm is not None and lm.placement is not None else config.placement)


def _loaded(store: JobStore, job: PredictJob) -> Predictions | None:
    return store.load_predictions(job.key) if store.has_predictions(job.key) else None


def compute(plan: W2SPlan, store: JobStore, distribution: Callable[[str], Distribution], seed: int,
            run_info: M.W2SRun, failed: tuple[str, ...] = ()) -> M.W2SResults:
    """The metrics of every source and target with at least one stored prediction: what failed
    is None or left out (`genies.weak_to_strong.metrics`), so a partial run still has its table."""
    sources = []
    half_b = halves(seed)[1]
    for jobs in plan.sources:
        weak, ceiling = _loaded(store, jobs.weak), _loaded(store, jobs.ceiling)
        students = {s.loss: p for s in jobs.students if (p := _loaded(store, s.test)) is not None}
        if weak is None and ceiling is None and not students:
            continue
        dist = distribution(jobs.source)
        part = half_b.select(dist.train, f"{jobs.source}/train")
        weak_labels = _loaded(store, jobs.weak_labels)
        relabel = WeakLabels(jobs.weak_labels.key, soft=False)
        label_accuracy = (None if weak_labels is None else
                          M.weak_label_accuracy(part, lambda ex: relabel.apply(ex, weak_labels)))
        sources.append(M.source_result(jobs.source, len(dist.test), weak, students, ceiling, label_accuracy,
                                       len(part), jobs.weak_labels.key, seed))
    targets = []
    for t in plan.targets:
        ceiling = _loaded(store, t.ceiling)
        students = {loss: p for loss, job in t.students if (p := _loaded(store, job)) is not None}
        if ceiling is not None or students:
            targets.append(M.target_result(t.source, t.target, len(distribution(t.target).test), students, ceiling,
                                           seed, _de_predictions(t, store, distribution)))
    return M.W2SResults(run_info, tuple(sources), tuple(targets), failed)


def _de_predictions(t: TargetJobs, store: JobStore,
                    distribution: Callable[[str], Distribution]) -> M.DePredictions | None:
    """The stored zero-shot and target-tuned predictions of a target's DE; None when DE was not
    planned or any of its jobs failed (the target then has no DE): as in `genies run`, A_tt is
    never the best of the candidates that happened to finish."""
    if t.baseline is None or (baseline := _loaded(store, t.baseline)) is None:
        return None
    tuned = {job.fit.intervention: p for job in t.target_tuned if (p := _loaded(store, job)) is not None}
    if not t.target_tuned or len(tuned) < len(t.target_tuned):
        return None
    return M.DePredictions(t.target_reference, len(distribution(t.target_reference).test), t.baseline.fit.intervention,
                           baseline, tuned)


def collect_examples(plan: W2SPlan, store: JobStore, distribution: Callable[[str], Distribution],
                     seed: int) -> tuple[M.SourceExamples, ...]:
    """Per source, the half-B examples whose weak label is wrong, with the truth and each stored
    student's own label of them (read after every job ran, like the weak-label accuracy)."""
    out = []
    half_b = halves(seed)[1]
    for jobs in plan.sources:
        weak_labels = _loaded(store, jobs.weak_labels)
        if weak_labels is None:
            continue
        part = half_b.select(distribution(jobs.source).train, f"{jobs.source}/train")
        weak = weak_choices(len(part), weak_labels)
        own = {s.loss: weak_choices(len(part), p) for s in jobs.students if (p := _loaded(store, s.half_b)) is not None}
        wrong = tuple(M.LabelledExample(i, ex.prompt, tuple(ex.responses), ex.preferred, w.preferred, w.confidence,
                                        tuple(M.StudentChoice(loss, c[i].preferred, c[i].confidence)
                                              for loss, c in own.items()))
                      for i, (ex, w) in enumerate(zip(part, weak, strict=True)) if w.preferred != ex.preferred)
        out.append(M.SourceExamples(jobs.source, len(part), wrong))
    return tuple(out)


@dataclass(frozen=True)
class _Row:
    """One line of the summary: a source and one of its students (None: every student failed)."""

    source: M.SourceResult
    student: M.StudentResult | None


@dataclass(frozen=True)
class _TargetRow:
    """One line of the targets' table: a target and one of its students (None: every student failed)."""

    target: M.TargetResult
    student: M.TargetStudent | None


def print_summary(results: M.W2SResults, console: Console) -> None:
    """One row per source and student loss (weak, student, ceiling, PGR with its interval), then
    per target and student the generalization accuracies and DEs of the student and the ceiling."""
    from rich.markup import escape

    from genies.commands._format import Column, print_table
    from genies.rounding import interval

    def acc(a: M.Accuracy | M.De | None) -> str:
        return "-" if a is None else number(a.value)

    def ci(a: M.Accuracy | M.De | None) -> str:
        return "-" if a is None else interval(a.low, a.high)

    def pgr_ci(r: _Row) -> str:
        p = r.student.pgr if r.student else None
        return "-" if p is None or p.low is None else interval(p.low, p.high)

    run = results.run
    rows = [_Row(s, st) for s in results.sources for st in (s.students or (None,))]
    title = (f"weak-to-strong: {run.weak} -> {run.strong}, {run.method} ({', '.join(run.losses)}; "
             f"{run.labels} labels)")
    print_table(console, escape(title), [
        Column("source", lambda r: escape(r.source.source)),
        Column("loss", lambda r: escape(r.student.loss) if r.student else "-"),
        Column("weak", lambda r: acc(r.source.weak), "number"),
        Column("labels", lambda r: number(r.source.weak_label_accuracy), "number", drop=2),
        Column("student", lambda r: acc(r.student.accuracy if r.student else None), "number"),
        Column("ceiling", lambda r: acc(r.source.ceiling), "number"),
        Column("PGR", lambda r: M.pgr_text(r.student.pgr if r.student else None), "number"),
        Column("PGR 95% CI", pgr_ci, "number", drop=1),
    ], rows, notes=["accuracy on each source's test split; labels: share of the students' half whose weak label "
                    "(first-ranked response) is the preferred one (chance: 1 / responses per prompt); PGR = "
                    "(student - weak) / (ceiling - weak); -: its jobs failed"], shown_in="w2s.json")
    target_rows = [_TargetRow(t, st) for t in results.targets for st in (t.students or (None,))]
    if target_rows:
        print_table(console, "generalization to the targets", [
            Column("source", lambda r: escape(r.target.source)),
            Column("target", lambda r: escape(r.target.target)),
            Column("loss", lambda r: escape(r.student.loss) if r.student else "-"),
            Column("student", lambda r: acc(r.student.accuracy if r.student else None), "number"),
            Column("student CI", lambda r: ci(r.student.accuracy if r.student else None), "number", drop=2),
            Column("ceiling", lambda r: acc(r.target.ceiling), "number"),
            Column("ceiling CI", lambda r: ci(r.target.ceiling), "number", drop=2),
            Column("student DE", lambda r: acc(r.student.de if r.student else None), "number"),
            Column("DE CI", lambda r: ci(r.student.de if r.student else None), "number", drop=1),
            Column("ceiling DE", lambda r: acc(r.target.ceiling_de), "number"),
            Column("ceiling DE CI", lambda r: ci(r.target.ceiling_de), "number", drop=1),
            Column("zero-shot", lambda r: acc(r.target.reference.baseline if r.target.reference else None), "number",
                   drop=3),
            Column("A_tt", lambda r: acc(r.target.reference.target_tuned if r.target.reference else None), "number",
                   drop=3),
        ], target_rows, notes=[_de_note(results)], shown_in="w2s.json")
    for line in results.failed:
        console.print(f"failed: {escape(line)}", highlight=False, style="red")


def _de_note(results: M.W2SResults) -> str:
    """What the targets' DEs are measured against, or why there are none."""
    if results.run.target_tuned == "none":
        return "accuracy on each target's test split; no DE (--target-tuned none)"
    return ("accuracy on each target's test split; DE = (accuracy - zero-shot) / A_tt, as in `genies run`: the strong "
            "model's zero-shot accuracy on the target and its target-tuned accuracy on the target's reference "
            f"(--target-tuned {results.run.target_tuned}); -: its jobs failed")
