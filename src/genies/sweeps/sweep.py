"""`genies.sweep(config)`: tune one method's hyperparameters on its source's data alone.

Every trial fits on the source's train split minus a seeded held-out part (`Part(holdout, 1,
seed)`) and predicts that held-out part (`Part(0, holdout, seed)`), both ordinary jobs of the
planner (`PlanBuilder`) executed by the run's executors, so trials are cached by content hash,
resume after a kill and run in parallel on Ray. The sweep's data loader serves the source and
refuses any other name, so no trial can read a target: tuning on target data would make the
generalization numbers it is meant to serve mean nothing.

A grid runs as one plan. A model-based search asks Optuna (TPE, seeded) for one trial at a time;
its study lives in `<out>/study.db` (SQLite), so a rerun of the same command continues it, and an
interrupted trial is asked again with the same values (its finished jobs are cached).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from genies.data.schema import Distribution
from genies.errors import ConfigError, UnknownNameError
from genies.interventions.base import Intervention
from genies.interventions.registry import load_intervention
from genies.pipeline.config import RunConfig
from genies.pipeline.executor import JobEnv, JobRecord, LocalExecutor, RunLog
from genies.pipeline.jobs import FitJob, PredictJob
from genies.pipeline.plan import PlanBuilder
from genies.pipeline.store import JobStore
from genies.pipeline.views import Part, TrainView
from genies.sweeps.objective import OBJECTIVES, HeldOut, held_out
from genies.sweeps.space import Range, grid_points

STUDY_NAME = "genies-sweep"
SWEEP_FORMAT = 1


@dataclass(frozen=True)
class SweepConfig:
    """A sweep of `intervention` on `source`: a `grid` of values per hyperparameter, or a `search`
    range per hyperparameter explored by Optuna in `trials` trials. `settings` carries the run
    options a sweep shares with `genies run` (model, preset, budget, seed, placement, executor,
    cache, data root, fixed hyperparameters with --set / --hparams); its `out` is ignored."""

    intervention: str
    source: str
    out: Path
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    search: Mapping[str, Range] = field(default_factory=dict)
    trials: int = 20
    holdout: float = 0.33
    objective: str = "loss"
    settings: RunConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.settings is None:
            object.__setattr__(self, "settings", RunConfig(out=self.out, interventions=(self.intervention,)))
        if bool(self.grid) == bool(self.search):
            raise ConfigError("a sweep needs either --grid or --search (not both)")
        if self.objective not in OBJECTIVES:
            raise UnknownNameError("objective", self.objective, OBJECTIVES)
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be a fraction in (0, 1), got {self.holdout:g}")
        if self.search and self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")

    @property
    def kind(self) -> str:
        return "grid" if self.grid else "optuna-tpe"

    def space(self) -> dict[str, Any]:
        """The swept values (grid) or ranges (search) as plain JSON."""
        if self.grid:
            return {name: list(values) for name, values in self.grid.items()}
        return {name: asdict(r) for name, r in self.search.items()}


@dataclass(frozen=True)
class Trial:
    """One trial: the swept values as the method parsed them, its objective (NaN when a job
    failed), both held-out measures, and the keys of its two jobs in the job store."""

    number: int
    params: Mapping[str, Any]
    objective: float
    accuracy: float
    loss: float
    heldout_pairs: int
    fit_key: str
    predict_key: str
    status: str  # done | cached (both jobs were in the store) | failed
    error: str = ""


@dataclass(frozen=True)
class SweepResult:
    """What `genies.sweep` returns and writes as sweep.json."""

    intervention: str
    method: str  # the registered name: the key of best-hparams.json and of --set
    source: str
    objective: str
    direction: str  # maximize | minimize
    search: str  # grid | optuna-tpe
    space: Mapping[str, Any]
    holdout: float
    seed: int
    model: str
    model_fingerprint: str
    preset: str
    max_train: int | None
    train_examples: int
    heldout_examples: int
    fixed_hparams: Mapping[str, Any]
    trials: tuple[Trial, ...]
    best: int | None  # the best trial's number; None when every trial failed
    wall_seconds: float = 0.0
    out: Path | None = None

    @property
    def best_trial(self) -> Trial | None:
        return next((t for t in self.trials if t.number == self.best), None)

    def best_hparams(self) -> dict[str, dict[str, Any]]:
        """The best values in the format `genies run --hparams FILE` reads."""
        best = self.best_trial
        return {self.method: dict(best.params)} if best else {}

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("trials", "out")}
        doc["format"] = SWEEP_FORMAT
        doc["trials"] = [{k: _json_number(v) for k, v in asdict(t).items()} for t in self.trials]
        return json.loads(json.dumps(doc, default=str))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], out: Path | None = None) -> SweepResult:
        values = {f.name: doc[f.name] for f in fields(cls) if f.name not in ("trials", "out") and f.name in doc}
        trials = tuple(Trial(**{k: (math.nan if v is None and k in ("objective", "accuracy", "loss") else v)
                                for k, v in t.items()}) for t in doc["trials"])
        return cls(**values, trials=trials, out=out)


def load_sweep(folder: str | Path) -> SweepResult:
    """Read a sweep folder's sweep.json."""
    from genies.errors import FileError

    path = Path(folder) / "sweep.json"
    if not path.is_file():
        raise FileError(path, "file not found: is this a finished `genies sweep` folder?")
    return SweepResult.from_json(json.loads(path.read_text(encoding="utf-8")), Path(folder))


