"""Placing and sizing a plan (genies.pipeline.sizing): the hardware a run is sized for, where
each job goes, gradient checkpointing, the fixes a refusal names and its one-line message, and
the totals `genies plan` prints. Workload arithmetic itself is in test_sizing_workloads.py; the
tiny model and its numbers are the ones worked out there.

The refusal tests use LLaMA-7B in bfloat16 (published config) where GiB figures must show:
its weights are 2 * 6,738,415,616 bytes (12.55 GiB), its decoder's linear weights 6,476,005,376,
the largest of them 4096 x 11008; inference holds (4*4096 + 3*11008 + 2*128) * 2 = 99,328
bytes per token, and a GPU scoring batch a dense mask of 384 * 2 = 768 bytes per node."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from genies.data.shifts import get_shifts
from genies.errors import ConfigError
from genies.interventions.registry import load_intervention
from genies.models.memory import GIB, NF4_BITS, PUBLISHED, FlopRate, MemoryEstimate, ModelShape, Precision, gpu_spec
from genies.pipeline import sizing
from genies.pipeline.plan import build_plan, configure_methods
from genies.pipeline.sizing import (
    TYPICAL_DATA,
    DataShape,
    Hardware,
    JobSize,
    Sizer,
    Workload,
    by_intervention,
    check_fits,
    check_run,
    checkpointing_overrides,
    cpu_hardware,
    gpu_hardware,
    hardware_for,
    size_plan,
    totals,
)
from test_sizing_workloads import DATA, LM, SHAPE, TINY  # tests/test_sizing_workloads.py

SEVEN = ModelShape.from_config(PUBLISHED["llama-7b"])
LM7 = 2 * 6_738_415_616
NF4_7 = int(6_476_005_376 * NF4_BITS / 8 + (6_738_415_616 - 6_476_005_376) * 2)
PER_NODE = 99_328  # inference bytes per token (bf16)
DEQUANT = 4096 * 11008 * 2  # one dequantized weight
RATE = FlopRate("test", 2560.0, 1.0, "one tiny-model token through both layers a second")


def _gib(value: float) -> str:
    return f"{value / GIB:.1f}"


# -- hardware -----------------------------------------------------------------------------------

def test_describe_says_what_one_device_has() -> None:
    assert Hardware("cpu", "cpu", 1, int(1.5 * GIB)).describe() == "the CPU has 1.5 GiB"
    assert Hardware("cuda", "h100", 1, 72 * GIB).describe() == "one h100 GPU has 72.0 GiB"
    assert Hardware("cuda", "a100", 4, int(39.96 * GIB)).describe() == "each of 4 a100 GPUs has 40.0 GiB"
    assert Hardware("cuda", "h100", 2, 72 * GIB).describe() == "each of 2 h100 GPUs has 72.0 GiB"


def test_shards_as_the_loader_does() -> None:
    """All GPUs when --gpus was given or the weights exceed 80 % of one GPU's capacity, else one."""
    four = Hardware("cuda", "h100", 4, 70, capacity=100)
    assert (four.shards(80), four.shards(81), four.shards(0)) == (1, 4, 1)
    assert Hardware("cuda", "h100", 4, 70, capacity=100, gpus_given=True).shards(0) == 4
    assert Hardware("cuda", "h100", 1, 70, capacity=100, gpus_given=True).shards(10**6) == 1
    assert Hardware("cpu", "cpu", 4, 70, capacity=100, gpus_given=True).shards(10**6) == 1
    assert (four.gpu, Hardware("cpu", "cpu", 1, 70).gpu) == (True, False)


def test_cpu_hardware_is_nine_tenths_of_physical_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1000}
    monkeypatch.setattr(sizing.os, "sysconf", lambda name: pages[name])
    assert cpu_hardware() == Hardware("cpu", "cpu", 1, int(4096 * 1000 * 0.9), None)
    assert cpu_hardware(RATE).rate is RATE


def test_gpu_hardware_memory_and_capacity() -> None:
    h100 = gpu_spec("h100")  # 80 GiB nominal
    assert gpu_hardware(h100, 2) == Hardware("cuda", "h100", 2, int(80 * GIB * 0.9), None, 80 * GIB, True)
    reported = gpu_hardware(h100, 1, reported_bytes=70 * GIB, rate=RATE, gpus_given=False)
    assert reported == Hardware("cuda", "h100", 1, int(70 * GIB * 0.9), RATE, 70 * GIB, False)
    assert gpu_hardware(h100, 1, 50.5) == Hardware("cuda", "h100", 1, int(50.5 * GIB), None, int(50.5 * GIB), True)
    # --gpu-memory above what the GPU has: the planner uses it as given, the loader sees the GPU
    assert gpu_hardware(h100, 1, 100, reported_bytes=70 * GIB) == Hardware(
        "cuda", "h100", 1, 100 * GIB, None, 70 * GIB, True)


