"""DE of weak-to-strong students and ceilings (docs/w2s.md): the definition and interval of `genies
run` (`genies.pipeline.results.result_row`) on stored predictions built by hand, and a run whose
plan holds the zero-shot and target-tuned jobs DE needs, as ordinary cached jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from planted import planted

from genies.data.schema import Distribution, Example
from genies.data.shift import Shift
from genies.interventions.scores import Predictions
from genies.pipeline.executor import LocalExecutor
from genies.pipeline.jobs import FitJob, PredictJob
from genies.pipeline.results import _evaluation, result_row
from genies.weak_to_strong import W2SConfig, load_results, w2s
from genies.weak_to_strong.metrics import DePredictions, target_result


def _pred(p: list[float]) -> Predictions:
    """One pair per prompt (two responses, the first preferred) with these P(preferred)."""
    n = len(p)
    return Predictions(np.arange(n), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), np.array(p))


def _split(name: str, n: int) -> list[Example]:
    return [Example(f"{name} {i}", ("a", "b"), 0) for i in range(n)]


GEN = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.9, 0.8]  # 6 of 8 right: 0.75
CEILING = [0.9, 0.8, 0.7, 0.7, 0.6, 0.6, 0.9, 0.8]  # 8 of 8: 1.0
BASE = [0.6, 0.4, 0.4, 0.6, 0.6, 0.4, 0.4, 0.6]  # 4 of 8: 0.5
LORA = [0.9, 0.9, 0.1, 0.8, 0.7, 0.6]  # on the reference: 5 of 6
WORSE = [0.9, 0.1, 0.1, 0.8, 0.2, 0.6]  # 3 of 6, not the winner


def _references() -> DePredictions:
    return DePredictions("ref", 6, "zero_shot", _pred(BASE), {"worse": _pred(WORSE), "lora": _pred(LORA)})


def test_de_is_hand_computed_and_the_target_tuned_winner_is_the_best_candidate() -> None:
    t = target_result("src", "tgt", 8, {"xent": _pred(GEN)}, _pred(CEILING), 0, _references())
    assert t.reference.target_tuned_method == "lora" and t.reference.target_tuned.value == pytest.approx(5 / 6)
    assert t.reference.baseline.value == 0.5 and t.reference.baseline_method == "zero_shot"
    (student,) = t.students
    assert student.de.value == pytest.approx((0.75 - 0.5) / (5 / 6))  # 0.3
    assert t.ceiling_de.value == pytest.approx((1.0 - 0.5) / (5 / 6))  # 0.6
    assert student.de.low <= student.de.value <= student.de.high
    assert student.accuracy.value == 0.75 and t.ceiling.value == 1.0


def test_de_and_its_interval_are_genies_runs() -> None:
    """The same predictions through `genies run`'s row: equal DE and interval, to the last bit."""
    dists = {"tgt": Distribution.from_examples("tgt", [], _split("tgt", 8)),
             "ref": Distribution.from_examples("ref", [], _split("ref", 6))}

    def evaluation(name: str, distribution: str, p: list[float]):
        job = PredictJob(FitJob(name, name, "{}", None, f"fit-{name}"), distribution, "test", f"predict-{name}")
        return _evaluation(job, dists[distribution], _pred(p), 0)

    row, _ = result_row(Shift("src", "tgt", "ref", "c", "f"), "student", evaluation("student", "tgt", GEN),
                        evaluation("student", "tgt", GEN), evaluation("zero_shot", "tgt", BASE),
                        evaluation("lora", "ref", LORA), 0)
    t = target_result("src", "tgt", 8, {"xent": _pred(GEN)}, None, 0, _references())
    de = t.students[0].de
    assert (de.value, de.low, de.high) == (row.differential_elicitation, row.de_ci_low, row.de_ci_high)


def test_a_student_that_equals_the_baseline_has_de_zero_with_a_zero_width_interval() -> None:
    """Student and baseline are resampled on the same prompts, so every replicate's gain is 0:
    a bootstrap that drew them independently would give a wide interval."""
    t = target_result("src", "tgt", 8, {"xent": _pred(BASE)}, None, 0, _references())
    de = t.students[0].de
    assert (de.value, de.low, de.high) == (0.0, 0.0, 0.0)


