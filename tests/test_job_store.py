"""The job store under crashes: a prediction is visible complete or not at all, and a run killed
inside a group (its fit stored, some of its predictions not) resumes with exactly the missing
predictions. Uses the stand-in methods and helpers of test_pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from genies.interventions.fitted import save_fitted
from genies.interventions.scores import Predictions
from genies.pipeline import executor
from genies.pipeline.store import JobStore

from test_pipeline import run, run_kwargs  # tests/test_pipeline.py: stand-in methods, run helper

METHODS = ["pt_length", "pt_length2"]


def _predictions() -> Predictions:
    return Predictions(example_index=np.array([0, 1]), preferred_index=np.array([0, 0]),
                       dispreferred_index=np.array([1, 2]), p_preferred=np.array([0.25, 0.75]),
                       response_scores=None, info={"note": "x"})


def _jobs(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "manifest.json").read_text())["jobs"]


def _crash(monkeypatch: pytest.MonkeyPatch, predict_dir: Path, mode: str) -> list[Path]:
    """Make the next write of a prediction die once: "mid-write" after half of its bytes reached
    the disk, "before-rename" after all of them were written but before the rename. Returns the
    paths whose write died."""
    import os

    died: list[Path] = []
    if mode == "mid-write":
        real_bytes, real_text = Path.write_bytes, Path.write_text

        def half_then_die(path: Path, data, *args, **kwargs):
            if died or path.parent != predict_dir:
                return (real_bytes if isinstance(data, bytes) else real_text)(path, data, *args, **kwargs)
            raw = data if isinstance(data, bytes) else data.encode()
            real_bytes(path, raw[: len(raw) // 2])
            died.append(path)
            raise OSError(28, "No space left on device (simulated crash)")

        monkeypatch.setattr(Path, "write_bytes", half_then_die)
        monkeypatch.setattr(Path, "write_text", half_then_die)
    else:
        real_replace = os.replace

        def die_before_rename(src, dst, *args, **kwargs):
            if died or Path(dst).parent != predict_dir:
                return real_replace(src, dst, *args, **kwargs)
            assert Path(src).stat().st_size > 0, "the bytes must be written before the rename"
            died.append(Path(dst))
            raise OSError(5, "Input/output error (simulated crash)")

        monkeypatch.setattr(os, "replace", die_before_rename)
    return died


@pytest.mark.parametrize("mode", ["mid-write", "before-rename"])
def test_a_crashed_prediction_write_leaves_nothing_visible(tmp_path, monkeypatch, mode) -> None:
    store = JobStore(tmp_path / "jobs")
    (tmp_path / "jobs" / "predict").mkdir(parents=True)
    died = _crash(monkeypatch, store.predict_file("k").parent, mode)
    with pytest.raises(OSError, match="simulated crash"):
        store.save_predictions("k", _predictions())
    assert died, "the crash was not injected: predictions are not written to the store's predict folder"
    assert not store.has_predictions("k")
    assert not store.predict_file("k").exists()
    # a reader (the next run) lists nothing but hidden temporary names, and the temporary is gone too
    assert [p.name for p in store.predict_file("k").parent.iterdir() if not p.name.startswith(".")] == []
    monkeypatch.undo()
    store.save_predictions("k", _predictions())
    back = store.load_predictions("k")
    np.testing.assert_array_equal(back.p_preferred, [0.25, 0.75])
    assert back.info == {"note": "x"}


@pytest.mark.parametrize("mode", ["mid-write", "before-rename"])
def test_a_run_whose_prediction_write_crashed_recomputes_exactly_it(tmp_path, tiny_llama, monkeypatch, mode) -> None:
    predict_dir = tmp_path / "cache" / "predict"
    died = _crash(monkeypatch, predict_dir, mode)
    first = run(tiny_llama, METHODS, **run_kwargs(tmp_path))
    assert len(died) == 1, "the crash was not injected: predictions are not written to the store's predict folder"
    crashed_key = died[0].name.lstrip(".").split(".")[0]  # `<key>.json` or its `.<key>.json.*.tmp`
    failed = [j for j in _jobs(tmp_path / "run") if j["status"] == "failed"]
    assert [(j["kind"], j["key"]) for j in failed] == [("predict", crashed_key)]
    assert first.failed
    assert not (predict_dir / f"{crashed_key}.json").exists(), "a half-written prediction is visible"
    assert all(not p.name.startswith(f"{crashed_key}.") for p in predict_dir.iterdir())
    monkeypatch.undo()
    rerun = run(tiny_llama, METHODS, **run_kwargs(tmp_path))
    jobs = _jobs(tmp_path / "run")
    assert [j["key"] for j in jobs if j["status"] == "done"] == [crashed_key]
    assert {j["status"] for j in jobs if j["key"] != crashed_key} == {"cached"}
    assert not rerun.failed and len(rerun.rows) == 4
    run(tiny_llama, METHODS, **run_kwargs(tmp_path / "fresh"))
    assert (tmp_path / "run" / "results.csv").read_bytes() == (tmp_path / "fresh" / "run" / "results.csv").read_bytes()


class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` in the executor sees it, the run just stops."""


