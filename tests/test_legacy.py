"""The legacy adapter runs an original-style intervention folder (train.py / eval.py invoked with
the original argument names) as the plugin `legacy:PATH` and turns its output JSON into Scores.

The adapter reads only the base model's folder (`lm.path`), so these tests hand it a stub model:
a folder holding the config.json the scripts read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from genies.data.schema import Distribution, Example
from genies.errors import ConfigError, JobError
from genies.interventions._legacy import Legacy, LegacyFit
from genies.interventions.context import FitContext
from genies.interventions.fitted import load_fitted, save_fitted
from genies.interventions.registry import ENTRY_POINT_GROUP, get_intervention, load_intervention
from genies.interventions.scores import pair_with_labels

# An original-style intervention that prefers longer (or, if the source says so, shorter)
# responses. It parses arguments the way python-fire did: --key value, lists as literals.
ARGS = """
import ast, json, math, os, sys
def args():
    out, argv = {}, sys.argv[1:]
    for key, value in zip(argv[::2], argv[1::2]):
        try:
            out[key[2:]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key[2:]] = value
    return out
def load(folder, split):
    return json.load(open(f"{folder}/{split}.json"))
def record(a, folder):
    # what a script was handed, for the tests to read: its arguments and its data folder
    if "record" in a:
        json.dump({"argv": sys.argv[1:], "name": os.path.basename(folder), "train": load(folder, "train"),
                   "test": load(folder, "test"), "metadata": json.load(open(f"{folder}/metadata.json"))},
                  open(a["record"], "w"))
"""

TRAIN = ARGS + """
a = args()
record(a, a["training_distribution_dir"])
source = load(a["training_distribution_dir"], "train")
longer = sum(len(max(ex["responses"], key=ex["responses"].get)) >
             min(len(r) for r, v in ex["responses"].items() if v == 0) for ex in source)
sign = 1 if 2 * longer >= len(source) else -1
assert a["test_distribution_dirs"] == [a["training_distribution_dir"]]
json.dump({"sign": sign, "model_dir": a["model_dir"], "extra": a.get("extra")},
          open(f"{a['output_dir']}/config.json", "w"))
"""

EVAL = ARGS + """
a = args()
config = json.load(open(f"{a['model_dir']}/config.json"))
for folder, path in zip(a["distribution_dirs"], a["output_paths"]):
    record(a, folder)
    probs = []
    for ex in load(folder, "test"):
        best = [r for r, v in ex["responses"].items() if v == 1][0]
        for worse in [r for r, v in ex["responses"].items() if v == 0]:
            probs.append(1 / (1 + math.exp(-config["sign"] * (len(best) - len(worse)) / 4)))
    out = {"eval_accuracy": sum(p > 0.5 for p in probs) / len(probs), "note": "not a number"}
    if a.get("with_probabilities", True) and not os.path.basename(folder).startswith("noprobs"):
        out["eval_probabilities"] = probs[: a.get("keep", len(probs))]
    json.dump(out, open(path, "w"))
