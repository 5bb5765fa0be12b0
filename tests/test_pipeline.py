"""The `genies run` pipeline on generated data with stand-in interventions whose every output is
known: hand-computed metrics, plan minimality, resume after a kill, reruns, concurrency,
determinism and failure isolation."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import genies
from genies.data.schema import Distribution, EvalSet, Example
from genies.data.shift import Shift
from genies.interventions import FitContext, Intervention, Scorer, Scores, Unfitted, hparam, register
from genies.pipeline.config import RunConfig
from genies.pipeline.executor import LocalExecutor
from genies.pipeline.results import load_run

TESTS = Path(__file__).parent


def _length_scores(data: EvalSet, direction: int, high: float) -> Scores:
    """P(i beats j) = high if response i is longer (direction +1) / shorter (-1) than j, 1 - high
    if not, 0.5 on equal lengths: labels play no part."""
    lengths = np.array([len(r) for q in data.queries for r in q.responses])

    def p_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        diff = direction * (lengths[a] - lengths[b])
        return np.where(diff > 0, high, np.where(diff < 0, 1 - high, 0.5))

    return Scores.pairwise([len(q.responses) for q in data.queries], p_first)


@dataclass(frozen=True)
class Direction:
    direction: int


@register("pt_length", family="fine-tuning", description="test stand-in: learns longer-or-shorter")
@dataclass
class LengthRule(Intervention[Direction]):
    """Fit: prefer longer responses if the source's preferred ones mostly are; p = 0.5 +- scale."""

    scale: float = hparam(0.4, "p = 0.5 + scale for the favoured response")
    delay: float = hparam(0.0, "seconds each step sleeps", execution=True)

    def fit(self, lm, train: Distribution, ctx: FitContext) -> Direction:
        time.sleep(self.delay)
        if os.environ.get("GENIES_TEST_FAIL") == self.name and Path(os.environ["GENIES_TEST_FAIL_MARKER"]).exists():
            raise RuntimeError("planned failure [/tmp/x]")  # brackets: must not be read as markup
        assert not train.test, "fit must be handed the train split only"
        longer = np.mean([len(q.preferred) > len(q.dispreferred) for q in train.train_pairs(ctx.seed)])
        return Direction(1 if longer >= 0.5 else -1)

    def scorer(self, lm, fitted: Direction, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            time.sleep(self.delay)
            assert data.labels is None, "an evaluation set must reach a method without labels"
            return _length_scores(data, fitted.direction, 0.5 + self.scale)
        return score


@register("pt_length2", family="fine-tuning", description="test stand-in: a second copy of pt_length")
@dataclass
class LengthRule2(LengthRule):
    pass


@register("pt_zero", family="baseline", description="test stand-in: prefers the shorter response")
@dataclass
class PreferShorter(Intervention[Unfitted]):
    needs_training_data = False
    delay: float = hparam(0.0, "seconds each step sleeps", execution=True)

    def fit(self, lm, train, ctx) -> Unfitted:
        assert not train.train, "a method without training data must get none"
        return Unfitted()

    def scorer(self, lm, fitted: Unfitted, ctx) -> Scorer:
        def score(data: EvalSet) -> Scores:
            time.sleep(self.delay)
            return _length_scores(data, -1, 0.7)
        return score


def run(model, interventions, *, distributions=None, plain=True, **fields):
    """`genies.run` with a RunConfig built from keyword fields; `model` is a LoadedModel or a name."""
    named = isinstance(model, str)
    config = RunConfig(model=model if named else model.name, interventions=tuple(interventions), **fields)
    return genies.run(config, lm=None if named else model, distributions=distributions,
                      executor=LocalExecutor(plain=plain))


def ex(preferred: str, *others: str, first: bool = True) -> Example:
    responses = (preferred, *others) if first else (*others, preferred)
    return Example(f"prompt {preferred}", responses, 0 if first else len(others))


def distributions() -> dict[str, Distribution]:
    longer_train = [ex("aaaa", "a"), ex("bbb", "b", first=False), ex("cc", "c"), ex("ddd", "d")]
    shorter_train = [ex("e", "eeee"), ex("f", "ff", first=False), ex("g", "ggg"), ex("hhhh", "h")]
    return {
        "src": Distribution.from_examples("src", longer_train, [
            ex("aaaa", "a"), ex("aaa", "a"), ex("aa", "a", first=False), ex("a", "aaa")]),
        # 5 pairs: the preferred response is shorter in 3, longer in 2.
        "tgt": Distribution.from_examples("tgt", shorter_train, [
            ex("a", "aaa", "aa"), ex("b", "bbbb", first=False), ex("cccc", "c"), ex("dd", "d")]),
        "tgt2": Distribution.from_examples("tgt2", shorter_train, [ex("xx", "x"), ex("y", "yyy")]),
    }


SHIFTS = [Shift("src", "tgt", "tgt", "skill", "extreme"), Shift("src", "tgt2", "tgt", "quality", "probing")]


def run_kwargs(tmp: Path, **extra):
    kwargs = dict(shifts=SHIFTS, distributions=distributions(), out=tmp / "run", cache_dir=tmp / "cache",
                  baseline="pt_zero", target_tuned_interventions=("pt_length",), plain=True, seed=0)
    kwargs.update(extra)
    return kwargs


def statuses(run_dir: Path) -> list[str]:
    return [j["status"] for j in json.loads((run_dir / "manifest.json").read_text())["jobs"]]


def test_known_answer_run(tmp_path, tiny_llama):
    res = run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path))
    row = next(r for r in res.rows if r.target == "tgt")
    # Source train prefers longer -> the rule prefers longer. tgt pairs: p = .1 .1 .1 .9 .9.
    assert row.generalization_accuracy == pytest.approx(2 / 5)
    assert row.baseline_accuracy == pytest.approx(3 / 5)  # prefer-shorter: .7 .7 .7 .3 .3
    assert row.target_tuned_capability == pytest.approx(3 / 5)  # rule fitted on tgt prefers shorter
    assert row.target_tuned_capability_intervention == "pt_length"
    assert row.source_ID_accuracy == pytest.approx(3 / 4)  # src test: .9 .9 .9 .1
    assert row.differential_elicitation == pytest.approx((0.4 - 0.6) / 0.6)
    assert row.elicitation == pytest.approx(0.4 / 0.6)
    assert row.brier == pytest.approx((3 * 0.81 + 2 * 0.01) / 5)
    assert row.average_probability == pytest.approx(0.42)
    assert row.RMS_calibration_error == pytest.approx(0.5) and row.ece == pytest.approx(0.5)
    assert np.isnan(row.legacy_RMS_calibration_error)  # no bin reaches 20 items
    # Resampling prompts (the pairs of a prompt go together): 4 prompts with 2, 1, 1, 1 pairs, of
    # which 0, 0, 1, 1 right; all-wrong and all-right resamples each have probability 1/16 > 2.5 %,
    # so the 95 % interval is exactly (0, 1). Resampling the 5 pairs independently would make
    # all-right (2/5)^5 = 1 % likely and end the interval at 0.8.
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == (0.0, 1.0)
    assert (row.length_longer_accuracy, row.length_shorter_accuracy, row.length_cue_flag) == (0.4, 0.6, False)
    # DE's interval resamples tgt's 4 prompts jointly for pt_length and the baseline, and R = T's
    # prompts with the same draw: it holds the point value and is not zero-width.
    assert row.de_ci_low < row.differential_elicitation < row.de_ci_high
    row2 = next(r for r in res.rows if r.target == "tgt2")
    assert (row2.generalization_accuracy, row2.baseline_accuracy, row2.target_tuned_capability) == (0.5, 0.5, 0.6)
    assert row2.differential_elicitation == pytest.approx(0.0)
    assert row2.length_cue_flag is False
    agg = res.aggregate("pt_length")
    assert agg.mean_de == pytest.approx(((0.4 - 0.6) / 0.6 + 0.0) / 2) and agg.n_shifts == 2
    assert res.aggregate("pt_length", "family:probing").mean_de == pytest.approx(0.0)
    probing = res.aggregate("pt_length", "family:probing")  # one shift: its prompts' interval
    assert probing.n_shifts == 1 and probing.ci_low < 0.0 < probing.ci_high
    # The run directory follows the contract and loads back to the same values.
    run_dir = tmp_path / "run"
    header = (run_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:11] == ["source", "target", "target_reference", "generalization_accuracy", "baseline_accuracy",
                           "baseline_intervention", "target_tuned_capability",
                           "target_tuned_capability_intervention", "source_ID_accuracy", "RMS_calibration_error",
                           "differential_elicitation"]
    loaded = load_run(run_dir)
    assert loaded.rows[0].differential_elicitation == res.rows[0].differential_elicitation
    evaluation = json.loads((run_dir / row.target_evaluation).read_text())
    assert evaluation["accuracy"] == pytest.approx(0.4) and len(evaluation["pairs"]) == 5
    assert evaluation["examples"][0]["responses"] == ["a", "aaa", "aa"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["hyperparameters"]["pt_length"] == {"scale": 0.4, "delay": 0.0}
    assert set(manifest["data_hashes"]) == {"src", "tgt", "tgt2"}


def test_plan_is_minimal_and_reruns_do_no_work(tmp_path, tiny_llama):
    res = run(tiny_llama, ["pt_length", "pt_length2"], **run_kwargs(tmp_path))
    [comparison] = res.comparisons  # the two methods over their two shared shifts
    de = {(r.intervention, r.target): r.differential_elicitation for r in res.rows}
    assert (comparison.a, comparison.b, comparison.n_shifts) == ("pt_length", "pt_length2", 2)
    assert comparison.mean_difference == pytest.approx(np.mean([de["pt_length", t] - de["pt_length2", t]
                                                                for t in ("tgt", "tgt2")]))
    # fits: zero-shot once, pt_length on src and (as target-tuned) on tgt, pt_length2 on src = 4;
    # predictions: baseline on 2 targets, target-tuned on tgt once, each method on tgt, tgt2, src = 9.
    jobs = statuses(tmp_path / "run")
    assert len(jobs) == 13 and set(jobs) == {"done"}
    before = (tmp_path / "run" / "results.csv").read_bytes()
    run(tiny_llama, ["pt_length", "pt_length2"], **run_kwargs(tmp_path))
    assert set(statuses(tmp_path / "run")) == {"cached"}
    assert (tmp_path / "run" / "results.csv").read_bytes() == before
    # A changed hyperparameter of pt_length2 reruns its fit and its 3 predictions only.
    run(tiny_llama, ["pt_length", "pt_length2"], hparams={"pt_length2": {"scale": 0.3}},
               **run_kwargs(tmp_path))
    assert statuses(tmp_path / "run").count("done") == 4


def test_a_cached_rerun_by_model_name_never_loads_the_weights(tmp_path, tiny_llama, monkeypatch):
    """A model given by name is fingerprinted without loading; loading waits for a job that runs."""
    from genies.models import loading

    loads = []
    real = loading.load_folder
    monkeypatch.setattr(loading, "load_folder", lambda *a, **k: loads.append(1) or real(*a, **k))
    first = run(str(tiny_llama.path), ["pt_length"], **run_kwargs(tmp_path))
    assert len(loads) == 1 and first.run["model_fingerprint"] == tiny_llama.fingerprint
    assert set(statuses(tmp_path / "run")) == {"done"}
    run(str(tiny_llama.path), ["pt_length"], **run_kwargs(tmp_path))
    assert set(statuses(tmp_path / "run")) == {"cached"} and len(loads) == 1


@register("pt_own_models", family="external", description="test stand-in: brings its own model")
@dataclass
class OwnModels(PreferShorter):
    uses_run_model = False

    def fit(self, lm, train, ctx) -> Unfitted:
        assert lm is None, "a method with its own models must not be handed (or load) the run's"
        return Unfitted()

    def scorer(self, lm, fitted: Unfitted, ctx) -> Scorer:
        assert lm is None
        return super().scorer(lm, fitted, ctx)


def test_a_method_with_its_own_models_never_loads_the_runs(tmp_path, tiny_llama, monkeypatch):
    """External judges: the run's model is not loaded for them, and their keys do not name it."""
    from genies.models import loading

    loads = []
    real = loading.load_folder
    monkeypatch.setattr(loading, "load_folder", lambda *a, **k: loads.append(1) or real(*a, **k))
    res = run(str(tiny_llama.path), ["pt_own_models"], **run_kwargs(tmp_path, baseline="pt_own_models",
                                                                     target_tuned_interventions=("pt_own_models",)))
    assert loads == [] and len(res.rows) == 2 and set(statuses(tmp_path / "run")) == {"done"}
    from genies.pipeline.plan import build_plan, configure_methods

    methods = configure_methods(["pt_own_models"], None)
    keys = [set(build_plan(interventions=["pt_own_models"], shifts=SHIFTS, methods=methods, seed=0,
                           model_fingerprint=fp, precision={"dtype": dtype, "quantize": "none"},
                           data_hash=lambda n, s: "h", baseline="pt_own_models",
                           target_tuned=("pt_own_models",)).fits) for fp, dtype in (("a", "float32"), ("b", "bfloat16"))]
    assert keys[0] == keys[1]


def test_failing_job_is_isolated_and_retried(tmp_path, tiny_llama, monkeypatch):
    marker = tmp_path / "fail"
    marker.touch()
    monkeypatch.setenv("GENIES_TEST_FAIL", "pt_length2")
    monkeypatch.setenv("GENIES_TEST_FAIL_MARKER", str(marker))
    res = run(tiny_llama, ["pt_length", "pt_length2"], **run_kwargs(tmp_path, plain=False))  # rich output
    assert {r.intervention for r in res.rows} == {"pt_length"}
    assert sorted(res.failed_cells) == ["pt_length2: src->tgt", "pt_length2: src->tgt2"]
    assert any("planned failure [/tmp/x]" in f.error for f in res.failed)
    from rich.console import Console

    from genies.commands.results import print_failures

    console = Console(record=True, width=200)
    print_failures(res, console)
    assert "planned failure [/tmp/x]" in console.export_text()
    assert "RuntimeError: planned failure" in (tmp_path / "run" / "log.txt").read_text()
    marker.unlink()
    res = run(tiny_llama, ["pt_length", "pt_length2"], **run_kwargs(tmp_path))
    assert len(res.rows) == 4 and not res.failed
    assert statuses(tmp_path / "run").count("done") == 4  # the failed fit and its 3 predictions


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import genies, test_pipeline as t
from genies.models.testing import tiny_model
kwargs = t.run_kwargs(Path({tmp!r}), out=Path({out!r}), hparams={{n: {{"delay": {delay}}} for n in
                      ("pt_length", "pt_length2", "pt_zero")}})
t.run(tiny_model(Path({model!r})), ["pt_length", "pt_length2"], **kwargs)
"""


def _script(tmp: Path, out: Path, model: Path, delay: float) -> list[str]:
    code = SCRIPT.format(tests=str(TESTS), tmp=str(tmp), out=str(out), model=str(model), delay=delay)
    return [sys.executable, "-c", code]


def test_kill_and_resume_gives_identical_results(tmp_path, tiny_llama):
    proc = subprocess.Popen(_script(tmp_path, tmp_path / "run", tiny_llama.path, 0.4),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("[")
        if seen == 5:
            proc.kill()
            break
    proc.wait(timeout=60)
    assert seen == 5, "the run ended before it could be killed"
    assert not (tmp_path / "run" / "results.csv").exists()
    resumed = run(tiny_llama, ["pt_length", "pt_length2"],
                         hparams={n: {"delay": 0.4} for n in ("pt_length", "pt_length2", "pt_zero")},
                         **run_kwargs(tmp_path))
    jobs = statuses(tmp_path / "run")
    assert 5 <= jobs.count("cached") < 13 and jobs.count("done") == 13 - jobs.count("cached")
    fresh = tmp_path / "fresh"
    run(tiny_llama, ["pt_length", "pt_length2"],
               hparams={n: {"delay": 0.0} for n in ("pt_length", "pt_length2", "pt_zero")},
               **run_kwargs(fresh))
    assert resumed.rows  # and the numbers do not depend on the interruption:
    assert (tmp_path / "run" / "results.csv").read_bytes() == (fresh / "run" / "results.csv").read_bytes()


def test_concurrent_runs_share_the_cache_safely(tmp_path, tiny_llama):
    procs = [subprocess.Popen(_script(tmp_path, tmp_path / f"run{i}", tiny_llama.path, 0.1),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    a, b = (tmp_path / "run0" / "results.csv").read_bytes(), (tmp_path / "run1" / "results.csv").read_bytes()
    assert a == b and len(a.splitlines()) == 5
    done = statuses(tmp_path / "run0").count("done") + statuses(tmp_path / "run1").count("done")
    assert done == 13, "each job must be computed exactly once across the two runs"


def test_same_seed_same_bytes(tmp_path, tiny_llama):
    for name in ("a", "b"):
        run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path / name))
    for file in ("results.csv", "results.json"):
        assert (tmp_path / "a" / "run" / file).read_bytes() == (tmp_path / "b" / "run" / file).read_bytes()
    evals = sorted(p.name for p in (tmp_path / "a" / "run" / "evaluations").iterdir())
    assert evals and all((tmp_path / "a" / "run" / "evaluations" / n).read_bytes()
                         == (tmp_path / "b" / "run" / "evaluations" / n).read_bytes() for n in evals)
    with open(tmp_path / "a" / "run" / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_unknown_names_are_clear_errors(tmp_path, tiny_llama):
    from genies.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown intervention 'no_such_method'"):
        run(tiny_llama, ["no_such_method"], **run_kwargs(tmp_path))
    with pytest.raises(ConfigError, match="unknown intervention 'pt_lenght'; did you mean 'pt_length'"):
        run(tiny_llama, ["pt_lenght"], **run_kwargs(tmp_path))
    with pytest.raises(ConfigError, match="pt_length.scale: expected float, got 'abc'"):
        run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, hparams={"pt_length": {"scale": "abc"}}))
    with pytest.raises(ConfigError, match="unknown pt_length hyperparameter 'kk'"):
        run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, hparams={"pt_length": {"kk": 1}}))
    assert not (tmp_path / "run").exists(), "a configuration error must stop the run before it writes anything"
    bad = [Shift("src", "nowhere", "nowhere", "skill", "extreme")]
    with pytest.raises(ConfigError, match="unknown distribution 'nowhere'.*choices: src, tgt, tgt2"):
        run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, shifts=bad))


def test_cli_show_and_bad_names(tmp_path, tiny_llama):
    from typer.testing import CliRunner

    from genies.cli import _build

    run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path))
    app = _build()
    shown = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["results", "show", str(tmp_path / "run")])
    assert shown.exit_code == 0, shown.output
    assert "src -> tgt2" in shown.output and "Per family" in shown.output
    bad = CliRunner().invoke(app, ["run", "--intervention", "no_such_method", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown intervention" in bad.output and "Traceback" not in bad.output
    missing = CliRunner().invoke(app, ["results", "show", str(tmp_path / "nothing")])
    assert missing.exit_code == 2


def test_keys_follow_what_changes_results(tmp_path, tiny_llama, monkeypatch):
    """An execution setting (pt_length's `delay`, like a batch size) keeps every job cached; a new
    transformers version reruns them all, since it may change the numbers."""
    from genies.pipeline import jobs

    run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path))
    run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, hparams={"pt_length": {"delay": 0.01}}))
    assert set(statuses(tmp_path / "run")) == {"cached"}
    upgraded = {**jobs.package_versions(), "transformers": "999.0"}
    monkeypatch.setattr(jobs, "package_versions", lambda: upgraded)
    run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path))
    assert set(statuses(tmp_path / "run")) == {"done"}


def test_ray_executor_without_ray_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util

    from genies.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match="needs Ray"):
        RunConfig(out=tmp_path / "run", executor="ray")


def test_one_intervention_name_is_not_read_letter_by_letter(tmp_path):
    assert RunConfig(out=tmp_path, interventions="mms").interventions == ("mms",)


def test_budgets_keep_a_seeded_subset_recorded_in_the_manifest(tmp_path, tiny_llama):
    """A capped run reads the seeded subset of each split (the same for the baseline, the
    intervention and the reference), records its indices, and `--first-n` restores the first N."""
    run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, max_train=3, max_eval=2, seed=2))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    dists = distributions()
    want = {name: {"train": dists[name].kept_indices("train", 3, 2), "test": dists[name].kept_indices("test", 2, 2)}
            for name in ("src", "tgt", "tgt2")}
    assert manifest["example_indices"] == want
    assert want["tgt"]["test"] == [0, 2]  # seed 2 does not keep the first two of tgt's four
    assert manifest["run"]["examples"] == "random subset seeded by 2"
    first = run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, out=tmp_path / "first", max_train=3, max_eval=2,
                                                        seed=2, first_n=True))
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert manifest["example_indices"]["tgt"] == {"train": [0, 1, 2], "test": [0, 1]}
    assert first.run["examples"] == "first N"


def test_target_tuned_none_skips_the_reference_and_leaves_de_empty(tmp_path, tiny_llama):
    """Accuracies only: no target-tuned fit or prediction runs, A_tt, DE and elicitation are NaN
    (empty in the CSV), no aggregate is formed, and the run directory still loads and reports."""
    res = run(tiny_llama, ["pt_length"], **run_kwargs(tmp_path, target_tuned="none",
                                                      target_tuned_interventions=None))
    labels = [j["label"] for j in json.loads((tmp_path / "run" / "manifest.json").read_text())["jobs"]]
    assert not any("on tgt/" in label and "trained on tgt" in label for label in labels)
    assert len(labels) == 1 + 2 + 1 + 3  # zero-shot fit and 2 predictions, pt_length fit and 3 predictions
    row = next(r for r in res.rows if r.target == "tgt")
    assert row.generalization_accuracy == pytest.approx(2 / 5) and row.baseline_accuracy == pytest.approx(3 / 5)
    assert np.isnan(row.target_tuned_capability) and np.isnan(row.differential_elicitation)
    assert np.isnan(row.de_ci_low) and row.target_tuned_evaluation == "" and res.aggregates == ()
    assert load_run(tmp_path / "run").rows[0].target_tuned_capability_intervention == ""
    from genies.report.build import build_report

    assert build_report([tmp_path / "run"], tmp_path / "report.html").is_file()


def test_the_eta_counts_only_jobs_that_ran(tmp_path):
    """Cached jobs are instant: an ETA from the rate of recent completions read a second during a
    30 s fit after a cached stretch. Remaining jobs times the mean time of jobs that ran does not."""
    from rich.console import Console

    from genies.pipeline.executor import JobDisplay, JobRecord, RunLog

    with JobDisplay(6, RunLog(tmp_path / "log.txt"), plain=False, console=Console(file=io.StringIO())) as display:
        for k in range(3):
            display.finished(JobRecord(f"c{k}", "predict", "cached job", "cached"), None)
        task = display._progress.tasks[0]
        assert task.fields["eta"] == "-:--:--"  # nothing has run yet: no estimate
        display.finished(JobRecord("d", "fit", "fit lora", "done", seconds=30.0), None)
        assert task.fields["eta"] == "0:01:00"  # 2 jobs left x 30 s