def source_loader(source: str, load: Callable[[str], Distribution]) -> Callable[[str], Distribution]:
    """A loader that serves `source` and refuses every other name: what makes "a sweep never
    reads target data" hold by construction, whatever a job asks for."""
    def only_source(name: str) -> Distribution:
        if name != source:
            raise ConfigError(f"a sweep on {source} reads only {source}'s data, not {name!r}")
        return load(name)
    return only_source


def sweep(config: SweepConfig, *, lm: Any = None, distributions: Mapping[str, Distribution] | None = None,
          executor: LocalExecutor | None = None) -> SweepResult:
    """Run the sweep and write `config.out`: sweep.json, best-hparams.json, report.html, log.txt
    (and study.db for a search). Rerunning the same command reuses every finished trial.

    `lm` uses an already loaded model; `distributions` a table of distributions instead of the
    data root (only the source is ever read from it); `executor` as for `genies.run`."""
    from genies.data.home import find_data_root, genies_home
    from genies.data.loading import load_distribution
    from genies.pipeline.api import intervention_spec, job_executor, model_access

    started = time.time()
    settings = config.settings
    assert settings is not None
    spec = intervention_spec(config.intervention)
    name = spec.partition(":")[0]
    unused = sorted(set(settings.hparams) - {name})
    if unused:
        raise ConfigError(f"--set/--hparams name {', '.join(map(repr, unused))}, which a sweep of {name} does not use")
    fixed = {k: v for k, v in settings.hparams.get(name, {}).items() if k not in config.space()}

    def configure(params: Mapping[str, Any]) -> Intervention:
        return load_intervention(spec, settings.preset, **{**fixed, **params})

    default = configure({})
    unknown = sorted(set(config.space()) - set(default.hparams()))
    if unknown:
        raise UnknownNameError(f"hyperparameter of {name}", unknown[0], default.hparams())
    grid = [configure(point) for point in grid_points(config.grid)]  # every value checked before any job
    placement = lm.placement if lm is not None else settings.placement
    if lm is None:
        placement.check()
    default.check_placement(placement)

    if distributions is not None:
        table = distributions  # not copied: a copy would read every entry
        raw: Callable[[str], Distribution] = lambda n: table[n] if n in table else _missing(n, table)  # noqa: E731
    else:
        root = Path(settings.data_root) if settings.data_root else find_data_root()
        raw = lambda n: load_distribution(n, root)  # noqa: E731
    budget = settings.example_budget
    cache: dict[str, Distribution] = {}

    def capped(n: str) -> Distribution:
        if n not in cache:
            cache[n] = raw(n).limited(budget.max_train, budget.max_eval,
                                      seed=None if settings.first_n else settings.seed)
        return cache[n]

    distribution = source_loader(config.source, capped)
    n_train = len(distribution(config.source).train)
    held = Part(0.0, config.holdout, settings.seed)
    rest = Part(config.holdout, 1.0, settings.seed)
    n_held = len(held.indices(n_train, f"{config.source}/train"))
    if n_held == 0 or n_held == n_train:
        raise ConfigError(f"--holdout {config.holdout:g} of {config.source}'s {n_train} train examples leaves "
                          f"{n_held} held out and {n_train - n_held} to train on; both need at least one")

    model = model_access(settings, lm)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.cache_dir)
    log = RunLog(out / "log.txt")
    env = JobEnv(load_model=model.load, distribution=distribution, store=store, seed=settings.seed,
                 activation_store=_activation_store(genies_home()))
    runner = job_executor(settings, lm, model, executor)

    def builder(methods: Mapping[str, Intervention]) -> PlanBuilder:
        return PlanBuilder(methods, seed=settings.seed, model_fingerprint=model.fingerprint,
                           precision=model.precision, data_hash=lambda n, s: distribution(n).content_hash(s))

    def add(jobs: PlanBuilder, trial: str) -> tuple[FitJob, PredictJob]:
        fit = jobs.fit(trial, config.source, TrainView(part=rest))
        return fit, jobs.predict(fit, config.source, "train", held)

    def execute(jobs: PlanBuilder) -> dict[str, JobRecord]:
        log.write(f"start: {len(jobs.plan.fits)} fits, {len(jobs.plan.predicts)} predictions")
        try:
            return {r.key: r for r in runner.execute(jobs.plan, env, log)}
        except KeyboardInterrupt:
            log.write("interrupted: finished trials are kept; rerun the same command to resume")
            raise

    def describe(number: int, method: Intervention, swept: Sequence[str], fit: FitJob, pred: PredictJob) -> None:
        """A log line naming the trial's values and jobs (the job lines show neither)."""
        values = ", ".join(f"{p}={method.hparams()[p]!r}" for p in swept)
        log.write(f"trial {number}: {values} fit [{fit.key}] predict [{pred.key}]")

    def trial(number: int, method: Intervention, swept: Sequence[str], fit: FitJob, pred: PredictJob,
              records: Mapping[str, JobRecord]) -> Trial:
        params = {p: method.hparams()[p] for p in swept}
        fit_rec, pred_rec = records.get(fit.key), records.get(pred.key)
        if pred_rec is None or pred_rec.status == "failed" or not store.has_predictions(pred.key):
            error = next((r.error or "" for r in (fit_rec, pred_rec) if r and r.status == "failed"), "")
            return Trial(number, params, math.nan, math.nan, math.nan, 0, fit.key, pred.key, "failed", error)
        score = held_out(store.load_predictions(pred.key).p_preferred, settings.seed)
        status = "cached" if all(r and r.status == "cached" for r in (fit_rec, pred_rec)) else "done"
        return Trial(number, params, score.value(config.objective), score.accuracy, score.loss, score.pairs,
                     fit.key, pred.key, status)

    if config.grid:
        jobs = builder({f"trial {i}": m for i, m in enumerate(grid)})
        added = [add(jobs, f"trial {i}") for i in range(len(grid))]
        for i, m in enumerate(grid):
            describe(i, m, list(config.grid), *added[i])
        records = execute(jobs)
        trials = tuple(trial(i, m, list(config.grid), *added[i], records) for i, m in enumerate(grid))
    else:
        trials = _search(config, default, configure, builder, add, execute, describe, trial, model.fingerprint, out)

    direction = OBJECTIVES[config.objective]
    finished = [t for t in trials if t.status != "failed"]
    pick = max if direction == "maximize" else min
    best = pick(finished, key=lambda t: t.objective).number if finished else None
    result = SweepResult(
        intervention=default.label, method=name, source=config.source, objective=config.objective,
        direction=direction, search=config.kind, space=config.space(), holdout=config.holdout, seed=settings.seed,
        model=model.name, model_fingerprint=model.fingerprint, preset=settings.preset, max_train=budget.max_train,
        train_examples=n_train - n_held, heldout_examples=n_held, fixed_hparams=fixed, trials=trials, best=best,
        wall_seconds=round(time.time() - started, 3), out=out)
    from genies.sweeps.output import write_sweep

    write_sweep(result)
    log.write(f"finish: {len(trials)} trials, best {best}, {result.wall_seconds:.1f}s")
    return result


