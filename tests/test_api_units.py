"""`genies.run` end to end without a model: test_pipeline's stand-in methods never read one, so a
stub stands in for the loaded model and every run here takes well under a second. What is checked
is what `run` writes besides the results (manifest, log), what it refuses before writing anything,
how it finds its data, its model and its executor."""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import genies
from genies.data import home
from genies.data.home import DataNotFoundError
from genies.data.loading import UnknownDistributionError
from genies.data.shift import Shift
from genies.errors import ConfigError, UnknownNameError
from genies.interventions import register
from genies.models.memory import Precision
from genies.models.placement import Placement
from genies.pipeline import api
from genies.pipeline.api import ModelAccess, job_executor, model_access, resolve_data
from genies.pipeline.config import RunConfig
from genies.pipeline.executor import LocalExecutor
from genies.provenance import package_versions

from test_pipeline import SHIFTS, LengthRule, distributions  # noqa: E402 - the stand-ins and their data


class StubModel:
    """A loaded model as `run` sees it when the methods never read it."""

    name = "stub-model"
    fingerprint = "fp-stub"
    placement = None
    path = Path("/models/stub")
    trust_remote_code = False

    def precision_key(self) -> dict:
        return {"dtype": "float32", "quantize": "none"}


def _config(tmp_path: Path, **fields) -> RunConfig:
    base = dict(model="stub-model", interventions=("pt_length",), shifts=tuple(SHIFTS), out=tmp_path / "run",
                cache_dir=tmp_path / "cache", baseline="pt_zero", target_tuned_interventions=("pt_length",), seed=3)
    return RunConfig(**{**base, **fields})


def _run(tmp_path: Path, lm=StubModel(), console: Console | None = None, **fields):
    executor = LocalExecutor(plain=True, console=console or Console(file=io.StringIO()))
    return genies.run(_config(tmp_path, **fields), lm=lm, distributions=distributions(), executor=executor)


def _manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "manifest.json").read_text())


