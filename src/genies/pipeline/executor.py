"""Run a plan's jobs: locally with rich progress (default), or on Ray when asked and installed.

Jobs run in groups: one fit and every prediction made with its state. A group whose outputs are
all in the store costs nothing. A fitted state is always reloaded from the store before it
predicts, so a fresh run and a resumed run predict from byte-identical states. A failing job
writes its traceback to the run's log and the executor goes on; the predictions of a failed fit
are reported as failed too, and since nothing of theirs was stored, a rerun retries exactly them.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from genies.data.schema import Distribution
from genies.interventions.base import Scorer
from genies.interventions.context import FitContext
from genies.interventions.fitted import save_fitted
from genies.interventions.scores import pair_with_labels
from genies.models.base import LoadedModel
from genies.pipeline.jobs import FitJob, PredictJob
from genies.pipeline.plan import Plan
from genies.pipeline.store import JobStore

# The stand-in "source" handed to methods that need no training data (zero-shot).
NO_TRAINING_DATA = Distribution.from_examples("(none)", [], [])


@dataclass
class JobEnv:
    """What jobs need; `model()` loads the model on first call so cached runs never load it."""

    load_model: Callable[[], LoadedModel]
    distribution: Callable[[str], Distribution]
    store: JobStore
    seed: int
    activation_store: Any = None
    _lm: LoadedModel | None = None

    def model(self) -> LoadedModel:
        if self._lm is None:
            self._lm = self.load_model()
        return self._lm


@dataclass
class JobRecord:
    key: str
    kind: str  # "fit" | "predict"
    label: str
    status: str  # "done" | "cached" | "failed"
    seconds: float = 0.0
    error: str | None = None


def _seed_everything(seed: int) -> None:
    """Each job starts from the same random state whatever ran before it in this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _groups(plan: Plan) -> list[tuple[FitJob, list[PredictJob]]]:
    return [(fit, plan.predicts_of(fit)) for fit in plan.fits.values()]