def _search(config: SweepConfig, default: Intervention, configure: Callable[[Mapping[str, Any]], Intervention],
            builder: Callable, add: Callable, execute: Callable, describe: Callable, trial: Callable,
            fingerprint: str, out: Path) -> tuple[Trial, ...]:
    """Ask Optuna for trials until `config.trials` have finished in the study (earlier runs of the
    same command included); tell it each held-out objective."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("--search needs Optuna, which is not installed: pip install 'genies[sweep]'") from None
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = config.settings
    assert settings is not None
    signature = json.dumps({"intervention": config.intervention, "source": config.source, "space": config.space(),
                            "objective": config.objective, "holdout": config.holdout, "seed": settings.seed,
                            "model": fingerprint, "preset": settings.preset,
                            "budget": asdict(settings.example_budget), "fixed": settings.hparams}, sort_keys=True,
                           default=str)
    study = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}",
                                direction=OBJECTIVES[config.objective], load_if_exists=True)
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise ConfigError(f"{out} holds a different sweep ({stored}); use another --out")
    # A resumed study's sampler is seeded past the trials it holds: seeded as at the start, its
    # first (random) suggestions would repeat those already tried.
    study.sampler = optuna.samplers.TPESampler(seed=settings.seed + len(study.trials))
    for interrupted in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(interrupted.number, state=TrialState.FAIL)  # killed mid-trial: ask the same values again
        study.enqueue_trial(interrupted.params)
    integer = {n for n, v in default.hparams().items() if isinstance(v, int) and not isinstance(v, bool)}
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for _ in range(config.trials - complete):
        asked = study.ask()
        suggested = {n: (asked.suggest_int(n, math.ceil(r.low), math.floor(r.high), log=r.log) if n in integer
                         else asked.suggest_float(n, r.low, r.high, log=r.log)) for n, r in config.search.items()}
        method = configure(suggested)
        jobs = builder({"trial": method})
        fit, pred = add(jobs, "trial")
        describe(asked.number, method, list(config.search), fit, pred)
        done = trial(asked.number, method, list(config.search), fit, pred, execute(jobs))
        for key in ("fit_key", "predict_key", "status", "error", "accuracy", "loss", "heldout_pairs"):
            asked.set_user_attr(key, _json_number(getattr(done, key)))
        asked.set_user_attr("params", dict(done.params))
        if done.status == "failed":
            study.tell(asked, state=TrialState.FAIL)
        else:
            study.tell(asked, done.objective)
    kept = [t for t in study.get_trials(deepcopy=False) if "status" in t.user_attrs]  # not the interrupted
    return tuple(Trial(number=t.number, params=t.user_attrs["params"],
                       objective=t.value if t.value is not None else math.nan,
                       accuracy=_nan(t.user_attrs["accuracy"]), loss=_nan(t.user_attrs["loss"]),
                       heldout_pairs=t.user_attrs["heldout_pairs"], fit_key=t.user_attrs["fit_key"],
                       predict_key=t.user_attrs["predict_key"], status=t.user_attrs["status"],
                       error=t.user_attrs["error"]) for t in kept)


def _activation_store(home: Path) -> Any:
    from genies.models.activations import ActivationStore

    return ActivationStore(home / "activations")


def _missing(name: str, table: Mapping[str, Distribution]) -> Distribution:
    raise UnknownNameError("distribution", name, table)


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


__all__ = ["HeldOut", "SweepConfig", "SweepResult", "Trial", "load_sweep", "sweep"]