"""


@dataclass(frozen=True)
class StubModel:
    """All the adapter reads of a loaded model: its folder, here holding the config eval.py reads
    when no train.py replaced the model (longer responses win)."""

    path: Path


@pytest.fixture
def lm(tmp_path) -> StubModel:
    base = tmp_path / "base_model"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"sign": 1}))
    return StubModel(base)


def _folder(parent: Path, train: bool = True, eval_src: str = EVAL, name: str = "length_rm") -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    if train:
        (folder / "train.py").write_text(TRAIN)
    (folder / "eval.py").write_text(eval_src)
    return folder


def _examples(seed: int, n: int, shorter_wins: bool) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 4))
        lengths = rng.choice(np.arange(1, 30), size=k, replace=False)
        best = int(np.argmin(lengths) if shorter_wins else np.argmax(lengths))
        out.append(Example(f"prompt {i}", tuple("x" * int(n_) + f"#{j}" for j, n_ in enumerate(lengths)), best,
                           {"id": i}))
    return out


def _expected(examples: list[Example], sign: int) -> np.ndarray:
    dist = Distribution.from_examples("t", [], examples)
    return np.array([1 / (1 + np.exp(-sign * (len(p.preferred) - len(p.dispreferred)) / 4))
                     for p in dist.eval_pairs("test")])


def _score(method: Legacy, lm: StubModel, fitted: LegacyFit, dist: Distribution, split: str,
           state_dir: Path | None = None):
    data = dist.eval_set(split, with_labels=method.reads_eval_labels)
    scores = method.scorer(lm, fitted, FitContext(state_dir=state_dir))(data)
    return scores, pair_with_labels(scores, dist.split(split), f"{dist.id}/{split}")


def test_adapter_trains_then_evaluates_from_the_stored_state(lm, tmp_path) -> None:
    folder = _folder(tmp_path)
    source = Distribution.from_examples("short_wins", _examples(0, 20, True), _examples(1, 5, True))
    target = Distribution.from_examples("long_wins", [], _examples(2, 8, False))
    method = load_intervention(f"legacy:{folder}", train_kwargs={"extra": 7})
    assert method.label == "legacy:length_rm" and method.folder == str(folder.resolve())

    state = tmp_path / "state"
    fitted = method.fit(lm, source.train_only(), FitContext(state_dir=state))
    assert fitted == LegacyFit(trained=True, source="short_wins")
    config = json.loads((state / "model" / "config.json").read_text())
    assert config == {"sign": -1, "model_dir": str(lm.path), "extra": 7}
    assert (state / "train.log").read_text().startswith("$ ")

    # the state as the job store keeps it (the whole folder), read back and moved elsewhere
    save_fitted(fitted, state, intervention=method.name)
    moved = tmp_path / "moved"
    shutil.copytree(state, moved)
    shutil.rmtree(state)
    scores, pred = _score(method, lm, load_fitted(Legacy.fitted_type(), moved), target, "test", moved)
    np.testing.assert_allclose(pred.p_preferred, _expected(target.test, -1))
    first = target.test[0]
    q0 = scores.beats[0]
    np.testing.assert_allclose(q0[first.dispreferred_indices[0], first.preferred], 1 - pred.p_preferred[0])
    assert np.isnan(q0[np.diag_indices(len(first.responses))]).all()
    # shorter-is-better fails on long_wins; only the numeric outputs are kept
    assert pred.info == {"legacy_metrics": {"eval_accuracy": 0.0}}


def test_scripts_get_the_original_arguments_and_folders(lm, tmp_path) -> None:
    """train.py sees the source's train split only (test.json empty); eval.py sees the scored
    split, with its labels and metadata, as test.json of a folder named after the distribution."""
    folder = _folder(tmp_path)
    source = Distribution.from_examples("src/a b", _examples(0, 4, False), _examples(1, 3, False), {"kind": "s"})
    target = Distribution.from_examples("tgt", _examples(2, 2, False), _examples(3, 3, False), {"kind": "t"})
    method = load_intervention(f"legacy:{folder}", train_kwargs={"record": str(tmp_path / "train.json")},
                               eval_kwargs={"record": str(tmp_path / "eval.json")})
    state = tmp_path / "state"
    fitted = method.fit(lm, source.train_only(), FitContext(state_dir=state))
    _score(method, lm, fitted, target, "train", state)  # a split that is no test.json on disk

    train = json.loads((tmp_path / "train.json").read_text())
    src_dir = train["argv"][train["argv"].index("--training_distribution_dir") + 1]
    assert train["argv"] == ["--model_dir", str(lm.path), "--output_dir", str(state / "model"),
                             "--training_distribution_dir", src_dir, "--test_distribution_dirs", f"['{src_dir}']",
                             "--record", str(tmp_path / "train.json")]
    assert train["name"] == "src_a_b" and train["metadata"] == {"kind": "s"} and train["test"] == []
    assert train["train"] == [ex.to_record() for ex in source.train]

    evaluated = json.loads((tmp_path / "eval.json").read_text())
    data_dir = evaluated["argv"][3][2:-2]
    assert evaluated["argv"] == ["--model_dir", str(state / "model"), "--distribution_dirs", f"['{data_dir}']",
                                 "--output_paths", f"['{Path(data_dir).parent / 'eval.json'}']",
                                 "--record", str(tmp_path / "eval.json")]
    assert evaluated["name"] == "tgt" and evaluated["metadata"] == {"kind": "t"} and evaluated["train"] == []
    assert evaluated["test"] == [ex.to_record() for ex in target.train]
    assert not Path(data_dir).exists()  # the temporary folder is gone


def test_folder_without_train_py_evaluates_the_base_model(lm, tmp_path) -> None:
    folder = _folder(tmp_path, train=False)
    dist = Distribution.from_examples("d", _examples(3, 6, False), _examples(4, 6, False))
    method = load_intervention(f"legacy:{folder}")
    fitted = method.fit(lm, dist.train_only(), FitContext())  # no state folder needed: nothing is written
    assert fitted == LegacyFit(trained=False, source="d")
    _, pred = _score(method, lm, fitted, dist, "test")
    np.testing.assert_allclose(pred.p_preferred, _expected(dist.test, 1))  # the base model's config: sign +1


def test_failing_script_reports_its_output(lm, tmp_path) -> None:
    folder = _folder(tmp_path, train=False, eval_src="raise SystemExit('model too large for this GPU')")
    dist = Distribution.from_examples("d", _examples(3, 2, False), _examples(4, 2, False))
    method = load_intervention(f"legacy:{folder}")
    with pytest.raises(JobError, match=f"(?s)eval.py in {folder}.*exited with status 1.*model too large"):
        _score(method, lm, method.fit(lm, dist.train_only(), FitContext()), dist, "test")


def test_failing_train_py_names_its_log(lm, tmp_path) -> None:
    folder = _folder(tmp_path)
    (folder / "train.py").write_text("print('loading'); raise SystemExit(3)")
    dist = Distribution.from_examples("d", _examples(3, 2, False), [])
    with pytest.raises(JobError, match=f"(?s)exited with status 3; log: {tmp_path / 'state' / 'train.log'}.*loading"):
        load_intervention(f"legacy:{folder}").fit(lm, dist, FitContext(state_dir=tmp_path / "state"))


def test_a_script_past_its_timeout_is_killed(lm, tmp_path) -> None:
    folder = _folder(tmp_path, train=False, eval_src="import time; time.sleep(60)")
    dist = Distribution.from_examples("d", [], _examples(4, 2, False))
    method = load_intervention(f"legacy:{folder}", timeout_s="0.5")
    with pytest.raises(JobError, match=r"eval.py in .* ran past 0.5 s"):
        _score(method, lm, LegacyFit(trained=False, source="d"), dist, "test")


@pytest.mark.parametrize(("eval_kwargs", "missing"), [
    ({"with_probabilities": False}, "the output has no eval_probabilities"),
    ({"keep": 2}, "eval_probabilities holds 2 values for"),
])
def test_eval_without_per_pair_probabilities_fails_its_job(lm, tmp_path, eval_kwargs, missing) -> None:
    folder = _folder(tmp_path, train=False)
    dist = Distribution.from_examples("target_x", [], _examples(4, 5, False))
    method = load_intervention(f"legacy:{folder}", eval_kwargs=eval_kwargs)
    with pytest.raises(JobError, match=f"legacy: {folder}/eval.py on target_x/test: {missing}"):
        _score(method, lm, LegacyFit(trained=False, source="d"), dist, "test")


def test_in_a_run_only_the_job_without_probabilities_fails(lm, tmp_path) -> None:
    """Through the executor: the model folder lands in the job store, the good target's
    predictions keep the script's metrics, the target without probabilities fails alone."""
    from genies.pipeline.executor import JobEnv, run_group
    from genies.pipeline.jobs import FitJob, PredictJob, stable_json
    from genies.pipeline.store import JobStore

    folder = _folder(tmp_path)
    dists = {"src": Distribution.from_examples("src", _examples(0, 8, False), []),
             "tgt": Distribution.from_examples("tgt", [], _examples(2, 4, False)),
             "noprobs": Distribution.from_examples("noprobs", [], _examples(3, 4, False))}
    method = load_intervention(f"legacy:{folder}")
    fit = FitJob(method.label, method.name, stable_json(method.hparams()), "src", "fitkey")
    predicts = [PredictJob(fit, name, "test", f"{name}key") for name in ("tgt", "noprobs")]
    store = JobStore(tmp_path / "cache")
    env = JobEnv(load_model=lambda: lm, distribution=dists.__getitem__, store=store, seed=0)
    records = [rec for rec, _ in run_group(fit, predicts, env)]
    assert [r.status for r in records] == ["done", "done", "failed"]
    assert "noprobs/test: the output has no eval_probabilities" in records[2].error
    assert (store.fit_dir("fitkey") / "model" / "config.json").is_file()
    pred = store.load_predictions("tgtkey")
    np.testing.assert_allclose(pred.p_preferred, _expected(dists["tgt"].test, 1))
    assert pred.info["legacy_metrics"] == {"eval_accuracy": 1.0}


