"""The job plan and its keys, without a model: which fits and predictions a run needs (each once),
what a cell points to, and what enters a job's content hash. Uses the stand-in methods of
test_pipeline (pt_length, pt_length2: fitted on a source; pt_zero: needs no training data)."""

from __future__ import annotations

import hashlib
import json

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from genies.data.shift import Shift
from genies.errors import ConfigError
from genies.pipeline import jobs
from genies.pipeline.jobs import FitJob, PredictJob, content_hash, fit_key, predict_key, stable_json
from genies.pipeline.plan import BASELINE, TARGET_TUNED_DEFAULT, PlanBuilder, build_plan, configure_methods
from genies.pipeline.views import Part, TargetMix, TrainView

import test_pipeline  # registers the stand-in methods
from genies.interventions import register

SHIFTS = [Shift("src", "tgt", "tgt", "skill", "extreme"), Shift("src", "tgt2", "tgt", "quality", "probing")]


FP32 = {"dtype": "float32", "quantize": "none"}


def _plan(interventions=("pt_length", "pt_length2"), shifts=SHIFTS, seed=0, fingerprint="model-a", hashes=None,
          overrides=None, precision=FP32):
    methods = configure_methods([*interventions, "pt_zero"], None, overrides)
    calls: list[tuple[str, str]] = []

    def data_hash(distribution: str, split: str) -> str:
        calls.append((distribution, split))
        return (hashes or {}).get((distribution, split), f"h-{distribution}-{split}")

    plan = build_plan(interventions=list(interventions), shifts=shifts, methods=methods, seed=seed,
                      model_fingerprint=fingerprint, precision=precision, data_hash=data_hash, baseline="pt_zero",
                      target_tuned=("pt_length",))
    return plan, calls


def _fits(plan) -> set[tuple[str, str | None]]:
    return {(f.intervention, f.source) for f in plan.fits.values()}


def _predicts(plan) -> set[tuple[str, str | None, str, str]]:
    return {(p.fit.intervention, p.fit.source, p.distribution, p.split) for p in plan.predicts.values()}


def test_defaults_name_the_papers_baseline_and_reference():
    assert BASELINE == "zero_shot" and TARGET_TUNED_DEFAULT == ("lora",)


def test_the_plan_holds_each_job_once():
    """Two shifts from src (to tgt and tgt2, both with reference tgt), two methods: zero-shot is
    fitted once and predicts each target once; pt_length is fitted on src and, as the
    target-tuned reference, on tgt; every method predicts both targets and its source."""
    plan, calls = _plan()
    assert _fits(plan) == {("pt_zero", None), ("pt_length", "src"), ("pt_length", "tgt"), ("pt_length2", "src")}
    assert _predicts(plan) == {
        ("pt_zero", None, "tgt", "test"), ("pt_zero", None, "tgt2", "test"),
        ("pt_length", "tgt", "tgt", "test"),
        *{(m, "src", d, "test") for m in ("pt_length", "pt_length2") for d in ("tgt", "tgt2", "src")},
    }
    assert (len(plan.fits), len(plan.predicts), plan.n_jobs) == (4, 9, 13)
    assert all(key == job.key for key, job in (*plan.fits.items(), *plan.predicts.items()))
    by_label = {(f.intervention, f.source): f for f in plan.fits.values()}
    assert {(p.distribution, p.split) for p in plan.predicts_of(by_label["pt_length", "src"])} == {
        ("tgt", "test"), ("tgt2", "test"), ("src", "test")}
    assert [(p.fit.source, p.distribution) for p in plan.predicts_of(by_label["pt_length", "tgt"])] == [("tgt", "tgt")]
    # data is hashed per split read: train splits of the sources fitted on, test splits predicted
    assert set(calls) == {("src", "train"), ("tgt", "train"), ("tgt", "test"), ("tgt2", "test"), ("src", "test")}
    assert set(plan.hparams) == {"pt_zero", "pt_length", "pt_length2"}
    assert plan.hparams["pt_length"] == {"scale": 0.4, "delay": 0.0}


def test_each_cell_points_at_its_own_predictions():
    plan, _ = _plan()
    assert [(c.intervention, c.shift.target) for c in plan.cells] == [
        ("pt_length", "tgt"), ("pt_length2", "tgt"), ("pt_length", "tgt2"), ("pt_length2", "tgt2")]
    for cell in plan.cells:
        where = lambda job: (job.fit.intervention, job.fit.source, job.distribution, job.split)  # noqa: E731
        assert where(cell.generalization) == (cell.intervention, "src", cell.shift.target, "test")
        assert where(cell.source_id) == (cell.intervention, "src", "src", "test")
        assert where(cell.baseline) == ("pt_zero", None, cell.shift.target, "test")
        assert [where(j) for j in cell.target_tuned] == [("pt_length", "tgt", "tgt", "test")]
        assert cell.shift in SHIFTS
    # the same job object wherever a cell needs it: stored once, read once
    assert plan.cells[0].generalization.fit is plan.cells[2].generalization.fit
    assert plan.cells[0].target_tuned[0] is plan.cells[1].target_tuned[0]