def test_the_manifest_records_the_run(tmp_path) -> None:
    results = _run(tmp_path)
    doc = _manifest(tmp_path)
    assert set(doc) == {"genies_version", "command_line", "started", "finished", "wall_seconds", "run", "seeds",
                        "hyperparameters", "data_root", "data_hashes", "example_indices", "shifts", "packages",
                        "hardware", "jobs"}
    hparams = {"pt_zero": {"delay": 0.0}, "pt_length": {"scale": 0.4, "delay": 0.0}}
    assert doc["run"] == {
        "model": "stub-model", "model_fingerprint": "fp-stub", "preset": "cpu", "budget": "cpu", "seed": 3,
        "shifts": "custom", "interventions": ["pt_length"], "target_tuned": "default",
        "target_tuned_candidates": ["pt_length"], "baseline_intervention": "pt_zero", "max_train": 32,
        "max_eval": 16, "examples": "random subset seeded by 3", "precision": {"dtype": "float32", "quantize": "none"},
        "placement": None, "hyperparameters": hparams, "mix_target": [], "hparams_file": None}
    assert results.run == doc["run"]
    assert doc["seeds"] == {"run": 3, "metrics": 3, "jobs": 3} and doc["hyperparameters"] == hparams
    assert doc["genies_version"] == package_versions(("genies",))["genies"] and doc["command_line"] == sys.argv
    dists = distributions()
    limited = {n: d.limited(32, 16, seed=3) for n, d in dists.items()}
    assert doc["data_root"] is None
    assert doc["data_hashes"] == {n: {"train": limited[n].content_hash("train"), "test": limited[n].content_hash("test")}
                                  for n in ("src", "tgt", "tgt2")}
    assert doc["example_indices"] == {n: {"train": dists[n].kept_indices("train", 32, 3),
                                          "test": dists[n].kept_indices("test", 16, 3)} for n in ("src", "tgt", "tgt2")}
    assert doc["shifts"] == [asdict(s) for s in SHIFTS]
    assert doc["packages"] == package_versions(api.PACKAGES) and list(doc["packages"]) == list(api.PACKAGES)
    assert doc["hardware"] == {"platform": platform.platform(), "python": platform.python_version(),
                               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "cuda": torch.cuda.is_available(),
                               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    started, finished = (datetime.fromisoformat(doc[k]) for k in ("started", "finished"))
    assert started.tzinfo == timezone.utc and started <= finished
    assert 0 <= doc["wall_seconds"] <= (finished - started).total_seconds() + 1 and doc["wall_seconds"] == round(
        doc["wall_seconds"], 3)
    jobs = doc["jobs"]
    assert len(jobs) == 9 and all(set(j) == {"key", "kind", "label", "status", "seconds", "error"} for j in jobs)
    assert [j["kind"] for j in jobs].count("fit") == 3 and {j["status"] for j in jobs} == {"done"}
    assert all(j["error"] is None and j["seconds"] == round(j["seconds"], 3) for j in jobs)
    assert jobs[0]["label"] == "fit pt_zero on (no training data)"


def test_the_log_says_how_the_run_started_and_finished(tmp_path) -> None:
    _run(tmp_path)
    lines = [line.split(" ", 1)[1] for line in (tmp_path / "run" / "log.txt").read_text().splitlines()]
    assert lines[0] == f"start: {' '.join(sys.argv)} (9 jobs: 3 fits, 6 predictions)"
    assert lines[-1].startswith("finish: 2 rows, 0 failed jobs, ") and lines[-1].endswith("s")
    assert len(lines) == 11


def test_failed_jobs_are_listed_in_the_results_and_the_log(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "fail"
    marker.touch()
    monkeypatch.setenv("GENIES_TEST_FAIL", "pt_length")
    monkeypatch.setenv("GENIES_TEST_FAIL_MARKER", str(marker))
    results = _run(tmp_path)
    failed = [(j["label"], j["error"]) for j in _manifest(tmp_path)["jobs"] if j["status"] == "failed"]
    assert len(failed) == 6  # two pt_length fits and their four predictions
    assert [(f.job, f.error) for f in results.failed] == failed
    assert failed[0][1] == "RuntimeError: planned failure [/tmp/x]"
    assert "finish: 0 rows, 6 failed jobs, " in (tmp_path / "run" / "log.txt").read_text()


def test_an_interrupted_run_says_how_to_resume(tmp_path) -> None:
    class Interrupted(LocalExecutor):
        def execute(self, plan, env, log):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        genies.run(_config(tmp_path), lm=StubModel(), distributions=distributions(),
                   executor=Interrupted(plain=True, console=Console(file=io.StringIO())))
    last = (tmp_path / "run" / "log.txt").read_text().splitlines()[-1]
    assert last.split(" ", 1)[1] == "interrupted: finished jobs are kept; rerun the same command to resume"


def test_an_empty_shift_list_is_refused_before_anything_is_written(tmp_path) -> None:
    with pytest.raises(ConfigError, match="^the shift list is empty$"):
        _run(tmp_path, shifts=())
    assert not (tmp_path / "run").exists()


@register("pt_no_4bit", family="fine-tuning", description="test stand-in: refuses 4-bit weights")
class RefusesQuantized(LengthRule):
    def check_placement(self, placement: Placement) -> None:
        if placement.quantize == "4bit":
            raise ConfigError("pt_no_4bit cannot train 4-bit weights")


def test_placements_are_checked_before_anything_is_written(tmp_path, monkeypatch) -> None:
    quantized = StubModel()
    quantized.placement = Placement(device="cpu", quantize="4bit")
    with pytest.raises(ConfigError, match="^pt_no_4bit cannot train 4-bit weights$"):
        _run(tmp_path, lm=quantized, interventions=("pt_length", "pt_no_4bit"))
    with pytest.raises(ConfigError, match="^pt_no_4bit cannot train 4-bit weights$"):  # the baseline's too
        _run(tmp_path, lm=quantized, baseline="pt_no_4bit")
    checked = []
    monkeypatch.setattr(Placement, "check", lambda self: checked.append(self))
    with pytest.raises(ConfigError, match="^pt_no_4bit cannot train 4-bit weights$"):
        _run(tmp_path, lm=None, quantize="4bit", interventions=("pt_no_4bit",))
    assert checked == [Placement(quantize="4bit")]  # a model to load: this machine's placement checked first
    assert not (tmp_path / "run").exists()


def test_a_placement_this_machine_lacks_is_refused_first(tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="^--device cuda: no CUDA GPU is visible here"):
        _run(tmp_path, lm=None, device="cuda")
    assert not (tmp_path / "run").exists()


def test_a_data_note_is_printed_as_it_is(tmp_path, monkeypatch) -> None:
    table = distributions()
    monkeypatch.setattr(api, "resolve_data", lambda *a, **k: api.ResolvedData(list(SHIFTS), table.__getitem__,
                                                                             "custom", None, "note [not markup]"))
    out = io.StringIO()
    _run(tmp_path, console=Console(file=out, width=200))
    assert out.getvalue() == "note [not markup]\n"


@pytest.fixture
def named_model(tmp_path, monkeypatch):
    """A model given by name: fingerprinted (recorded) and loaded (the stub) without weights."""
    from genies.models import loading

    folder = tmp_path / "model-folder"
    folder.mkdir()
    calls = []

    def model_fingerprint(name, *, trust_remote_code):
        calls.append(("fingerprint", name, trust_remote_code))
        return folder, "fp-named"

    def load_folder(path, *, name, trust_remote_code, placement):
        calls.append(("load", path, name, trust_remote_code, placement))
        return StubModel()

    monkeypatch.setattr(loading, "model_fingerprint", model_fingerprint)
    monkeypatch.setattr(loading, "load_folder", load_folder)
    return folder, calls


def test_a_named_model_is_fingerprinted_now_and_loaded_on_first_use(tmp_path, named_model) -> None:
    folder, calls = named_model
    config = _config(tmp_path, model="org/named", trust_remote_code=True, dtype="float32")
    access = model_access(config)
    assert calls == [("fingerprint", "org/named", True)]
    assert (access.name, access.fingerprint, access.folder, access.placement) == (
        "org/named", "fp-named", folder, config.placement)
    assert access.precision == {"dtype": "float32", "quantize": "none"}
    assert isinstance(access.load(), StubModel)
    assert calls[1] == ("load", folder, "org/named", True, config.placement)


def test_a_given_model_is_used_as_it_is() -> None:
    lm = StubModel()
    access = model_access(SimpleNamespace(), lm)
    assert (access.name, access.fingerprint, access.precision, access.folder, access.placement) == (
        "stub-model", "fp-stub", {"dtype": "float32", "quantize": "none"}, None, None)
    assert access.load() is lm


def test_the_planners_advice_fills_in_what_the_user_did_not_set(tmp_path, monkeypatch, named_model) -> None:
    """A job the memory planner says needs an execution setting gets it, unless `--set` chose one."""
    from genies.pipeline import sizing

    folder, calls = named_model
    asked = []

    def check_run(plan, config, model_folder, distribution):
        asked.append((plan.n_jobs, config.model, model_folder, distribution("tgt").id))
        return ["sizes"]

    monkeypatch.setattr(sizing, "check_run", check_run)
    monkeypatch.setattr(sizing, "checkpointing_overrides",
                        lambda sizes: {"pt_length": {"delay": 0.5}, "pt_zero": {"delay": 0.01}} if sizes == ["sizes"]
                        else {})
    _run(tmp_path, lm=None, model="org/named", hparams={"pt_length": {"delay": 0.0}})
    assert asked == [(9, "org/named", folder, "tgt")]
    doc = _manifest(tmp_path)
    assert doc["hyperparameters"] == {"pt_zero": {"delay": 0.01}, "pt_length": {"scale": 0.4, "delay": 0.0}}
    assert doc["run"]["model"] == "org/named" and doc["run"]["model_fingerprint"] == "fp-named"
    assert doc["run"]["placement"] == Placement().describe()
    assert [c[0] for c in calls] == ["fingerprint", "load"]  # loaded once, when the first job ran


def test_without_advice_the_plan_is_the_users(tmp_path, monkeypatch, named_model) -> None:
    from genies.pipeline import sizing

    monkeypatch.setattr(sizing, "check_run", lambda *a: [])
    monkeypatch.setattr(sizing, "checkpointing_overrides", lambda sizes: {})
    _run(tmp_path, lm=None, model="org/named", hparams={"pt_length": {"scale": 0.3}})
    assert _manifest(tmp_path)["hyperparameters"]["pt_length"] == {"scale": 0.3, "delay": 0.0}


# ---- the executor --------------------------------------------------------------------------------

def test_the_local_executor_is_the_callers_or_a_new_one(tmp_path) -> None:
    config = _config(tmp_path)
    mine = LocalExecutor(plain=True)
    assert job_executor(config, None, None, mine) is mine
    default = job_executor(config, None, None, None)
    assert isinstance(default, LocalExecutor) and default.plain is False


@pytest.fixture
def recorded_ray(monkeypatch):
    pytest.importorskip("ray")
    from genies.pipeline import ray_executor

    made = []

    class Recorded:
        def __init__(self, recipe, address, *, plain, console):
            made.append((recipe, address, plain, console))

    monkeypatch.setattr(ray_executor, "RayExecutor", Recorded)
    return made


def test_the_ray_executor_gets_the_run_models_recipe_and_the_callers_display(tmp_path, recorded_ray) -> None:
    from genies.pipeline.ray_executor import ModelRecipe

    config = _config(tmp_path, executor="ray", ray_address="h:1", trust_remote_code=True)
    placement = Placement(device="cpu", dtype="float32")
    access = ModelAccess("org/m", "fp", placement.precision_key(), lambda: None, tmp_path, placement)
    console = Console(file=io.StringIO())
    job_executor(config, None, access, LocalExecutor(plain=True, console=console))
    assert recorded_ray == [(ModelRecipe.for_run(tmp_path, "org/m", True, placement, "fp"), "h:1", True, console)]
    lm = SimpleNamespace(path=tmp_path, name="given", trust_remote_code=False, fingerprint="fpg", placement=placement)
    job_executor(config, lm, access, None)
    recipe, address, plain, console = recorded_ray[1]
    assert recipe == ModelRecipe.of(lm) and (address, plain) == ("h:1", False)


# ---- names, the command line -----------------------------------------------------------------------

def test_a_legacy_folder_becomes_its_spec(tmp_path, monkeypatch) -> None:
    folder = (tmp_path / "legacy_method").resolve()
    folder.mkdir()
    assert api.intervention_spec(str(folder)) == str(folder)  # no eval.py: a name as it is
    (folder / "eval.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert api.intervention_spec("legacy_method") == f"legacy:{folder}"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert api.intervention_spec("~/legacy_method") == f"legacy:{folder}"
    assert api.intervention_spec("mms") == "mms"


def test_the_command_line_is_genies_as_typed_or_pythons_argv(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/genies", "run", "--out", "x"])
    assert api._command_line() == ["genies", "run", "--out", "x"]
    monkeypatch.setattr(sys, "argv", ["script.py", "a"])
    assert api._command_line() == ["script.py", "a"]


# ---- the data ------------------------------------------------------------------------------------

def test_a_table_of_distributions_replaces_the_data_on_disk() -> None:
    table = distributions()
    data = resolve_data(SHIFTS, distributions=table)
    assert (data.shifts, data.label, data.data_root, data.note) == (list(SHIFTS), "custom", None, None)
    assert data.load("tgt") is table["tgt"]
    with pytest.raises(UnknownNameError, match="unknown distribution 'nope'"):
        data.load("nope")
    named = resolve_data("probing", distributions=table)
    assert named.label == "probing" and named.shifts and all(s.family == "probing" for s in named.shifts)


def test_the_synthetic_suite_is_generated_under_genies_home(tmp_path, monkeypatch) -> None:
    from genies.data.synth import synthetic_shifts

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    data = resolve_data("synthetic", synthetic_size=8, seed=1)
    assert (data.label, data.data_root, data.note) == ("synthetic", tmp_path / "home" / "synthetic" / "8-1", None)
    assert data.shifts == list(synthetic_shifts())
    first = data.shifts[0].source
    assert data.load(first).id == first and len(data.load(first).train) > 0


def test_a_data_root_names_where_distributions_are_read(tmp_path, monkeypatch) -> None:
    from genies.data.synth import ensure_synthetic, synthetic_shifts

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    root = ensure_synthetic(8, 1)
    shifts = list(synthetic_shifts())[:1]
    data = resolve_data(shifts, data_root=root)
    assert (data.shifts, data.label, data.data_root, data.note) == (shifts, "custom", root, None)
    assert data.load(shifts[0].target).id == shifts[0].target
    monkeypatch.setenv("GENIES_DATA_DIR", str(root))
    found = resolve_data("probing")
    assert found.data_root == root and found.label == "probing"


def test_without_data_a_run_stops_or_falls_back_as_asked(tmp_path, monkeypatch) -> None:
    from genies.data.synth import ensure_synthetic, synthetic_shifts

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))

    def no_data():
        raise DataNotFoundError("no GENIES data found")

    monkeypatch.setattr(home, "find_data_root", no_data)
    with pytest.raises(DataNotFoundError) as err:
        resolve_data("probing")
    assert str(err.value) == "no GENIES data found; or run the synthetic suite with --shifts synthetic"
    data = resolve_data("probing", synthetic_if_no_data=True, synthetic_size=8, seed=2)
    assert data.label == "synthetic" and data.data_root == tmp_path / "home" / "synthetic" / "8-2"
    assert data.note == "no GENIES data found -> running the synthetic suite instead (--synthetic-if-no-data)"
    # a shift file beside its distributions reads them from its own folder, never falls back
    root = ensure_synthetic(8, 1)
    shift = synthetic_shifts()[0]
    shift_file = root / "my_shifts.json"
    shift_file.write_text(json.dumps([{"source": shift.source, "target": shift.target}]))
    beside = resolve_data(str(shift_file), synthetic_if_no_data=True)
    assert (beside.data_root, beside.label, beside.note) == (root, str(shift_file), None)
    assert [(s.source, s.target) for s in beside.shifts] == [(shift.source, shift.target)]
    with pytest.raises(DataNotFoundError, match="--shifts synthetic$"):  # shifts given as objects: no file to look beside
        resolve_data([shift])
    # a shift file without its distributions beside it: no fallback either, the run stops
    elsewhere = tmp_path / "shifts.json"
    elsewhere.write_text(json.dumps([{"source": shift.source, "target": shift.target}]))
    with pytest.raises(DataNotFoundError, match="--shifts synthetic$"):
        resolve_data(str(elsewhere), synthetic_if_no_data=True)


def test_a_shift_file_beside_its_distributions_reads_them_before_the_configured_root(tmp_path, monkeypatch) -> None:
    """`genies data synth` writes its shift file beside its distributions; with GENIES_DATA_DIR
    pointing at other data, the run reads the file's folder (it was "unknown distribution"), and
    `genies plan` and `genies shifts check` read the same root. It does so even where the
    configured root holds the same names (an older copy); where the file's folder lacks some, the
    configured root and its error."""
    from typer.testing import CliRunner

    from genies.cli import _build
    from genies.commands.plan import plan_for
    from genies.data.synth import synthetic_shifts, write_synthetic

    shift = synthetic_shifts()[0]
    synth, other, third = (write_synthetic(tmp_path / name, 8, seed) for seed, name in enumerate("abc"))
    for name in (shift.source, shift.target):
        shutil.rmtree(other / name)
    monkeypatch.setenv("GENIES_DATA_DIR", str(other))
    data = resolve_data(str(synth / "shifts.json"))
    assert data.data_root == synth and data.load(shift.source).id == shift.source
    _, _, source = plan_for(RunConfig(out=tmp_path / "p", shifts=str(synth / "shifts.json")), Precision("float32"))
    assert source == f"the data in {synth} (typical GENIES lengths where it lacks a distribution)"
    checked = CliRunner().invoke(_build(), ["shifts", "check", str(synth / "shifts.json")])
    assert checked.exit_code == 0 and f"every distribution found in {synth}" in checked.output.replace("\n", "")
    monkeypatch.setenv("GENIES_DATA_DIR", str(synth))
    assert resolve_data(str(third / "shifts.json")).data_root == third  # both hold them: the file's own
    shutil.rmtree(synth / shift.source)
    lacking = resolve_data(str(other / "shifts.json"))  # neither holds them all: the configured root
    assert lacking.data_root == synth
    with pytest.raises(UnknownDistributionError, match=f"unknown distribution .{shift.source}. in {synth};"):
        lacking.load(shift.source)


def test_shift_objects_and_names_mix_with_a_table() -> None:
    mixed = resolve_data([Shift("src", "tgt", "tgt", "skill", "extreme")], distributions=distributions())
    assert mixed.label == "custom" and mixed.shifts[0].target == "tgt"


# ---- what the run hands its executor, and what the configuration changes -------------------------

class Spy(LocalExecutor):
    """The local executor, keeping the plan and the job environment it was handed."""

    def execute(self, plan, env, log):
        self.plan, self.env = plan, env
        return super().execute(plan, env, log)


def _spied(tmp_path: Path, lm=StubModel(), **fields) -> Spy:
    spy = Spy(plain=True, console=Console(file=io.StringIO()))
    genies.run(_config(tmp_path, **fields), lm=lm, distributions=distributions(), executor=spy)
    return spy


def test_the_jobs_are_the_plan_of_the_runs_model_data_and_seed(tmp_path, monkeypatch) -> None:
    from genies.data.home import genies_home
    from genies.pipeline.plan import build_plan, configure_methods

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    lm = StubModel()
    spy = _spied(tmp_path, lm=lm, mix_target=(0.5,), out=tmp_path / "deeper" / "still" / "run")
    limited = {n: d.limited(32, 16, seed=3) for n, d in distributions().items()}
    want = build_plan(interventions=["pt_length"], shifts=SHIFTS, methods=configure_methods(
        ["pt_length", "pt_zero"], "cpu"), seed=3, model_fingerprint="fp-stub",
        precision={"dtype": "float32", "quantize": "none"}, data_hash=lambda n, s: limited[n].content_hash(s),
        baseline="pt_zero", target_tuned=("pt_length",), mix_target=(0.5,))
    assert set(spy.plan.fits) == set(want.fits) and set(spy.plan.predicts) == set(want.predicts)
    assert len(want.fits) == 5  # a mixed fit per shift
    doc = json.loads((tmp_path / "deeper" / "still" / "run" / "manifest.json").read_text())
    assert sorted(j["key"] for j in doc["jobs"]) == sorted([*want.fits, *want.predicts])
    assert doc["run"]["mix_target"] == [0.5]
    env = spy.env
    assert env.seed == 3 and env.store.root == tmp_path / "cache" and env.load_model() is lm
    assert env.activation_store.root == genies_home() / "activations" == tmp_path / "home" / "activations"
    assert env.distribution("tgt").content_hash("test") == limited["tgt"].content_hash("test")
    assert any((tmp_path / "cache" / "predict").iterdir())


def test_the_manifest_is_indented_json_ending_in_a_newline(tmp_path) -> None:
    _run(tmp_path)
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1) + "\n"


def test_a_rerun_resumes_into_the_same_folder(tmp_path) -> None:
    _run(tmp_path)
    _run(tmp_path)
    assert {j["status"] for j in _manifest(tmp_path)["jobs"]} == {"cached"}
    starts = [line for line in (tmp_path / "run" / "log.txt").read_text().splitlines() if " start: " in line]
    assert len(starts) == 2  # the log goes on


def test_first_n_and_an_uncapped_budget(tmp_path) -> None:
    _run(tmp_path, first_n=True, max_train=3, max_eval=2)
    doc = _manifest(tmp_path)
    assert doc["run"]["examples"] == "first N" and (doc["run"]["max_train"], doc["run"]["max_eval"]) == (3, 2)
    assert doc["example_indices"]["tgt"] == {"train": [0, 1, 2], "test": [0, 1]}
    _run(tmp_path, budget="paper", out=tmp_path / "paper")
    doc = json.loads((tmp_path / "paper" / "manifest.json").read_text())
    assert doc["run"]["budget"] == "paper" and doc["run"]["max_train"] is None and doc["run"]["max_eval"] is None
    assert doc["example_indices"] == {"src": {}, "tgt": {}, "tgt2": {}}


def test_the_jobs_read_the_capped_data_the_manifest_names(tmp_path) -> None:
    """The budget caps the data the jobs read, not only the indices the manifest lists: the data
    hashes (which enter every job key) are those of the seeded, or first-N, subset."""
    for first_n, seed, out in ((False, 3, "seeded"), (True, None, "first")):
        _run(tmp_path, first_n=first_n, max_train=3, max_eval=1, out=tmp_path / out)
        doc = json.loads((tmp_path / out / "manifest.json").read_text())
        for name, full in distributions().items():
            capped = full.limited(3, 1, seed=seed)
            assert doc["data_hashes"][name] == {split: capped.content_hash(split) for split in ("train", "test")}
            assert len(capped.train) == 3 < len(full.train) and len(capped.test) == 1 < len(full.test)


def test_target_tuned_modes_name_their_candidates(tmp_path) -> None:
    from genies.pipeline.plan import TARGET_TUNED_BEST, TARGET_TUNED_DEFAULT

    assert api.TARGET_TUNED_CANDIDATES == {"default": TARGET_TUNED_DEFAULT, "best": TARGET_TUNED_BEST, "none": ()}
    _run(tmp_path, target_tuned="none", target_tuned_interventions=None)
    doc = _manifest(tmp_path)
    assert doc["run"]["target_tuned"] == "none" and doc["run"]["target_tuned_candidates"] == []
    assert len(doc["jobs"]) == 7  # no target-tuned fit: pt_zero's fit and 2 predictions, pt_length's and 3


def test_a_hyperparameter_file_is_recorded(tmp_path) -> None:
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"pt_length": {"scale": 0.3}}))
    _run(tmp_path, hparams_file=path)
    doc = _manifest(tmp_path)
    assert doc["run"]["hparams_file"] == str(path) and doc["hyperparameters"]["pt_length"]["scale"] == 0.3


