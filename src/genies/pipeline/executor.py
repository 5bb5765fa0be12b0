"""Run a plan's jobs locally, and what every executor shares: running a group, the log, the display.

Jobs run in groups: one fit and every prediction made with its state. A group whose outputs are
all in the store costs nothing. A fitted state is always reloaded from the store before it
predicts, so a fresh run and a resumed run predict from byte-identical states. A failing job
writes its traceback to the run's log and the executor goes on; the predictions of a failed fit
are reported as failed too, and since nothing of theirs was stored, a rerun retries exactly them.
The Ray executor (`genies.pipeline.ray_executor`) runs the same `run_group` on its workers and
shows the same `JobDisplay`.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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


def groups(plan: Plan) -> list[tuple[FitJob, list[PredictJob]]]:
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


def cached_group(fit: FitJob, predicts: list[PredictJob], store: JobStore) -> list[JobRecord] | None:
    """The group's records when every output it would write is stored already, else None: a
    cached group costs nothing (no model load), wherever the executor runs it."""
    if all(store.has_predictions(p.key) for p in predicts) and (predicts or store.has_fit(fit.key)):
        return [JobRecord(fit.key, "fit", fit.label, "cached"),
                *(JobRecord(p.key, "predict", p.label, "cached") for p in predicts)]
    return None


def run_group(fit: FitJob, predicts: list[PredictJob], env: JobEnv,
              on_start: Callable[[str], None] | None = None) -> Iterable[tuple[JobRecord, str | None]]:
    """Yield one (record, traceback) per job of the group as it finishes: always the fit first,
    then each prediction in order, whatever ran, was cached or failed (a retried Ray call relies
    on the n-th item being the n-th job's).

    The fitted state is read back from the store (so a fresh and a resumed run predict from the
    same bytes) and prepared once (`Intervention.scorer`) for every prediction of the group."""
    store = env.store
    cached = cached_group(fit, predicts, store)
    if cached is not None:
        for rec in cached:
            yield rec, None
        return
    ctx = FitContext(seed=env.seed, activation_store=env.activation_store, progress=on_start)
    started = time.perf_counter()
    try:
        method = fit.method()
        # a method that brings its own models (an external judge) never loads the run's
        run_model = env.model if method.uses_run_model else (lambda: None)

        def fit_and_save() -> None:
            source = fit.train_data(env.distribution, store.load_predictions)
            with store.publish_fit(fit.key) as staging:
                ctx.state_dir = staging
                save_fitted(method.fit(run_model(), source, ctx), staging, intervention=fit.intervention)

        status = _compute_once(store, fit.key, fit.label, store.has_fit, fit_and_save, env.seed, on_start)
        fitted = store.load_fitted(fit.key, method.fitted_type())
        ctx.state_dir = store.fit_dir(fit.key)
    except Exception as err:  # noqa: BLE001 - one failing job must not stop the others
        tb = traceback.format_exc()
        yield JobRecord(fit.key, "fit", fit.label, "failed", time.perf_counter() - started, one_line(err)), tb
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
                    scorer = method.scorer(run_model(), fitted, ctx)
                dist = p.data(env.distribution)
                scores = scorer(dist.eval_set(p.split, with_labels=method.reads_eval_labels))
                where = f"{fit.label} on {p.distribution}/{p.split}"
                store.save_predictions(p.key, pair_with_labels(scores, dist.split(p.split), where))

            status = _compute_once(store, p.key, p.label, store.has_predictions, predict_and_save, env.seed,
                                   on_start)
            yield JobRecord(p.key, "predict", p.label, status, time.perf_counter() - started), None
        except Exception as err:  # noqa: BLE001
            yield (JobRecord(p.key, "predict", p.label, "failed", time.perf_counter() - started, one_line(err)),
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


def one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


_STYLE = {"done": "green", "cached": "dim", "failed": "red"}


class JobDisplay:
    """What a run shows while its jobs finish, the same for every executor: with `plain`, exactly
    one line per job (for cluster logs); otherwise a rich progress bar with elapsed time and ETA
    under one line per job that ran or failed. Every record also goes to the run's log.

    Use as a context manager; `on_start` (None when plain) names the job now running, and
    `finished` takes each record as it arrives and keeps it in `records`."""

    def __init__(self, total: int, log: RunLog, plain: bool, console: Console) -> None:
        self.total, self.log, self.plain, self.console = total, log, plain, console
        self.records: list[JobRecord] = []
        self._progress: Progress | None = None
        self._task: Any = None
        self._computed_seconds = 0.0  # of jobs that ran (cached jobs take no time and say nothing)
        self._computed = 0

    def __enter__(self) -> JobDisplay:
        if not self.plain:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"))
            self._progress = Progress(*columns, console=self.console, transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("jobs", total=self.total, eta="-:--:--")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description="jobs")
            self._progress.__exit__(*exc)

    @property
    def on_start(self) -> Callable[[str], None] | None:
        return None if self._progress is None else self.started

    def started(self, label: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=label[:70])

    def finished(self, rec: JobRecord, traceback_text: str | None) -> None:
        self.records.append(rec)
        self.log.record(rec, traceback_text)
        if self._progress is None:
            err = f"  {rec.error}" if rec.error else ""
            print(f"[{len(self.records)}/{self.total}] {rec.status} {rec.seconds:.1f}s {rec.label}{err}", flush=True)
            return
        if rec.status != "cached":
            err = f" - {escape(rec.error)}" if rec.error else ""
            self._progress.console.print(f"[{_STYLE[rec.status]}]{rec.status:>6}[/] {rec.seconds:6.1f}s "
                                         f"{escape(rec.label)}{err}", markup=True, highlight=False)
        self._progress.advance(self._task, 1)
        self._progress.update(self._task, eta=self._eta(rec))

    def _eta(self, rec: JobRecord) -> str:
        """Remaining jobs times the mean time of the jobs that ran: rich's own estimate is a rate
        over recent completions, which cached jobs (instant) push to seconds while a long fit runs."""
        if rec.status != "cached":
            self._computed += 1
            self._computed_seconds += rec.seconds
        if not self._computed:
            return "-:--:--"
        remaining = max(self.total - len(self.records), 0) * self._computed_seconds / self._computed
        return str(timedelta(seconds=round(remaining)))


class LocalExecutor:
    """Runs groups one after another in this process, showing a `JobDisplay`."""

    def __init__(self, plain: bool = False, console: Console | None = None) -> None:
        self.plain = plain
        self.console = console or Console(stderr=True)

    def execute(self, plan: Plan, env: JobEnv, log: RunLog) -> list[JobRecord]:
        with JobDisplay(plan.n_jobs, log, self.plain, self.console) as display:
            for fit, predicts in groups(plan):
                for rec, tb in run_group(fit, predicts, env, display.on_start):
                    display.finished(rec, tb)
        return display.records