def test_fit_jobs_rebuild_their_method_and_say_what_they_are():
    plan, _ = _plan(overrides={"pt_length2": {"scale": 0.25}})
    by_label = {(f.intervention, f.source): f for f in plan.fits.values()}
    fit = by_label["pt_length2", "src"]
    assert (fit.method_name, fit.hparams) == ("pt_length2", {"scale": 0.25, "delay": 0.0})
    method = fit.method()
    assert (type(method).__name__, method.scale) == ("LengthRule2", 0.25)
    assert fit.label == "fit pt_length2 on src"
    assert by_label["pt_zero", None].label == "fit pt_zero on (no training data)"
    labels = {p.label for p in plan.predicts.values()}
    assert "predict pt_length2 (trained on src) on tgt2/test" in labels
    assert "predict pt_zero on tgt/test" in labels


def test_keys_change_with_exactly_what_changes_results():
    plan, _ = _plan()
    keys = lambda p: {(f.intervention, f.source): f.key for f in p.fits.values()}  # noqa: E731
    pkeys = lambda p: {(j.fit.intervention, j.fit.source, j.distribution): j.key for j in p.predicts.values()}  # noqa: E731
    base, pbase = keys(plan), pkeys(plan)
    assert len(set(base.values())) == 4 and len(set(pbase.values())) == 9
    assert keys(_plan()[0]) == base and pkeys(_plan()[0]) == pbase  # deterministic
    for changed in (_plan(seed=1)[0], _plan(fingerprint="model-b")[0]):
        assert not set(keys(changed).values()) & set(base.values())
        assert not set(pkeys(changed).values()) & set(pbase.values())
    # new source training data: the fits on src and their predictions change; zero-shot (which
    # reads no data) and the reference fitted on tgt do not
    moved, _ = _plan(hashes={("src", "train"): "other"})
    assert {k for k in base if keys(moved)[k] != base[k]} == {("pt_length", "src"), ("pt_length2", "src")}
    assert {k for k in pbase if pkeys(moved)[k] != pbase[k]} == {
        (m, "src", d) for m in ("pt_length", "pt_length2") for d in ("tgt", "tgt2", "src")}
    # new test data of tgt2: only the predictions on tgt2
    moved, _ = _plan(hashes={("tgt2", "test"): "other"})
    assert keys(moved) == base
    assert {k for k in pbase if pkeys(moved)[k] != pbase[k]} == {
        ("pt_zero", None, "tgt2"), ("pt_length", "src", "tgt2"), ("pt_length2", "src", "tgt2")}
    # a result-affecting hyperparameter: that method's fit and its predictions only
    moved, _ = _plan(overrides={"pt_length2": {"scale": 0.3}})
    assert {k for k in base if keys(moved)[k] != base[k]} == {("pt_length2", "src")}
    # an execution setting: nothing
    assert keys(_plan(overrides={"pt_length2": {"delay": 0.5}})[0]) == base


def test_content_hash_is_sha256_of_canonical_json():
    assert stable_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert stable_json({"p": object}) == json.dumps({"p": str(object)}, separators=(",", ":"))
    expected = hashlib.sha256(b'[{"a":1,"b":2},"x"]').hexdigest()[:24]
    assert content_hash({"b": 2, "a": 1}, "x") == expected and len(expected) == 24


def test_fit_and_predict_keys_hash_their_parts():
    method = configure_methods(["pt_length"], None)["pt_length"]
    libs = {"torch": "1", "transformers": "2", "peft": None}
    key = fit_key(method=method, model_fingerprint="fp", precision=FP32, source_hash="src:h", seed=3, libraries=libs)
    assert key == content_hash("fit", jobs.JOB_FORMAT, "pt_length", method.code_version(), {"scale": 0.4},
                               "fp", FP32, "src:h", 3, libs)
    assert jobs.JOB_FORMAT == 2
    # without `libraries`, the installed versions are used
    assert fit_key(method=method, model_fingerprint="fp", precision=FP32, source_hash="src:h", seed=3) == fit_key(
        method=method, model_fingerprint="fp", precision=FP32, source_hash="src:h", seed=3, libraries=jobs.package_versions())
    fit = FitJob("pt_length", "pt_length", stable_json(method.hparams()), "src", key)
    assert predict_key(fit=fit, distribution_hash="tgt:h", split="test") == content_hash("predict", key, "tgt:h", "test")
    held_out = predict_key(fit=fit, distribution_hash="src:h", split="train", part=Part(0.0, 0.33, 5))
    assert held_out == content_hash("predict", key, "src:h", "train", {"start": 0.0, "stop": 0.33, "seed": 5})
    assert PredictJob(fit, "tgt", "test", "k").label == "predict pt_length (trained on src) on tgt/test"