@register("pt_preset", family="fine-tuning", description="test stand-in with presets")
class WithPresets(LengthRule):
    presets = {"fast": {"scale": 0.1}, "paper": {}}


def test_the_preset_reaches_every_method(tmp_path) -> None:
    _run(tmp_path, interventions=("pt_preset",), preset="fast")
    doc = _manifest(tmp_path)
    assert doc["run"]["preset"] == "fast" and doc["hyperparameters"]["pt_preset"]["scale"] == 0.1


def test_a_run_on_data_found_on_disk(tmp_path, monkeypatch) -> None:
    from genies.data.synth import ensure_synthetic, synthetic_shifts

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    root = ensure_synthetic(8, 1)
    shift = synthetic_shifts()[0]
    executor = LocalExecutor(plain=True, console=Console(file=io.StringIO()))
    genies.run(_config(tmp_path, shifts=(shift,), data_root=root), lm=StubModel(), executor=executor)
    doc = _manifest(tmp_path)
    assert doc["data_root"] == str(root) and doc["run"]["shifts"] == "custom"
    assert set(doc["data_hashes"]) == {shift.source, shift.target}


def test_without_data_the_run_falls_back_to_its_seeds_synthetic_suite(tmp_path, monkeypatch) -> None:
    def no_data():
        raise DataNotFoundError("no GENIES data found")

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(home, "find_data_root", no_data)
    out = io.StringIO()
    executor = LocalExecutor(plain=True, console=Console(file=out, width=300))
    genies.run(_config(tmp_path, shifts="probing", synthetic_if_no_data=True, max_train=2, max_eval=2), lm=StubModel(),
               executor=executor)
    doc = _manifest(tmp_path)
    assert doc["run"]["shifts"] == "synthetic" and doc["data_root"] == str(tmp_path / "home" / "synthetic" / "64-3")
    assert "running the synthetic suite instead" in out.getvalue()