class FakeGpus:
    """What torch.cuda reports on a machine with `count` GPUs: GPU 0 is `name` with `total`
    bytes, the others A100s of 40 GiB (the planner sizes for GPU 0, as the loader fills it first)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, name: str = "NVIDIA H200",
                 total: int = 140 * GIB) -> None:
        names = [name] + ["NVIDIA A100-SXM4-40GB"] * (count - 1)
        totals = [total] + [40 * GIB] * (count - 1)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: names[index])
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda index: type("P", (), {"total_memory": totals[index]}))


def test_hardware_for_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import genies.models.memory as memory

    FakeGpus(monkeypatch, 0)
    measured = FlopRate("cpu", 1e9, 0.5, "measured")
    monkeypatch.setattr(memory, "cpu_flop_rate", lambda: measured)
    hardware, precision = hardware_for(rate=False)
    assert (hardware.kind, hardware.devices, hardware.rate, precision) == ("cpu", 1, None, Precision("float32"))
    hardware, precision = hardware_for(dtype="bfloat16", quantize="8bit")
    assert (hardware.kind, hardware.rate, precision) == ("cpu", measured, Precision("bfloat16", "8bit"))
    assert hardware_for(device="cpu", gpus=2, rate=False)[0].kind == "cpu"  # --device cpu wins


@pytest.mark.parametrize(("options", "name", "devices", "memory", "given"), [
    ({"gpus": 2}, "h100", 2, int(80 * GIB * 0.9), True),
    ({"device": "cuda"}, "h100", 1, int(80 * GIB * 0.9), False),
    ({"device": "cuda:1"}, "h100", 1, int(80 * GIB * 0.9), False),
    ({"gpu_memory": 40.0}, "h100", 1, 40 * GIB, False),
    ({"gpu_type": "a100"}, "a100", 1, int(80 * GIB * 0.9), False),
    ({"gpu_type": "h200", "gpus": 3}, "h200", 3, int(141 * GIB * 0.9), True),
])
def test_hardware_for_gpus_asked_for_where_none_is_visible(monkeypatch: pytest.MonkeyPatch, options: dict,
                                                           name: str, devices: int, memory: int,
                                                           given: bool) -> None:
    FakeGpus(monkeypatch, 0)
    hardware, precision = hardware_for(rate=False, **options)
    assert (hardware.kind, hardware.name, hardware.devices, hardware.memory, hardware.gpus_given) == (
        "cuda", name, devices, memory, given)
    assert precision == Precision("bfloat16") and hardware.rate is None


def test_hardware_for_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Visible GPUs are planned as they report themselves: their type, count and memory."""
    FakeGpus(monkeypatch, 4, "NVIDIA H200", 140 * GIB)
    hardware, precision = hardware_for(dtype="float32")
    assert (hardware.name, hardware.devices, hardware.capacity, hardware.memory, hardware.gpus_given) == (
        "h200", 4, 140 * GIB, int(140 * GIB * 0.9), False)
    assert precision == Precision("float32") and hardware.rate.peak == 66.9e12  # h200's float32 rate
    assert hardware_for(gpus=2, rate=False)[0].devices == 2
    typed = hardware_for(gpu_type="a100", rate=False)[0]  # another type: its nominal memory, one GPU
    assert (typed.name, typed.devices, typed.capacity) == ("a100", 1, 80 * GIB)
    assert hardware_for(device="cpu", rate=False)[0].kind == "cpu"


# -- one job's size -----------------------------------------------------------------------------