def test_a_kill_inside_a_group_resumes_with_exactly_its_missing_predictions(tmp_path, tiny_llama,
                                                                             monkeypatch) -> None:
    """The run dies after a group's fit and its first prediction were stored, before its other
    predictions: the rerun takes the fit and that prediction from the store and computes the
    missing predictions of that group (and the groups that never started), nothing else."""
    real = executor.run_group
    interrupted: dict[str, list[str]] = {}

    def killed_after_first_prediction(fit, predicts, env, on_start=None):
        for n, item in enumerate(real(fit, predicts, env, on_start)):
            yield item
            if n == 1 and len(predicts) >= 2 and not interrupted:
                interrupted.update(fit=[fit.key], stored=[predicts[0].key], missing=[p.key for p in predicts[1:]])
                raise Killed

    monkeypatch.setattr(executor, "run_group", killed_after_first_prediction)
    with pytest.raises(Killed):
        run(tiny_llama, METHODS, **run_kwargs(tmp_path))
    assert interrupted, "no group with two predictions: the kill never landed inside a group"
    store = JobStore(tmp_path / "cache")
    assert store.has_fit(interrupted["fit"][0]) and store.has_predictions(interrupted["stored"][0])
    assert not any(store.has_predictions(k) for k in interrupted["missing"])
    monkeypatch.undo()
    resumed = run(tiny_llama, METHODS, **run_kwargs(tmp_path))
    status = {j["key"]: (j["kind"], j["status"]) for j in _jobs(tmp_path / "run")}
    assert status[interrupted["fit"][0]] == ("fit", "cached")
    assert status[interrupted["stored"][0]] == ("predict", "cached")
    assert all(status[k] == ("predict", "done") for k in interrupted["missing"])
    assert all(store.has_predictions(k) for k in interrupted["missing"])
    assert not resumed.failed and len(resumed.rows) == 4
    fresh_dir = tmp_path / "fresh"
    run(tiny_llama, METHODS, **run_kwargs(fresh_dir))
    assert (tmp_path / "run" / "results.csv").read_bytes() == (fresh_dir / "run" / "results.csv").read_bytes()


@dataclass(frozen=True)
class _State:
    """A fitted state as a method declares one."""

    weights: np.ndarray
    note: str


def test_the_store_lays_out_fits_and_predictions_by_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    assert JobStore().root == tmp_path / "home" / "jobs"
    store = JobStore(tmp_path / "jobs")
    assert store.fit_dir("k") == tmp_path / "jobs" / "fit" / "k"
    assert store.predict_file("k") == tmp_path / "jobs" / "predict" / "k.json"
    store.fit_dir("k").mkdir(parents=True)
    assert not store.has_fit("k"), "a folder without fitted.json is not a stored fit"
    with store.publish_fit("k") as staging:
        save_fitted(_State(np.array([1.5, -2.0]), "n"), staging, intervention="m")
    assert store.has_fit("k") and not store.has_fit("other")
    back = store.load_fitted("k", _State)
    assert back.note == "n" and np.array_equal(back.weights, [1.5, -2.0])
    assert not store.has_predictions("k")
    store.save_predictions("k", _predictions())
    assert store.has_predictions("k") and not store.has_predictions("other")


def test_predictions_are_stored_as_this_json_document_and_read_back_typed(tmp_path) -> None:
    """Integer method scores come back as floats, a missing score as NaN, an example without
    scores as None; the index arrays stay integers even when empty (they index examples)."""
    store = JobStore(tmp_path)
    pred = Predictions(example_index=np.array([0, 1, 1, 2]), preferred_index=np.array([0, 0, 0, 1]),
                       dispreferred_index=np.array([1, 1, 2, 0]), p_preferred=np.array([0.25, 1.0, 0.5, 0.0]),
                       response_scores=[np.array([1.0, np.nan]), np.array([3, 5, 7]), None],
                       info={"n": np.int64(3), "loss": float("nan")})
    store.save_predictions("k", pred)
    assert json.loads(store.predict_file("k").read_text()) == {
        "example_index": [0, 1, 1, 2], "preferred_index": [0, 0, 0, 1], "dispreferred_index": [1, 1, 2, 0],
        "p_preferred": [0.25, 1.0, 0.5, 0.0], "response_scores": [[1.0, None], [3, 5, 7], None],
        "info": {"n": 3, "loss": None}}
    back = store.load_predictions("k")
    for name in ("example_index", "preferred_index", "dispreferred_index", "p_preferred"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pred, name))
    assert back.p_preferred.dtype == np.float64
    first, second, third = back.response_scores
    assert first.dtype == second.dtype == np.float64 and first[0] == 1.0 and np.isnan(first[1])
    assert second.tolist() == [3.0, 5.0, 7.0] and third is None
    assert back.info == {"n": 3, "loss": None}

    empty = np.array([], dtype=np.int64)
    store.save_predictions("empty", Predictions(empty, empty, empty, np.array([]), None, {}))
    back = store.load_predictions("empty")
    assert [getattr(back, n).dtype for n in ("example_index", "preferred_index", "dispreferred_index")] == [
        np.int64] * 3
    assert back.response_scores is None and back.info == {}
    store.predict_file("old").write_text(json.dumps({"example_index": [0], "preferred_index": [0],
                                                     "dispreferred_index": [1], "p_preferred": [0.5],
                                                     "info": None}))
    old = store.load_predictions("old")
    assert old.response_scores is None and old.info == {}