def test_without_references_there_is_no_de() -> None:
    t = target_result("src", "tgt", 8, {"xent": _pred(GEN)}, _pred(CEILING), 0)
    assert t.reference is None and t.ceiling_de is None and t.students[0].de is None
    with pytest.raises(ValueError, match="at least one target-tuned candidate"):  # no A_tt: no references
        DePredictions("ref", 6, "zero_shot", _pred(BASE), {})


LORA_HP = {"r": 4, "alpha": 8, "dropout": 0.0, "learning_rate": 3e-3, "steps": 2, "batch_size": 4}


def _data() -> dict[str, Distribution]:
    return {"src": Distribution.from_examples("src", planted(16, 1), planted(8, 2)),
            "tgt": Distribution.from_examples("tgt", planted(8, 3), planted(8, 4))}


def _run(tmp_path: Path, lm, name: str, **extra):
    """tfidf weak supervisor and students, DE's references on the tiny model."""
    config = W2SConfig(out=tmp_path / name, weak_method="tfidf", method="tfidf", max_train=16, max_eval=8,
                       shifts=(Shift("src", "tgt", "tgt", "test", "test"),), hparams={"lora": LORA_HP},
                       cache_dir=tmp_path / "jobs", **extra)
    return w2s(config, weak_lm=lm, strong_lm=lm, distributions=_data(), executor=LocalExecutor(plain=True))


def test_a_run_plans_the_zero_shot_and_target_tuned_jobs_and_writes_de(tmp_path: Path, tiny_llama, capsys) -> None:
    """DE's zero-shot baseline and LoRA reference run on the strong model beside the students;
    `--target-tuned none` plans neither (all its jobs were the first run's)."""
    results = _run(tmp_path, tiny_llama, "de")
    (t,) = results.targets
    assert t.reference.baseline_method == "zero_shot" and t.reference.target_tuned_method == "lora"
    assert t.reference.target_reference == "tgt" and results.run.target_tuned == "default"
    de = t.students[0].de
    expected = (t.students[0].accuracy.value - t.reference.baseline.value) / t.reference.target_tuned.value
    assert de.value == pytest.approx(expected) and t.ceiling_de is not None
    assert load_results(tmp_path / "de") == results
    assert {"baseline", "target-tuned lora"} <= set(results.run.hyperparameters)
    capsys.readouterr()
    none = _run(tmp_path, tiny_llama, "none", target_tuned="none")
    assert " done " not in capsys.readouterr().out  # every job of this plan was in the first one
    assert none.targets[0].reference is None and none.targets[0].students[0].de is None
    assert none.targets[0].students[0].accuracy == t.students[0].accuracy


def test_a_w2s_json_written_before_de_still_loads(tmp_path: Path, tiny_llama) -> None:
    """Format 2 stays: the DE fields have defaults, so a file without them reads as a run without DE."""
    _run(tmp_path, tiny_llama, "old", target_tuned="none")
    path = tmp_path / "old" / "w2s.json"
    doc = json.loads(path.read_text())
    del doc["run"]["target_tuned"]
    for target in doc["targets"]:
        del target["ceiling_de"], target["reference"]
        for s in target["students"]:
            del s["de"]
    path.write_text(json.dumps(doc))
    old = load_results(tmp_path / "old")
    assert old.targets[0].reference is None and old.targets[0].students[0].de is None
    assert old.run.target_tuned == "none" and doc["format"] == 2


def test_a_target_with_a_failed_target_tuned_candidate_has_no_de() -> None:
    """As in `genies run`: A_tt is the best of every candidate, never of those that happened to
    finish, so one failed candidate leaves the target without DE (and all of them present give it)."""
    from types import SimpleNamespace

    from genies.weak_to_strong.plan import TargetJobs
    from genies.weak_to_strong.run import _de_predictions

    def job(key: str, method: str) -> SimpleNamespace:
        return SimpleNamespace(key=key, fit=SimpleNamespace(intervention=method))

    stored = {"base": _pred(BASE), "lora": _pred(LORA), "worse": _pred(WORSE)}
    store = SimpleNamespace(has_predictions=stored.__contains__, load_predictions=stored.__getitem__)
    t = TargetJobs("src", "tgt", (), job("ceiling", "ceiling"), "ref", job("base", "zero_shot"),
                   (job("lora", "lora"), job("worse", "worse")))
    def distribution(name: str) -> Distribution:
        return Distribution.from_examples(name, [], _split(name, 6))

    got = _de_predictions(t, store, distribution)
    assert got is not None and set(got.target_tuned) == {"lora", "worse"}
    del stored["worse"]
    assert _de_predictions(t, store, distribution) is None