def test_configure_methods_applies_overrides_and_refuses_unused_ones():
    methods = configure_methods(["pt_length", "pt_length", "pt_zero"], None, {"pt_length": {"scale": 0.1}})
    assert list(methods) == ["pt_length", "pt_zero"] and methods["pt_length"].scale == 0.1
    with pytest.raises(ConfigError, match=r"^--set names 'lora', 'mms', which the run does not use "
                                          r"\(it runs pt_length, pt_zero\)$"):
        configure_methods(["pt_zero", "pt_length"], None, {"mms": {}, "lora": {"r": 2}})


@register("pt_spec", family="fine-tuning", description="test stand-in: a preset and a NAME:ARGUMENT spec")
@dataclass
class SpecRule(test_pipeline.LengthRule):
    presets: ClassVar[dict[str, dict[str, Any]]] = {"fast": {"scale": 0.1}, "paper": {}}

    @classmethod
    def spec_overrides(cls, argument: str) -> dict[str, Any]:
        return {"scale": float(argument)}


def test_configure_methods_passes_the_preset_and_keys_overrides_by_the_registered_name():
    assert configure_methods(["pt_spec"], "fast")["pt_spec"].scale == 0.1
    assert configure_methods(["pt_spec"], "paper")["pt_spec"].scale == 0.4
    # `pt_spec:0.3`: the spec's argument on top of the preset, `--set pt_spec...` on top of both
    method = configure_methods(["pt_spec:0.3"], "fast", {"pt_spec": {"delay": 0.5}})["pt_spec:0.3"]
    assert (method.scale, method.delay) == (0.3, 0.5)


def test_precision_is_part_of_every_key():
    """A 4-bit or bf16 model's numbers are not an fp32 model's: every fit and prediction differs."""
    base, _ = _plan()
    for precision in ({"dtype": "bfloat16", "quantize": "none"},
                      {"dtype": "float32", "quantize": "4bit", "bitsandbytes": "0.50.2"}):
        other, _ = _plan(precision=precision)
        assert not set(base.fits) & set(other.fits)
        assert not set(base.predicts) & set(other.predicts)
    assert set(_plan(precision=dict(FP32))[0].fits) == set(base.fits)


def test_a_target_mix_adds_an_ablation_cell_trained_on_the_mixed_set():
    """With `mix_target` each intervention gets a second cell per shift: the same evaluations
    (target and source test splits, baseline, reference), fitted on the source's train split with
    that fraction of the target's mixed in (drawn from the run's seed)."""
    methods = configure_methods(["pt_length"], None)
    shift = SHIFTS[0]
    plan = build_plan(interventions=["pt_length"], shifts=[shift], methods=methods, seed=4, model_fingerprint="fp",
                      precision=FP32, data_hash=lambda d, s: f"h-{d}-{s}", baseline="pt_length",
                      target_tuned=("pt_length",), mix_target=(0.25,))
    ordinary, mixed = plan.cells
    assert (ordinary.intervention, mixed.intervention) == ("pt_length", "pt_length")
    assert (ordinary.target_mix, mixed.target_mix) == (0.0, 0.25)
    assert ordinary.generalization.fit.view is None
    assert mixed.generalization.fit.view == TrainView(mix=TargetMix(shift.target, 0.25, 4))
    assert mixed.generalization.fit.key != ordinary.generalization.fit.key
    assert mixed.source_id.fit is mixed.generalization.fit
    assert (mixed.generalization.distribution, mixed.source_id.distribution) == (shift.target, shift.source)
    assert mixed.baseline is ordinary.baseline and mixed.target_tuned == ordinary.target_tuned
    # a baseline that reads training data is fitted on the target, the reference on the target reference
    assert ordinary.baseline.fit.source == shift.target
    assert ordinary.baseline.fit.view is None and ordinary.baseline.distribution == shift.target
    assert [j.fit.source for j in ordinary.target_tuned] == [shift.target_reference]


def test_a_method_with_its_own_models_keys_neither_the_run_model_nor_its_precision():
    """An external judge brings its models (its code_version names them): its fit is shared by
    runs of any model at any precision."""
    bf16 = {"dtype": "bfloat16", "quantize": "none"}
    plans = [_plan(interventions=("pt_own_models", "pt_length"), fingerprint=fp, precision=p)[0]
             for fp, p in (("model-a", FP32), ("model-b", bf16))]
    own = [{f.key for f in plan.fits.values() if f.intervention == "pt_own_models"} for plan in plans]
    method = configure_methods(["pt_own_models"], None)["pt_own_models"]
    assert own[0] == own[1] == {fit_key(method=method, model_fingerprint="", precision={}, seed=0, source_hash=None)}
    runs = [{f.key for f in plan.fits.values() if f.intervention == "pt_zero"} for plan in plans]
    assert runs[0] != runs[1]  # a method on the run's model is keyed by it


def test_a_method_that_reads_no_data_drops_the_view_it_was_asked_for():
    methods = configure_methods(["pt_zero"], None)
    builder = PlanBuilder(methods, seed=0, model_fingerprint="fp", precision=FP32, data_hash=lambda d, s: "h")
    fit = builder.fit("pt_zero", "src", TrainView(part=Part(0.0, 0.5, 0)))
    assert (fit.source, fit.view) == (None, None)
