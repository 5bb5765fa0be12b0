"""The legacy adapter runs an original-style intervention folder (train.py / eval.py invoked with
the original argument names) and turns its output JSON into predictions."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from genies.data.schema import Distribution, Example
from genies.interventions.base import FitContext, State, load_intervention

# An original-style intervention that prefers longer (or, if the source says so, shorter)
# responses. It parses arguments the way python-fire did: --key value, lists as literals.
ARGS = """
import ast, json, math, sys
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
"""

TRAIN = ARGS + """
a = args()
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
    probs = []
    for ex in load(folder, "test"):
        best = [r for r, v in ex["responses"].items() if v == 1][0]
        for worse in [r for r, v in ex["responses"].items() if v == 0]:
            probs.append(1 / (1 + math.exp(-config["sign"] * (len(best) - len(worse)) / 4)))
    out = {"eval_accuracy": sum(p > 0.5 for p in probs) / len(probs)}
    if a.get("with_probabilities", True):
        out["eval_probabilities"] = probs
    json.dump(out, open(path, "w"))
"""


def _folder(tmp_path, train=True, eval_src=EVAL):
    folder = tmp_path / "length_rm"
    folder.mkdir()
    if train:
        (folder / "train.py").write_text(TRAIN)
    (folder / "eval.py").write_text(eval_src)
    return folder


def _dist(seed: int, n: int, shorter_wins: bool) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 4))
        lengths = rng.choice(np.arange(1, 30), size=k, replace=False)
        best = int(np.argmin(lengths) if shorter_wins else np.argmax(lengths))
        out.append(Example(f"prompt {i}", tuple("x" * int(n_) + f"#{j}" for j, n_ in enumerate(lengths)), best))
    return out


def _expected(examples: list[Example], sign: int) -> np.ndarray:
    dist = Distribution.from_examples("t", [], examples)
    return np.array([1 / (1 + np.exp(-sign * (len(p.preferred) - len(p.dispreferred)) / 4))
                     for p in dist.eval_pairs("test")])


def test_adapter_trains_then_evaluates_and_reloads(tiny_llama, tmp_path) -> None:
    folder = _folder(tmp_path)
    source = Distribution.from_examples("short_wins", _dist(0, 20, True), _dist(1, 5, True))
    target = Distribution.from_examples("long_wins", [], _dist(2, 8, False))
    method = load_intervention(folder, train_kwargs={"extra": 7})
    state = method.fit(tiny_llama, source, FitContext(state_dir=tmp_path / "state"))
    config = json.loads((tmp_path / "state" / "model" / "config.json").read_text())
    assert config == {"sign": -1, "model_dir": str(tiny_llama.path), "extra": 7}
    pred = method.predict(tiny_llama, state, target, "test", FitContext())
    np.testing.assert_allclose(pred.p_preferred, _expected(target.test, -1))
    assert pred.info["legacy_metrics"]["eval_accuracy"] == 0.0  # shorter-is-better fails on long_wins

    state.save(tmp_path / "moved")
    again = State.load(tmp_path / "moved")
    assert (tmp_path / "moved" / "model" / "config.json").is_file()
    np.testing.assert_allclose(again.predict(tiny_llama, target).p_preferred, pred.p_preferred)


def test_adapter_without_train_py_evaluates_the_base_model_dir(tiny_llama, tmp_path) -> None:
    folder = _folder(tmp_path, train=False, eval_src=EVAL.replace(
        'config = json.load(open(f"{a[\'model_dir\']}/config.json"))', 'config = {"sign": 1}'))
    dist = Distribution.from_examples("d", _dist(3, 6, False), _dist(4, 6, False))
    method = load_intervention(str(folder), eval_kwargs={"with_probabilities": False})
    state = method.fit(tiny_llama, dist, FitContext())
    pred = state.predict(tiny_llama, dist, "train")  # a split that is not a test.json on disk
    assert len(pred.p_preferred) == len(dist.eval_pairs("train")) and np.isnan(pred.p_preferred).all()
    assert pred.info["legacy_metrics"]["eval_accuracy"] == 1.0 and "no per-pair" in pred.info["warning"]


def test_failing_script_reports_its_output(tiny_llama, tmp_path) -> None:
    folder = _folder(tmp_path, train=False, eval_src="raise SystemExit('model too large for this GPU')")
    dist = Distribution.from_examples("d", _dist(3, 2, False), _dist(4, 2, False))
    method = load_intervention(folder)
    with pytest.raises(RuntimeError, match="(?s)exited with status 1.*model too large"):
        method.predict(tiny_llama, method.fit(tiny_llama, dist, FitContext()), dist, "test", FitContext())


def test_folder_without_eval_py_is_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no eval.py"):
        load_intervention(tmp_path / "empty")
    with pytest.raises(KeyError, match="unknown intervention 'nonesuch'"):
        load_intervention("nonesuch")


def test_pipeline_runs_a_folder_as_a_named_method_and_reruns_it_when_edited(tmp_path, tiny_llama):
    """`genies run --intervention path/to/folder` works like a built-in name: the rows carry
    `legacy:<folder>`, a rerun does no work, and editing eval.py reruns only that method."""
    import genies
    from genies.data.shift import Shift

    folder = _folder(tmp_path)
    dists = {name: Distribution.from_examples(name, _dist(seed, 12, shorter), _dist(seed + 1, 6, shorter))
             for name, seed, shorter in [("src", 0, False), ("tgt", 2, False)]}
    kwargs = dict(shifts=[Shift("src", "tgt", "tgt", "skill", "extreme")], distributions=dists,
                  out=tmp_path / "run", cache_dir=tmp_path / "cache", baseline="random",
                  target_tuned_interventions=["random"], plain=True)
    leaked_before = set(Path(tempfile.gettempdir()).glob("genies-state-*"))
    res = genies.run(tiny_llama, [str(folder)], **kwargs)
    assert set(Path(tempfile.gettempdir()).glob("genies-state-*")) == leaked_before
    (row,) = res.rows
    assert row.intervention == "legacy:length_rm"
    assert row.generalization_accuracy == pytest.approx(float(np.mean(_expected(dists["tgt"].test, 1) > 0.5)))
    # the trained model folder was written straight into the job store and renamed into place:
    # one copy, no staging or temporary folder left behind
    (model_dir,) = (tmp_path / "cache").rglob("model")
    assert model_dir.parent.parent.name == "fit" and any(model_dir.iterdir())
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith((".staging", ".tmp"))]

    def statuses() -> list[str]:
        return [j["status"] for j in json.loads((tmp_path / "run" / "manifest.json").read_text())["jobs"]]

    genies.run(tiny_llama, [str(folder)], **kwargs)
    assert "done" not in statuses()
    (folder / "eval.py").write_text(EVAL + "\n# edited\n")
    genies.run(tiny_llama, [str(folder)], **kwargs)
    assert statuses().count("done") == 3  # the folder's fit and its two predictions; baselines stay cached