def _job(**fields: object) -> JobSize:
    values = {"key": "k", "label": "fit lora on d", "kind": "fit", "intervention": "lora", "method": "lora",
              "distribution": "d", "memory": MemoryEstimate(3 * GIB, activations=2 * GIB, optimizer=GIB,
                                                            buffers=GIB // 2),
              "devices": 1, "gradient_checkpointing": False, "seconds": 12.345, **fields}
    return JobSize(**values)


def test_job_size_placement_peak_and_json() -> None:
    gpu = Hardware("cuda", "h100", 2, 72 * GIB)
    cpu = Hardware("cpu", "cpu", 1, 72 * GIB)
    job = _job()
    assert (job.fits, job.peak, job.placement(cpu), job.placement(gpu)) == (True, 6.5 * GIB, "cpu", "1 GPU")
    assert _job(devices=2, gradient_checkpointing=True).placement(gpu) == "2 GPUs +ckpt"
    assert _job(gradient_checkpointing=True).placement(cpu) == "cpu +ckpt"
    assert not _job(devices=0).fits and _job(devices=0).placement(gpu) == "does not fit"
    spread = _job(devices=2, sized_on=2)
    assert spread.peak == 3 * GIB + GIB // 2  # 6 GiB split over two, the buffers on each
    assert spread.to_json(gpu) == {
        "key": "k", "job": "fit lora on d", "kind": "fit", "intervention": "lora", "distribution": "d",
        "memory_gib": {"weights": 3.0, "activations": 2.0, "optimizer": 1.0, "buffers": 0.5, "total": 6.5},
        "peak_gib": 3.5, "placement": "2 GPUs", "devices": 2, "sized_on": 2, "gradient_checkpointing": False,
        "seconds": 12.3, "fits": True, "fixes": [], "note": ""}
    refused = _job(devices=0, seconds=None, fixes=("--quantize 4bit (1.0 GiB)",), note="n").to_json(gpu)
    assert (refused["seconds"], refused["fits"], refused["fixes"], refused["note"], refused["placement"]) == (
        None, False, ["--quantize 4bit (1.0 GiB)"], "n", "does not fit")
    assert _job(memory=MemoryEstimate(GIB + 7 * 2**20)).to_json(cpu)["peak_gib"] == 1.007


def test_place_takes_the_first_setting_that_fits_with_equality_fitting() -> None:
    work = Workload(lambda on: MemoryEstimate(100 if on else 200, buffers=10), lambda on: 0.0, trains=True)
    assert sizing._place(work, Hardware("cpu", "cpu", 1, 210), [False, True], 1) == (1, False)
    assert sizing._place(work, Hardware("cpu", "cpu", 1, 209), [False, True], 1) == (1, True)
    assert sizing._place(work, Hardware("cpu", "cpu", 1, 209), [False], 1) == (0, False)
    assert sizing._place(work, Hardware("cuda", "h100", 2, 110), [False, True], 2) == (2, False)  # 100 + 10
    assert sizing._place(work, Hardware("cuda", "h100", 2, 109), [False, True], 2) == (2, True)  # 50 + 10
    assert sizing._place(work, Hardware("cuda", "h100", 2, 59), [False, True], 2) == (0, False)


def test_checkpointing_options() -> None:
    trains = Workload(lambda on: MemoryEstimate(0), lambda on: 0.0, trains=True)
    infers = Workload(lambda on: MemoryEstimate(0), lambda on: 0.0)
    lora = load_intervention("lora", "paper")
    assert sizing._checkpointing_options(lora, trains) == [False, True]
    assert sizing._checkpointing_options(load_intervention("lora", "paper", gradient_checkpointing=True),
                                         trains) == [True]
    assert sizing._checkpointing_options(lora, infers) == [False]
    assert sizing._checkpointing_options(load_intervention("mms", "paper"), trains) == [False]  # no switch


def test_batch_setting_a_refusal_may_suggest() -> None:
    lora = load_intervention("lora", "paper", batch_size=16, eval_batch_size=12)
    assert sizing._batch_setting(lora, "fit") == ("micro_batch_size", 16)
    assert sizing._batch_setting(load_intervention("lora", "paper", micro_batch_size=4), "fit") == (
        "micro_batch_size", 4)
    assert sizing._batch_setting(lora, "predict") == ("eval_batch_size", 12)
    assert sizing._batch_setting(load_intervention("zero_shot", "paper"), "predict") == ("batch_tokens", 0)
    assert sizing._batch_setting(load_intervention("few_shot", "paper", batch_tokens=512), "predict") == (
        "batch_tokens", 512)
    assert sizing._batch_setting(load_intervention("zero_shot", "paper"), "fit") is None
    assert sizing._batch_setting(load_intervention("mms", "paper"), "predict") is None


# -- fixes and the refusal ------------------------------------------------------------------------

def _seven(quantize: str = "none", data: DataShape = TYPICAL_DATA) -> Sizer:
    """7B on GPUs; distribution "d" has `data`'s shape, any other (a wrongly passed name) a far
    larger one, so a fix sized for the wrong distribution shows."""
    huge = DataShape(train=10**5, test=10**5, prompt_tokens=4000, response_tokens=1000, responses=4,
                     longest_pair=12000, longest_query=16000)
    return Sizer(SEVEN, Precision("bfloat16", quantize), True, lambda name: data if name == "d" else huge)


def test_fixes_for_scoring_on_one_small_gpu() -> None:
    """7B zero-shot on one H100 planned at 14 GiB: 32768 nodes a forward need 12.55 + 3.05 GiB.
    4-bit weights fit; two GPUs halve the weights; 8192 nodes (halved twice) fit in 14 GiB."""
    hardware = Hardware("cuda", "h100", 1, 14 * GIB, capacity=80 * GIB)
    method = load_intervention("zero_shot", "paper")
    fixes = sizing._fixes(method, "predict", "d", _seven(), hardware)
    assert fixes == (f"--quantize 4bit ({_gib(NF4_7 + 32768 * (PER_NODE + 768) + DEQUANT)} GiB)",
                     f"--gpus 2 ({_gib(LM7 / 2 + 32768 * (PER_NODE + 768))} GiB per GPU)",
                     f"--set zero_shot.batch_tokens=8192 ({_gib(LM7 + 8192 * (PER_NODE + 768))} GiB)")
    assert fixes == ("--quantize 4bit (6.7 GiB)", "--gpus 2 (9.3 GiB per GPU)",
                     "--set zero_shot.batch_tokens=8192 (13.3 GiB)")
    explicit = load_intervention("zero_shot", "paper", batch_tokens=20000)  # halved from its own value
    assert sizing._fixes(explicit, "predict", "d", _seven(), hardware)[-1] == (
        f"--set zero_shot.batch_tokens=10000 ({_gib(LM7 + 10000 * (PER_NODE + 768))} GiB)")
    # already 4-bit: not suggested again
    assert not any(f.startswith("--quantize") for f in sizing._fixes(method, "predict", "d", _seven("4bit"),
                                                                      hardware))


def test_fixes_count_gpus_up_to_eight_and_halve_batches_down_to_one() -> None:
    """At 3.5 GiB a GPU (4-bit needs 3.9), 7B's 12.55 GiB of weights need 4 GPUs; no batch fits
    one GPU: no batch fix."""
    hardware = Hardware("cuda", "h100", 1, int(3.5 * GIB), capacity=80 * GIB)
    method = load_intervention("zero_shot", "paper", batch_tokens=2048)
    assert sizing._fixes(method, "predict", "d", _seven(), hardware) == (
        f"--gpus 4 ({_gib(LM7 / 4 + 2048 * PER_NODE + 2048 * 768)} GiB per GPU)",)
    assert sizing._fixes(method, "predict", "d", _seven(),
                         Hardware("cuda", "h100", 1, GIB // 2, capacity=80 * GIB)) == ()  # 26 GPUs would do
    eight = Hardware("cuda", "h100", 1, int((LM7 / 8 + 2048 * (PER_NODE + 768)) + 1), capacity=80 * GIB)
    assert sizing._fixes(method, "predict", "d", _seven(), eight)[0].startswith("--gpus 8 (")
    on_two = Hardware("cuda", "h100", 2, int(3.5 * GIB), capacity=80 * GIB)  # more than the run's own 2
    assert sizing._fixes(method, "predict", "d", _seven(), on_two)[0].startswith("--gpus 4 (")


def test_fixes_on_the_cpu() -> None:
    """On a 12.7 GiB CPU: 4-bit fits; no --gpus; halving the CPU's 2048 nodes cannot go below
    the longest query (1714 tokens), which does not fit: no batch fix."""
    cpu = Hardware("cpu", "cpu", 1, int(12.7 * GIB))
    sizer = Sizer(SEVEN, Precision("bfloat16"), False, lambda name: TYPICAL_DATA)
    assert sizing._fixes(load_intervention("zero_shot", "paper"), "predict", "d", sizer, cpu) == (
        f"--quantize 4bit ({_gib(NF4_7 + 2048 * PER_NODE + DEQUANT)} GiB)",)
    roomy = Hardware("cpu", "cpu", 1, int(12.8 * GIB))
    assert sizing._fixes(load_intervention("zero_shot", "paper", batch_tokens=4096), "predict", "d", sizer,
                         roomy)[-1] == f"--set zero_shot.batch_tokens=2048 ({_gib(LM7 + 2048 * PER_NODE)} GiB)"


def test_fixes_for_reward_model_training_name_what_it_needs_with_checkpointing() -> None:
    """7B lora fit (r 64, 16 pairs padded to the 1038-token longest row) on a 32 GiB GPU: both
    copies of the weights (24.9 GiB) and what training saves need 33.3 GiB even with
    checkpointing. The fixes are sized with checkpointing on, as the job would run."""
    hardware = Hardware("cuda", "h100", 1, 32 * GIB, capacity=80 * GIB)
    method = load_intervention("lora", "paper")
    sizer = _seven()
    work = sizer.workload(method, "fit", "d")
    assert work.memory(True).total > 32 * GIB

    def need(s: Sizer, m: object, devices: int = 1) -> str:
        return _gib(s.workload(m, "fit", "d").memory(True).per_device(devices))

    quantized = _seven("4bit")
    assert sizing._fixes(method, "fit", "d", sizer, hardware) == (
        f"--quantize 4bit ({need(quantized, method)} GiB)", f"--gpus 2 ({need(sizer, method, 2)} GiB per GPU)",
        f"--set lora.micro_batch_size=8 ({need(sizer, load_intervention('lora', 'paper', micro_batch_size=8))} GiB)")
    assert sizing._fixes(method, "fit", "d", sizer, hardware) == (
        "--quantize 4bit (22.9 GiB)", "--gpus 2 (17.2 GiB per GPU)", "--set lora.micro_batch_size=8 (29.3 GiB)")


def test_a_batch_of_one_is_suggested_when_only_it_fits() -> None:
    """Tiny lora, batch 2 (one line of 60 tokens) against one pair a forward (40, the longest row)."""
    sizer = Sizer(SHAPE, Precision("float32"), False, lambda name: DATA)
    method = load_intervention("lora", "paper", r=2, batch_size=2, steps=3)
    one = sizer.workload(load_intervention("lora", "paper", r=2, batch_size=2, micro_batch_size=1), "fit", "d")
    hardware = Hardware("cpu", "cpu", 1, one.memory(True).total)
    assert sizer.workload(method, "fit", "d").memory(True).total > hardware.memory
    assert sizing._fixes(method, "fit", "d", sizer, hardware)[-1] == "--set lora.micro_batch_size=1 (0.0 GiB)"


def test_no_more_than_eight_gpus_are_suggested() -> None:
    method = load_intervention("zero_shot", "paper", batch_tokens=2048)
    buffers = 2048 * (PER_NODE + 768)
    nine = Hardware("cuda", "h100", 1, -(-LM7 // 9) + buffers, capacity=80 * GIB)  # 9 GPUs would do
    assert not any(f.startswith("--gpus") for f in sizing._fixes(method, "predict", "d", _seven(), nine))
    eight = Hardware("cuda", "h100", 1, -(-LM7 // 8) + buffers, capacity=80 * GIB)
    assert sizing._fixes(method, "predict", "d", _seven(), eight)[-1].startswith("--gpus 8 (")


def test_full_fine_tuning_is_never_told_to_quantize() -> None:
    """Its 4-bit workload carries the note that it cannot train quantized weights."""
    hardware = Hardware("cuda", "h100", 1, 60 * GIB, capacity=80 * GIB)
    method = load_intervention("full_fine_tune", "paper")
    fixes = sizing._fixes(method, "fit", "d", _seven(), hardware)
    assert fixes and not any("quantize" in fix for fix in fixes)
    lora = sizing._fixes(load_intervention("lora", "paper"), "fit", "d", _seven(),
                         Hardware("cuda", "h100", 1, 25 * GIB, capacity=80 * GIB))  # QLoRA needs 22.9
    assert lora[0].startswith("--quantize 4bit (")


def test_check_fits_message() -> None:
    memory = MemoryEstimate(int(20 * GIB), activations=int(5.25 * GIB), buffers=int(0.5 * GIB))
    hardware = Hardware("cuda", "h100", 1, 14 * GIB)
    one = _job(memory=memory, devices=0, label="predict x on y", fixes=("--quantize 4bit (6.7 GiB)",
                                                                        "--gpus 2 (9.3 GiB per GPU)"))
    with pytest.raises(ConfigError) as caught:
        check_fits([_job(), one], hardware)
    assert str(caught.value) == ("predict x on y needs 25.8 GiB (weights 20.0, activations 5.2, buffers 0.5) "
                                 "but one h100 GPU has 14.0 GiB; it fits with --quantize 4bit (6.7 GiB) or "
                                 "--gpus 2 (9.3 GiB per GPU)")
    bare = _job(memory=memory, devices=0, label="fit z on w")
    with pytest.raises(ConfigError, match=re.escape(
            "fit z on w needs 25.8 GiB (weights 20.0, activations 5.2, buffers 0.5) but one h100 GPU has 14.0 GiB; "
            "no single option (--quantize 4bit, more --gpus, a smaller batch) makes it fit (1 more job does not fit "
            "either)") + "$"):
        check_fits([bare, one], hardware)
    spread = _job(memory=memory, devices=0, sized_on=2, label="fit z on w")
    with pytest.raises(ConfigError, match=re.escape(
            "fit z on w needs 13.1 GiB per GPU over 2 GPUs (weights 20.0, activations 5.2, buffers 0.5, in all) "
            "but one h100 GPU has 14.0 GiB; no single option") + ".* makes it fit \\(2 more jobs do not fit either\\)$"):
        check_fits([spread, one, bare], hardware)
    check_fits([_job(), _job(devices=2)], hardware)  # every job fits: quiet
    check_fits([], hardware)


# -- a plan -------------------------------------------------------------------------------------

def _plan(interventions: list[str]):
    methods = configure_methods([*interventions, "zero_shot", "lora"], "paper",
                                {"lora": {"r": 2, "batch_size": 4, "steps": 3, "eval_batch_size": 6},
                                 "zero_shot": {"batch_tokens": 64}})
    return build_plan(interventions=interventions, shifts=get_shifts("genies")[:2], methods=methods, seed=0,
                      model_fingerprint="m", precision={}, data_hash=lambda n, s: f"{n}/{s}")


def test_a_prediction_on_the_fitted_split_reuses_its_extraction() -> None:
    """A sweep predicts on held-out examples of the source's train split: the fit extracted it."""
    from genies.pipeline.plan import PlanBuilder

    mms = load_intervention("mms", "paper")
    jobs = PlanBuilder({"mms": mms}, seed=0, model_fingerprint="m", precision={}, data_hash=lambda n, s: n + s)
    fit = jobs.fit("mms", "d")
    jobs.predict(fit, "d", "train")
    jobs.predict(fit, "d", "test")
    tiny = Sizer(SHAPE, Precision("float32"), False, lambda name: DATA)
    sizes = size_plan(jobs.plan, tiny, Hardware("cpu", "cpu", 1, 10**6, RATE))
    assert [(s.kind, s.seconds) for s in sizes] == [("fit", 360.0), ("predict", 0.0), ("predict", 144.0)]


def test_size_plan_counts_each_extraction_once_and_places_every_job() -> None:
    """mms and lat read the same plain hidden states: whichever job comes first extracts them
    (its time counted), the other only reads them (no time); every job fits the roomy CPU."""
    plan = _plan(["mms", "lat"])
    tiny = Sizer(SHAPE, Precision("float32"), False, lambda name: DATA)
    sizes = size_plan(plan, tiny, Hardware("cpu", "cpu", 1, 10**6, RATE))
    jobs = [job for fit in plan.fits.values() for job in (fit, *plan.predicts_of(fit))]
    assert [s.key for s in sizes] == [job.key for job in jobs] and [s.label for s in sizes] == [j.label for j in jobs]
    assert [s.kind for s in sizes] == ["fit" if job in plan.fits.values() else "predict" for job in jobs]
    extracted: set[tuple[str, str]] = set()
    for size, job in zip(sizes, jobs, strict=True):
        fit = job if size.kind == "fit" else job.fit
        assert (size.intervention, size.method) == (fit.intervention, fit.method_name)
        assert size.distribution == (fit.source if size.kind == "fit" else job.distribution)
        assert (size.devices, size.sized_on, size.fixes, size.note, size.gradient_checkpointing) == (1, 1, (), "",
                                                                                                     False)
        if size.method in ("mms", "lat"):
            split = "train" if size.kind == "fit" else "test"
            first = (size.distribution, split) not in extracted
            extracted.add((size.distribution, split))
            assert size.seconds == ((360 if size.kind == "fit" else 144) if first else 0.0)
            assert size.memory.activations > 0
        elif size.method == "zero_shot":
            assert size.seconds == (0.0 if size.kind == "fit" else 140 + 160 * 60 / 2560)
        else:
            assert size.seconds == (2 * 360 if size.kind == "fit" else 140)
    assert len(extracted) == 6 and sum(s.seconds == 0.0 and s.method in ("mms", "lat") for s in sizes) == 6
    assert all(s.seconds is None for s in size_plan(plan, tiny, Hardware("cpu", "cpu", 1, 10**6)))


def test_size_plan_turns_checkpointing_on_only_where_needed_and_shows_a_refused_job_at_its_smallest() -> None:
    """lora's fit needs 11552 + 2176 + 84480 + 130560 = 228768 bytes, 171168 with checkpointing;
    its prediction 5920 + 6176 + 46480 = 58576, zero-shot's 5920 + 64 * 352 = 28448."""
    plan = _plan(["lora"])
    huge = DataShape(train=10**4, test=10**4, prompt_tokens=400, response_tokens=100, responses=4,
                     longest_pair=1200, longest_query=1600)  # any other name: a fix sized for it would not fit
    names = {fit.source for fit in plan.fits.values()} | {p.distribution for p in plan.predicts.values()}
    tiny = Sizer(SHAPE, Precision("float32"), False, lambda name: DATA if name in names else huge)
    for memory, fit_devices, checkpointing in ((228768, 1, False), (228767, 1, True), (171168, 1, True),
                                               (171167, 0, True)):
        sizes = size_plan(plan, tiny, Hardware("cpu", "cpu", 1, memory, RATE))
        fits = [s for s in sizes if s.method == "lora" and s.kind == "fit"]
        assert {(s.devices, s.gradient_checkpointing) for s in fits} == {(fit_devices, checkpointing)}
        assert {s.peak for s in fits} == {228768 if not checkpointing else 171168}
        assert {s.seconds for s in fits} == {(3 if checkpointing else 2) * 360}
        assert all(s.fits and not s.gradient_checkpointing and not s.fixes for s in sizes if s.kind == "predict")
        # a refused job says what would help: 4-bit weights, or 2 pairs a forward (the tiny sizes print as 0.0)
        assert {s.fixes for s in fits} == ({("--quantize 4bit (0.0 GiB)", "--set lora.micro_batch_size=2 (0.0 GiB)")}
                                           if not fit_devices else {()})
    assert checkpointing_overrides(size_plan(plan, tiny, Hardware("cpu", "cpu", 1, 200000))) == {
        "lora": {"gradient_checkpointing": True}}
    assert checkpointing_overrides(size_plan(plan, tiny, Hardware("cpu", "cpu", 1, 171167))) == {}  # not fitting
    assert checkpointing_overrides(size_plan(plan, tiny, Hardware("cpu", "cpu", 1, 10**6))) == {}


def test_size_plan_shards_as_the_loader_would() -> None:
    plan = _plan(["mms"])
    tiny = Sizer(SHAPE, Precision("float32"), True, lambda name: DATA)
    given = size_plan(plan, tiny, Hardware("cuda", "h100", 2, 10**9, capacity=10**9, gpus_given=True))
    assert {(s.devices, s.sized_on) for s in given} == {(2, 2)}
    sizes = size_plan(plan, tiny, Hardware("cuda", "h100", 2, 10**9, capacity=10**9))
    assert {(s.devices, s.sized_on) for s in sizes} == {(1, 1)}
    lm = next(s for s in given if s.method == "zero_shot" and s.kind == "fit")
    assert lm.peak == -(-LM // 2)


def test_totals_and_by_intervention() -> None:
    sizes = [_job(intervention="b", kind="fit", seconds=1800.0, devices=2, memory=MemoryEstimate(GIB)),
             _job(intervention="a", kind="predict", seconds=None, devices=1, memory=MemoryEstimate(3 * GIB)),
             _job(intervention="b", kind="predict", seconds=3600.0, devices=0, gradient_checkpointing=True,
                  memory=MemoryEstimate(2 * GIB)),
             _job(intervention="b", kind="fit", seconds=0.0, devices=1, gradient_checkpointing=True,
                  memory=MemoryEstimate(GIB // 4))]
    assert totals(sizes) == {"jobs": 4, "fits": 2, "predictions": 2, "peak_gib": 3.0, "max_devices": 2,
                             "gradient_checkpointing": 1, "not_fitting": 1, "hours": 1.5, "device_hours": 2.0}
    assert totals([]) == {"jobs": 0, "fits": 0, "predictions": 0, "peak_gib": 0.0, "max_devices": 0,
                          "gradient_checkpointing": 0, "not_fitting": 0, "hours": None, "device_hours": None}
    assert totals([_job(seconds=None)])["hours"] is None and totals([_job(seconds=None)])["device_hours"] is None
    assert totals([_job(seconds=10.0, devices=3)])["device_hours"] == round(30 / 3600, 3)
    assert totals([_job(seconds=36.0, devices=0)])["device_hours"] == 0.01  # a refused job holds one device
    assert totals([_job(memory=MemoryEstimate(GIB + 2**20))])["peak_gib"] == 1.001
    assert totals([_job(memory=MemoryEstimate(int(1.23456 * GIB)))])["peak_gib"] == 1.235
    assert totals([_job(seconds=1.23456 * 3600)])["hours"] == 1.235
    assert totals([_job(seconds=36000.0, devices=2)])["hours"] == 10.0  # hours of 3600 seconds
    assert totals([_job(seconds=36000.0, devices=2)])["device_hours"] == 20.0
    assert totals([_job(kind="fit"), _job(kind="fit"), _job(kind="predict")])["fits"] == 2
    assert totals([_job(kind="fit"), _job(kind="predict"), _job(kind="predict")])["predictions"] == 2
    grouped = by_intervention(sizes)
    assert list(grouped) == ["b", "a"]
    assert grouped["b"] == totals([sizes[0], sizes[2], sizes[3]]) and grouped["a"] == totals([sizes[1]])


# -- genies run's check ---------------------------------------------------------------------------

def test_check_run_reads_the_model_config_and_the_runs_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without distributions, the typical GENIES shape under the run's example budget; each
    distribution's shape is computed once."""
    from genies.data.schema import Distribution, Example
    from genies.pipeline.config import RunConfig

    FakeGpus(monkeypatch, 0)
    (tmp_path / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    plan = _plan(["mms"])
    config = RunConfig(out=tmp_path / "run", device="cpu", max_train=5, max_eval=2)
    sizes = check_run(plan, config, tmp_path)
    assert len(sizes) == plan.n_jobs and all(s.fits for s in sizes)
    mms_fit = next(s for s in sizes if s.method == "mms" and s.kind == "fit")
    nodes = 1714 + 1  # the typical longest query + BOS, above 5 texts of 239.8 tokens
    assert mms_fit.memory == MemoryEstimate(LM, activations=3 * nodes * 32, buffers=nodes * 352)
    assert mms_fit.seconds is None  # a fit check needs no FLOP rate
    asked: list[str] = []

    def distribution(name: str) -> Distribution:
        asked.append(name)
        return Distribution.from_examples(name, [Example("p" * 40, ("a" * 8, "b" * 8), 0)] * 3,
                                          [Example("p" * 40, ("a" * 8, "b" * 8), 0)])

    sizes = check_run(plan, config, tmp_path, distribution)
    assert sorted(asked) == sorted(set(asked)) and set(asked) == {s.distribution for s in sizes if s.distribution}
    mms_fit = next(s for s in sizes if s.method == "mms" and s.kind == "fit")
    # its own shape: 3 train texts of a 10-token prompt and 2 responses of 2 + EOS, + BOS: 51 nodes
    assert mms_fit.memory.activations == 3 * 51 * 32
    mms_predict = next(s for s in check_run(plan, config, tmp_path) if s.method == "mms" and s.kind == "predict")
    assert mms_predict.memory.activations == 3 * 1715 * 32  # 2 test texts (--max-eval): the longest query
    assert next(s for s in check_run(plan, RunConfig(out=tmp_path / "run", device="cpu", max_eval=100), tmp_path)
                if s.method == "mms" and s.kind == "predict").memory.activations == 3 * 2048 * 32
    small = RunConfig(out=tmp_path / "run", device="cuda", gpu_memory=1e-6, dtype="float32")
    with pytest.raises(ConfigError, match=r"^fit .* needs .* GiB .* but one h100 GPU has 0\.0 GiB; "):
        check_run(plan, small, tmp_path)


def test_check_run_sizes_for_the_runs_placement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--device, --gpus, --dtype and --quantize decide the hardware and the precision: a cuda run
    counts the dense mask of zero-shot's 1714-token query (its 64-node budget is below it)."""
    from genies.pipeline.config import RunConfig

    FakeGpus(monkeypatch, 1)
    (tmp_path / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    plan = _plan(["mms"])

    def zero_shot(**options: object) -> JobSize:
        config = RunConfig(out=tmp_path / "run", **options)
        return next(s for s in check_run(plan, config, tmp_path) if s.method == "zero_shot" and s.kind == "predict")

    on_gpu = zero_shot(dtype="float32")
    assert on_gpu.memory == MemoryEstimate(LM, buffers=1714 * 352 + 1714 * 384 * 4) and on_gpu.sized_on == 1
    assert zero_shot(device="cpu").memory == MemoryEstimate(LM, buffers=1714 * 352)
    assert zero_shot(dtype="float32", gpus=2).sized_on == 2
    assert zero_shot(device="cpu", dtype="bfloat16").memory.weights == 2 * 1480
    assert zero_shot(device="cpu", quantize="8bit").memory.weights == 2 * (640 + 4 * (4 * 8 + 2 * 16 + 8)) + 200 * 4