def test_a_moved_folder_keeps_its_keys_and_an_edited_script_changes_them(tmp_path) -> None:
    from genies.pipeline.jobs import fit_key

    def key(folder: Path, **overrides) -> str:
        method = load_intervention(f"legacy:{folder}", **overrides)
        return fit_key(method=method, model_fingerprint="m", precision={"dtype": "float32", "quantize": "none"}, source_hash="s", seed=0)

    first = _folder(tmp_path / "here")
    (first / "helpers").mkdir()
    (first / "helpers" / "util.py").write_text("X = 1\n")
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(first, moved)
    base = key(first)
    assert key(moved) == base
    assert key(moved, timeout_s=5, python=sys.executable, pythonpath=["/src"], cwd=str(tmp_path)) == base
    assert key(moved, eval_kwargs={"batch": 2}) != base  # script arguments can change results
    (moved / "helpers" / "util.py").write_text("X = 2\n")  # code the scripts import counts too
    assert key(moved) != base
    shutil.copytree(first, tmp_path / "edited")
    (tmp_path / "edited" / "eval.py").write_text(EVAL + "\n# edited\n")
    assert key(tmp_path / "edited") != base


def test_a_second_process_runs_it_from_its_spec_string(tmp_path) -> None:
    """No run-time registration: a fresh interpreter resolves `legacy:PATH` through the entry
    point, fits and scores."""
    folder = _folder(tmp_path)
    source = Distribution.from_examples("short_wins", _examples(0, 10, True), [])
    target = Distribution.from_examples("long_wins", [], _examples(2, 5, False))
    records = {name: [ex.to_record() for ex in dist.split(split)]
               for name, dist, split in [("train", source, "train"), ("test", target, "test")]}
    (tmp_path / "data.json").write_text(json.dumps(records))
    code = f"""
import json, sys
from pathlib import Path
from types import SimpleNamespace
from genies.data.schema import Distribution, Example
from genies.interventions.context import FitContext
from genies.interventions.registry import load_intervention
from genies.interventions.scores import pair_with_labels
assert "genies.interventions._legacy" not in sys.modules
data = json.load(open({str(tmp_path / 'data.json')!r}))
examples = {{k: [Example(r["prompt"], tuple(r["responses"]), list(r["responses"].values()).index(1))
                for r in v] for k, v in data.items()}}
source = Distribution.from_examples("short_wins", examples["train"], [])
target = Distribution.from_examples("long_wins", [], examples["test"])
method = load_intervention({f'legacy:{folder}'!r})
lm = SimpleNamespace(path=Path({str(tmp_path / 'base')!r}))
ctx = FitContext(state_dir=Path({str(tmp_path / 'state')!r}))
fitted = method.fit(lm, source, ctx)
scores = method.scorer(lm, fitted, ctx)(target.eval_set("test", with_labels=method.reads_eval_labels))
print(json.dumps({{"label": method.label, "p": pair_with_labels(scores, target.test, "t").p_preferred.tolist()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["label"] == "legacy:length_rm"
    np.testing.assert_allclose(result["p"], _expected(target.test, -1))


def test_legacy_is_an_unlisted_entry_point_plugin() -> None:
    (ep,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "legacy"]
    assert ep.load() is Legacy is get_intervention("legacy") and not Legacy.listed


def test_a_spec_without_a_usable_folder_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="legacy: /nonexistent is not an intervention folder"):
        load_intervention("legacy:/nonexistent")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'gone'} is not an intervention folder.*no such folder"):
        load_intervention(f"legacy:{tmp_path / 'gone'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"{tmp_path / 'empty'} is not an intervention folder.*no eval.py"):
        load_intervention(f"legacy:{tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match="no folder given; name one as legacy:PATH"):
        load_intervention("legacy")
