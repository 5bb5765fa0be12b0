"""What every executor shares (genies.pipeline.executor), in process and without a model: one
group's records in job order, what is cached and what is computed, how failures are isolated,
the random state each job starts from, the run log's lines and the display's lines and ETA.
A stand-in method (`pt_exec`) records what it was handed; the plan is one fit on `src` and its
three predictions (test_pipeline's distributions)."""

from __future__ import annotations

import io
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rich.console import Console

from genies.interventions import FitContext, Intervention, Scorer, Scores, hparam, register
from genies.pipeline.executor import (JobDisplay, JobEnv, JobRecord, LocalExecutor, RunLog, cached_group, groups,
                                      one_line, run_group)
from genies.pipeline.plan import PlanBuilder, configure_methods
from genies.pipeline.store import JobStore

from test_pipeline import distributions  # noqa: E402 - tests/test_pipeline.py: the three small distributions

CALLS: list[tuple] = []  # what pt_exec was handed, in order


@dataclass(frozen=True)
class Drawn:
    """The first draws of Python's, numpy's and torch's generators when the fit ran."""

    python: float
    numpy: float
    torch: float


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@register("pt_exec", family="fine-tuning", description="test stand-in: records what the executor hands it")
@dataclass
class Recorder(Intervention[Drawn]):
    fail_fit: bool = hparam(False, "raise in fit")
    fail_on: str = hparam("", "raise when scoring this distribution")
    short_on: str = hparam("", "score one query too few on this distribution")
    pause: float = hparam(0.0, "seconds each fit and each scoring waits", execution=True)

    def fit(self, lm, train, ctx: FitContext) -> Drawn:
        CALLS.append(("fit", lm, ctx.seed, ctx.activation_store, ctx.state_dir, ctx.state_dir.is_dir(),
                      bool(train.test)))
        time.sleep(self.pause)
        if self.fail_fit:
            raise ValueError("the fit broke\nsecond line")
        drawn = Drawn(*_draws())
        ctx.report("fitting")  # a method's own progress goes to the display's running-job line
        return drawn

    def scorer(self, lm, fitted: Drawn, ctx: FitContext) -> Scorer:
        CALLS.append(("scorer", lm, fitted, ctx.state_dir))

        def score(data) -> Scores:
            CALLS.append(("score", data.distribution, data.split, data.labels is None))
            time.sleep(self.pause)
            if data.distribution == self.fail_on:
                raise RuntimeError(f"cannot score {data.distribution}")
            sizes = [len(q.responses) for q in data.queries]
            if data.distribution == self.short_on:
                sizes = sizes[:-1]
            return Scores.pairwise(sizes, lambda a, b: np.full(len(a), 0.75))
        return score


@register("pt_exec_own", family="external", description="test stand-in: brings its own model")
@dataclass
class OwnModel(Recorder):
    uses_run_model = False