def test_the_results_are_computed_with_the_runs_seed(tmp_path) -> None:
    """The intervals resample with the run's seed: recomputing with it gives the run's rows, and
    another seed (checked here to matter for this data) does not."""
    from genies.pipeline.results import compute_results

    spy = Spy(plain=True, console=Console(file=io.StringIO()))
    results = genies.run(_config(tmp_path), lm=StubModel(), distributions=distributions(), executor=spy)

    def rows(seed: int) -> list[tuple]:
        again = compute_results(spy.plan, spy.env.store, spy.env.distribution, seed, results.run, [])
        return [(r.target, r.de_ci_low, r.de_ci_high) for r in again.results.rows]

    assert rows(3) == [(r.target, r.de_ci_low, r.de_ci_high) for r in results.rows]
    assert rows(4) != rows(3)


def test_without_an_executor_notes_go_to_stderr(tmp_path, monkeypatch, capsys) -> None:
    table = distributions()
    monkeypatch.setattr(api, "resolve_data", lambda *a, **k: api.ResolvedData(list(SHIFTS), table.__getitem__,
                                                                             "custom", None, "the data note"))
    genies.run(_config(tmp_path), lm=StubModel(), distributions=table)
    captured = capsys.readouterr()
    assert "the data note" in captured.err and "the data note" not in captured.out