class RunLog:
    """The run's log.txt: one line per job, full tracebacks of failures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")

    def record(self, rec: JobRecord, traceback_text: str | None = None) -> None:
        self.write(f"{rec.status:<6} {rec.seconds:8.1f}s {rec.label} [{rec.key}]")
        if traceback_text:
            self.write(traceback_text.rstrip())


def run_group(fit: FitJob, predicts: list[PredictJob], env: JobEnv,
              on_start: Callable[[str], None] | None = None) -> Iterable[tuple[JobRecord, str | None]]:
    """Yield one (record, traceback) per job of the group as it finishes.

    The fitted state is read back from the store (so a fresh and a resumed run predict from the
    same bytes) and prepared once (`Intervention.scorer`) for every prediction of the group."""
    store = env.store
    if all(store.has_predictions(p.key) for p in predicts) and (predicts or store.has_fit(fit.key)):
        yield JobRecord(fit.key, "fit", fit.label, "cached"), None
        for p in predicts:
            yield JobRecord(p.key, "predict", p.label, "cached"), None
        return
    ctx = FitContext(seed=env.seed, activation_store=env.activation_store, progress=on_start)
    started = time.perf_counter()
    try:
        method = fit.method()

        def fit_and_save() -> None:
            source = env.distribution(fit.source).train_only() if fit.source else NO_TRAINING_DATA
            with store.publish_fit(fit.key) as staging:
                ctx.state_dir = staging
                save_fitted(method.fit(env.model(), source, ctx), staging, intervention=fit.intervention)

        status = _compute_once(store, fit.key, fit.label, store.has_fit, fit_and_save, env.seed, on_start)
        fitted = store.load_fitted(fit.key, method.fitted_type())
        ctx.state_dir = store.fit_dir(fit.key)
    except Exception as err:  # noqa: BLE001 - one failing job must not stop the others
        tb = traceback.format_exc()
        yield JobRecord(fit.key, "fit", fit.label, "failed", time.perf_counter() - started, _one_line(err)), tb
        for p in predicts:
            yield JobRecord(p.key, "predict", p.label, "failed", 0.0, f"not run: {fit.label} failed"), None
        return
    yield JobRecord(fit.key, "fit", fit.label, status, time.perf_counter() - started), None
    scorer: Scorer | None = None
    for p in predicts:
        started = time.perf_counter()
        try:
            def predict_and_save(p: PredictJob = p) -> None:
                nonlocal scorer
                if scorer is None:
                    scorer = method.scorer(env.model(), fitted, ctx)
                dist = env.distribution(p.distribution)
                scores = scorer(dist.eval_set(p.split, with_labels=method.reads_eval_labels))
                where = f"{fit.label} on {p.distribution}/{p.split}"
                store.save_predictions(p.key, pair_with_labels(scores, dist.split(p.split), where))

            status = _compute_once(store, p.key, p.label, store.has_predictions, predict_and_save, env.seed,
                                   on_start)
            yield JobRecord(p.key, "predict", p.label, status, time.perf_counter() - started), None
        except Exception as err:  # noqa: BLE001
            yield (JobRecord(p.key, "predict", p.label, "failed", time.perf_counter() - started, _one_line(err)),
                   traceback.format_exc())


def _compute_once(store: JobStore, key: str, label: str, stored: Callable[[str], bool], compute: Callable[[], None],
                  seed: int, on_start: Callable[[str], None] | None) -> str:
    """Run `compute` under the job's lock unless its output is already stored (by this run or a
    concurrent one); "done" when it ran, "cached" when it did not."""
    with store.lock(key):
        if stored(key):
            return "cached"
        if on_start:
            on_start(label)
        _seed_everything(seed)
        compute()
        return "done"


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


_STYLE = {"done": "green", "cached": "dim", "failed": "red"}


class LocalExecutor:
    """Runs groups one after another in this process, showing progress.

    `plain=True` prints exactly one line per job (for cluster logs); otherwise a rich progress
    bar with elapsed time and ETA sits under per-job lines.
    """

    def __init__(self, plain: bool = False, console: Console | None = None) -> None:
        self.plain = plain
        self.console = console or Console(stderr=True)

    def execute(self, plan: Plan, env: JobEnv, log: RunLog) -> list[JobRecord]:
        groups = _groups(plan)
        total = sum(1 + len(p) for _, p in groups)
        records: list[JobRecord] = []
        if self.plain:
            for fit, predicts in groups:
                for rec, tb in run_group(fit, predicts, env):
                    records.append(rec)
                    log.record(rec, tb)
                    err = f"  {rec.error}" if rec.error else ""
                    print(f"[{len(records)}/{total}] {rec.status} {rec.seconds:.1f}s {rec.label}{err}", flush=True)
            return records
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("jobs", total=total)

            def started(label: str) -> None:
                progress.update(task, description=label[:70])

            for fit, predicts in groups:
                for rec, tb in run_group(fit, predicts, env, started):
                    records.append(rec)
                    log.record(rec, tb)
                    if rec.status != "cached":
                        style = _STYLE[rec.status]
                        err = f" - {escape(rec.error)}" if rec.error else ""
                        progress.console.print(f"[{style}]{rec.status:>6}[/] {rec.seconds:6.1f}s {escape(rec.label)}{err}",
                                               markup=True, highlight=False)
                    progress.advance(task)
            progress.update(task, description="jobs")
        return records


class RayExecutor:
    """Runs each group as a Ray task (one model copy per worker). Used only when requested and
    `ray` is importable; `env_factory` must be picklable and build a `JobEnv` on the worker."""

    def __init__(self, env_factory: Callable[[], JobEnv], num_gpus: float = 0.0) -> None:
        try:
            import ray
        except ImportError as err:
            raise RuntimeError("the Ray executor needs `pip install genies[ray]`") from err
        self.ray = ray
        self.env_factory = env_factory
        self.num_gpus = num_gpus

    def execute(self, plan: Plan, env: JobEnv, log: RunLog) -> list[JobRecord]:
        ray = self.ray
        if not ray.is_initialized():
            ray.init()
        factory = self.env_factory

        @ray.remote(num_gpus=self.num_gpus)
        def remote_group(fit: FitJob, predicts: list[PredictJob]) -> list[tuple[JobRecord, str | None]]:
            return list(run_group(fit, predicts, factory()))

        futures = [remote_group.remote(fit, predicts) for fit, predicts in _groups(plan)]
        records = []
        for result in ray.get(futures):
            for rec, tb in result:
                records.append(rec)
                log.record(rec, tb)
                print(f"[{len(records)}] {rec.status} {rec.seconds:.1f}s {rec.label}", flush=True)
        return records