@register("pt_exec_labels", family="fine-tuning", description="test stand-in: scores with the labels")
@dataclass
class ReadsLabels(Recorder):
    @property
    def reads_eval_labels(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def _group(**hparams):
    """The plan of pt_exec (or `method`) fitted on src, predicting tgt, src and tgt2, and its env."""
    method = hparams.pop("method", "pt_exec")
    dists = distributions()
    builder = PlanBuilder(configure_methods([method], None, {method: hparams} if hparams else None), seed=7,
                          model_fingerprint="fp", precision={"dtype": "float32", "quantize": "none"},
                          data_hash=lambda n, s: dists[n].content_hash(s))
    fit = builder.fit(method, "src")
    predicts = [builder.predict(fit, name) for name in ("tgt", "src", "tgt2")]
    return builder.plan, fit, predicts, dists


class Model:
    """The run's model as a job sees it; counts loads."""

    def __init__(self) -> None:
        self.loads = 0

    def __call__(self) -> SimpleNamespace:
        self.loads += 1
        return SimpleNamespace(name="the run's model")


def _env(tmp_path: Path, dists, seed: int = 7) -> JobEnv:
    return JobEnv(load_model=Model(), distribution=dists.__getitem__, store=JobStore(tmp_path / "store"), seed=seed,
                  activation_store="the activation store")


def _plain(items) -> list[tuple]:
    return [(rec.key, rec.kind, rec.label, rec.status, rec.error, tb) for rec, tb in items]


# ---- one group -----------------------------------------------------------------------------------

def test_a_fresh_group_fits_once_and_predicts_in_order(tmp_path) -> None:
    plan, fit, predicts, dists = _group(pause=0.02)
    env = _env(tmp_path, dists)
    started: list[str] = []
    items = list(run_group(fit, predicts, env, started.append))
    assert _plain(items) == [(fit.key, "fit", fit.label, "done", None, None),
                             *((p.key, "predict", p.label, "done", None, None) for p in predicts)]
    assert started == [fit.label, "fitting", *(p.label for p in predicts)]
    assert all(0.02 <= rec.seconds < 60 for rec, _ in items)  # each job's own time
    store = env.store
    assert store.has_fit(fit.key) and all(store.has_predictions(p.key) for p in predicts)
    assert sorted(path.name for path in (store.root / "locks").iterdir()) == sorted(  # one lock per job
        f"{key}.lock" for key in (fit.key, *(p.key for p in predicts)))
    # fit: handed the run's model, the run's seed and activation store, its staging folder, train data only
    kind, lm, seed, activations, staging, staging_is_dir, had_test = CALLS[0]
    assert (kind, lm.name, seed, activations, staging_is_dir, had_test) == (
        "fit", "the run's model", 7, "the activation store", True, False)
    assert staging != store.fit_dir(fit.key) and not staging.exists()  # renamed into place
    # one scorer for the group, built from the stored state, then one score call per prediction
    assert CALLS[1][0] == "scorer" and CALLS[1][1].name == "the run's model"
    assert CALLS[1][2] == store.load_fitted(fit.key, Drawn) and CALLS[1][3] == store.fit_dir(fit.key)
    assert CALLS[2:] == [("score", "tgt", "test", True), ("score", "src", "test", True),
                         ("score", "tgt2", "test", True)]
    assert env.load_model.loads == 1
    assert json.loads((store.fit_dir(fit.key) / "fitted.json").read_text())["intervention"] == "pt_exec"
    saved = store.load_predictions(predicts[0].key)
    assert list(saved.p_preferred) == [0.75] * 5  # tgt's 5 pairs as the method scored them


def test_a_stored_group_is_cached_without_loading_anything(tmp_path) -> None:
    plan, fit, predicts, dists = _group()
    list(run_group(fit, predicts, _env(tmp_path, dists)))
    CALLS.clear()
    env = _env(tmp_path, dists)
    started: list[str] = []
    items = list(run_group(fit, predicts, env, started.append))
    assert _plain(items) == [(fit.key, "fit", fit.label, "cached", None, None),
                             *((p.key, "predict", p.label, "cached", None, None) for p in predicts)]
    assert CALLS == [] and started == [] and env.load_model.loads == 0
    assert all(rec.seconds == 0.0 for rec, _ in items)


def test_a_group_with_its_fit_stored_computes_only_the_missing_predictions(tmp_path) -> None:
    """The kill that lands inside a group: the fit and one prediction are stored, two are not."""
    plan, fit, predicts, dists = _group()
    list(run_group(fit, predicts, _env(tmp_path, dists)))
    env = _env(tmp_path, dists)
    for p in predicts[1:]:
        env.store.predict_file(p.key).unlink()
    CALLS.clear()
    started: list[str] = []
    items = list(run_group(fit, predicts, env, started.append))
    assert [(rec.kind, rec.status) for rec, _ in items] == [("fit", "cached"), ("predict", "cached"),
                                                           ("predict", "done"), ("predict", "done")]
    assert started == [predicts[1].label, predicts[2].label]
    assert [c[0] for c in CALLS] == ["scorer", "score", "score"]  # no fit, one scorer for the missing two


def test_cached_group_needs_every_prediction_or_a_stored_fit_alone(tmp_path) -> None:
    plan, fit, predicts, dists = _group()
    store = JobStore(tmp_path / "store")
    assert cached_group(fit, predicts, store) is None
    assert cached_group(fit, [], store) is None  # nothing stored: the fit must run
    list(run_group(fit, predicts, _env(tmp_path, dists)))
    assert [(r.key, r.kind, r.label, r.status) for r in cached_group(fit, predicts, store)] == [
        (fit.key, "fit", fit.label, "cached"), *((p.key, "predict", p.label, "cached") for p in predicts)]
    assert [r.kind for r in cached_group(fit, [], store)] == ["fit"]  # a fit with no predictions of its own
    store.predict_file(predicts[2].key).unlink()
    assert cached_group(fit, predicts, store) is None
    assert cached_group(fit, predicts[:2], store) is not None
    import shutil

    shutil.rmtree(store.fit_dir(fit.key))
    assert [r.kind for r in cached_group(fit, predicts[:2], store)] == ["fit", "predict", "predict"]
    assert cached_group(fit, [], store) is None


def test_a_failed_fit_fails_its_predictions_without_running_them(tmp_path) -> None:
    plan, fit, predicts, dists = _group(fail_fit=True)
    env = _env(tmp_path, dists)
    items = list(run_group(fit, predicts, env))
    (rec, tb), *rest = items
    assert (rec.key, rec.kind, rec.label, rec.status, rec.error) == (fit.key, "fit", fit.label, "failed",
                                                                     "ValueError: the fit broke")
    assert isinstance(rec.seconds, float) and 0 <= rec.seconds < 60
    assert tb.startswith("Traceback") and "the fit broke\nsecond line" in tb
    assert _plain(rest) == [(p.key, "predict", p.label, "failed", f"not run: {fit.label} failed", None)
                            for p in predicts]
    assert all(r.seconds == 0.0 for r, _ in rest)
    assert not env.store.has_fit(fit.key) and not list((tmp_path / "store" / "fit").iterdir())


def test_a_failed_prediction_fails_alone(tmp_path) -> None:
    plan, fit, predicts, dists = _group(fail_on="src")
    env = _env(tmp_path, dists)
    items = list(run_group(fit, predicts, env))
    assert [(rec.status, rec.error) for rec, _ in items] == [
        ("done", None), ("done", None), ("failed", "RuntimeError: cannot score src"), ("done", None)]
    assert "RuntimeError: cannot score src" in items[2][1]
    failed = items[2][0]
    assert (failed.key, failed.kind, failed.label) == (predicts[1].key, "predict", predicts[1].label)
    assert isinstance(failed.seconds, float) and 0 <= failed.seconds < 60
    assert [env.store.has_predictions(p.key) for p in predicts] == [True, False, True]


def test_a_prediction_of_the_wrong_size_names_the_job(tmp_path) -> None:
    plan, fit, predicts, dists = _group(short_on="tgt2")
    items = list(run_group(fit, predicts, _env(tmp_path, dists)))
    assert items[3][0].error == "JobError: fit pt_exec on src on tgt2/test: the method scored 1 queries, the split has 2"


def test_a_method_with_its_own_models_is_handed_none(tmp_path) -> None:
    plan, fit, predicts, dists = _group(method="pt_exec_own")
    env = _env(tmp_path, dists)
    assert [rec.status for rec, _ in run_group(fit, predicts, env)] == ["done"] * 4
    assert CALLS[0][1] is None and CALLS[1][1] is None and env.load_model.loads == 0


def test_each_job_starts_from_the_runs_seed(tmp_path) -> None:
    """Whatever ran before in the process, a job's draws are those of a fresh seed: Python's,
    numpy's (the seed modulo 2**32) and torch's generators."""
    seed = 2**32 + 5
    random.seed(seed)
    np.random.seed(5)
    torch.manual_seed(seed)
    want = _draws()
    plan, fit, predicts, dists = _group()
    random.random(), np.random.rand(), torch.rand(3)  # state left by earlier work
    list(run_group(fit, predicts, _env(tmp_path, dists, seed=seed)))
    fitted = JobStore(tmp_path / "store").load_fitted(fit.key, Drawn)
    assert (fitted.python, fitted.numpy, fitted.torch) == want


def test_the_model_loads_once_per_env() -> None:
    load = Model()
    env = JobEnv(load_model=load, distribution=dict().__getitem__, store=None, seed=0)
    assert env.model() is env.model() and load.loads == 1


def test_groups_pair_each_fit_with_its_predictions() -> None:
    plan, fit, predicts, _ = _group()
    assert groups(plan) == [(fit, predicts)]


def test_the_local_executor_runs_every_group_and_logs_each_job(tmp_path) -> None:
    assert LocalExecutor().plain is False and LocalExecutor().console.stderr is True  # rich progress on stderr
    plan, fit, predicts, dists = _group()
    log = RunLog(tmp_path / "run" / "log.txt")
    records = LocalExecutor(plain=True).execute(plan, _env(tmp_path, dists), log)
    assert [(r.key, r.status) for r in records] == [(fit.key, "done"), *((p.key, "done") for p in predicts)]
    lines = (tmp_path / "run" / "log.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1][:6] for line in lines] == ["done  "] * 4


# ---- small helpers -------------------------------------------------------------------------------

def test_one_line_is_the_type_and_the_first_line_cut_at_500() -> None:
    assert one_line(ValueError("bad\nworse")) == "ValueError: bad"
    assert one_line(ValueError("x" * 600)) == "ValueError: " + "x" * 488  # 500 characters


def test_the_run_log_stamps_each_line_and_records_jobs(tmp_path, monkeypatch) -> None:
    import time
    from datetime import datetime, timezone

    log = RunLog(tmp_path / "new" / "folder" / "log.txt")
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # the stamps are UTC whatever the machine's zone
    time.tzset()
    try:
        log.write("start")
    finally:
        monkeypatch.undo()
        time.tzset()
    log.record(JobRecord("k1", "fit", "fit a on b", "done", 12.345))
    log.record(JobRecord("k2", "predict", "predict a", "failed", 0.0, "E: x"), "Traceback\n  line\nE: x\n\n")
    log.record(JobRecord("k3", "predict", "predict c", "cached"), "")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    text = (tmp_path / "new" / "folder" / "log.txt").read_text()
    first = datetime.strptime(text[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - first).total_seconds()) < 600
    assert re.fullmatch(
        f"{stamp}start\n{stamp}done       12.3s fit a on b \\[k1\\]\n{stamp}failed      0.0s predict a \\[k2\\]\n"
        f"{stamp}Traceback\n  line\nE: x\n{stamp}cached      0.0s predict c \\[k3\\]\n", text), text


# ---- the display ---------------------------------------------------------------------------------

def _rich(total: int, tmp_path: Path) -> tuple[JobDisplay, io.StringIO]:
    out = io.StringIO()
    return JobDisplay(total, RunLog(tmp_path / "log.txt"), plain=False,
                      console=Console(file=out, width=200, force_terminal=False)), out


def test_plain_display_prints_one_line_per_job(tmp_path, capsys) -> None:
    display = JobDisplay(3, RunLog(tmp_path / "log.txt"), plain=True, console=Console(file=io.StringIO()))
    with display:
        assert display.on_start is None
        display.started("ignored")
        display.finished(JobRecord("a", "fit", "fit x", "done", 1.26), None)
        display.finished(JobRecord("b", "predict", "predict [y]", "failed", 0.0, "E: [boom]"), "tb")
        display.finished(JobRecord("c", "predict", "predict z", "cached"), None)
    assert capsys.readouterr().out == ("[1/3] done 1.3s fit x\n[2/3] failed 0.0s predict [y]  E: [boom]\n"
                                       "[3/3] cached 0.0s predict z\n")
    assert [r.key for r in display.records] == ["a", "b", "c"]
    assert "tb" in (tmp_path / "log.txt").read_text()


def test_rich_display_shows_jobs_that_ran_and_names_the_running_one(tmp_path) -> None:
    display, out = _rich(3, tmp_path)
    with display:
        assert display.on_start == display.started
        task = display._progress.tasks[0]
        assert (task.description, task.total, task.fields["eta"]) == ("jobs", 3, "-:--:--")
        display.started("x" * 80)
        assert task.description == "x" * 70
        display.finished(JobRecord("a", "fit", "fit [x]", "done", 1.26), None)
        display.finished(JobRecord("b", "predict", "predict y", "cached"), None)
        display.finished(JobRecord("c", "predict", "predict z", "failed", 2.0, "E: [boom]"), None)
        assert task.completed == 3
    assert task.description == "jobs"
    lines = [line.rstrip() for line in out.getvalue().splitlines() if "done" in line or "failed" in line]
    assert lines[:2] == ["  done    1.3s fit [x]", "failed    2.0s predict z - E: [boom]"]
    assert "predict y" not in out.getvalue()
    # the bar's last state stays on screen: description, count, elapsed time and ETA
    assert re.fullmatch(r"  jobs ━+ 3/3 0:00:0\d ETA 0:00:0\d", out.getvalue().splitlines()[-1].rstrip())


def test_the_eta_is_the_mean_time_of_jobs_that_ran(tmp_path) -> None:
    display, _ = _rich(7, tmp_path)
    with display:
        task = display._progress.tasks[0]
        display.finished(JobRecord("a", "fit", "a", "done", 10.0), None)
        assert task.fields["eta"] == "0:01:00"  # 6 left x 10 s
        display.finished(JobRecord("b", "fit", "b", "cached"), None)
        display.finished(JobRecord("c", "fit", "c", "failed", 20.0), None)
        assert task.fields["eta"] == "0:01:00"  # 4 left x 15 s
        display.finished(JobRecord("d", "fit", "d", "done", 30.0), None)
        assert task.fields["eta"] == "0:01:00"  # 3 left x 20 s
        for k in range(4):
            display.finished(JobRecord(f"e{k}", "fit", "e", "done", 0.0), None)
        assert task.fields["eta"] == "0:00:00"  # more records than planned: nothing left, not negative


def test_a_training_view_reads_stored_predictions(tmp_path) -> None:
    """Weak labels: a fit's training data can be predictions an earlier job stored."""
    from dataclasses import replace

    plan, fit, predicts, dists = _group()
    env = _env(tmp_path, dists)
    list(run_group(fit, predicts, env))
    read = []

    def train_split(source, load, predictions):
        read.append(predictions(predicts[0].key))
        return load(source).train_only()

    weak = replace(fit, key="weak", view=SimpleNamespace(label="(weak labels)", train_split=train_split))
    assert [rec.status for rec, _ in run_group(weak, [], env)] == ["done"]
    assert list(read[0].p_preferred) == list(env.store.load_predictions(predicts[0].key).p_preferred)


def test_a_method_that_reads_labels_gets_them(tmp_path) -> None:
    plan, fit, predicts, dists = _group(method="pt_exec_labels")
    assert [rec.status for rec, _ in run_group(fit, predicts, _env(tmp_path, dists))] == ["done"] * 4
    assert [c[3] for c in CALLS if c[0] == "score"] == [False] * 3  # labels present


def test_a_prediction_scores_the_split_it_names(tmp_path) -> None:
    """Sweeps score a held-out part of a source's train split: the job's split, not test."""
    from genies.pipeline.plan import PlanBuilder

    dists = distributions()
    builder = PlanBuilder(configure_methods(["pt_exec"], None), seed=7, model_fingerprint="fp",
                          precision={"dtype": "float32", "quantize": "none"},
                          data_hash=lambda n, s: dists[n].content_hash(s))
    fit = builder.fit("pt_exec", "src")
    on_train = builder.predict(fit, "tgt", split="train")
    env = _env(tmp_path, dists)
    assert [rec.status for rec, _ in run_group(fit, [on_train], env)] == ["done", "done"]
    assert [c[1:3] for c in CALLS if c[0] == "score"] == [("tgt", "train")]
    assert len(env.store.load_predictions(on_train.key).p_preferred) == 4  # tgt has 4 train pairs, 5 test pairs
