"""The memory and time estimator (genies.models.memory) and the plan sizing built on it
(genies.pipeline.sizing): parameter counts of published configs against hand-computed ones and
against transformers' own models (built on the meta device: no weights), weight, LoRA and AdamW
bytes, placement and refusals, and, on the embedded model, the estimate against measured peaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from genies.errors import ConfigError, UnknownNameError
from genies.interventions.registry import load_intervention
from genies.models.memory import (
    ADAPTER_BYTES,
    GIB,
    NF4_BITS,
    PUBLISHED,
    MemoryEstimate,
    ModelShape,
    Precision,
    default_lora_targets,
    forward_flops,
    gpu_flop_rate,
    gpu_spec,
    lora_parameters,
)
from genies.models.testing import TINY_CONFIGS
from genies.pipeline.plan import build_plan, configure_methods
from genies.pipeline.sizing import (
    TYPICAL_DATA,
    DataShape,
    Sizer,
    check_fits,
    gpu_hardware,
    packed_lines,
    size_plan,
    totals,
)

# Hand-computed: V d (embeddings) + V d (untied head) + L (4 d^2 [q, k, v, o] + 3 d I [gate, up,
# down] + 2 d [norms]) + d (final norm); Llama-2 70B has 8 KV heads, so k and v are d x 1024.
# 7B:  2*32000*4096 + 32*(4*4096^2 + 3*4096*11008 + 2*4096) + 4096        =  6,738,415,616
# 13B: 2*32000*5120 + 40*(4*5120^2 + 3*5120*13824 + 2*5120) + 5120        = 13,015,864,320
# 30B: 2*32000*6656 + 60*(4*6656^2 + 3*6656*17920 + 2*6656) + 6656        = 32,528,943,616
# 70B: 2*32000*8192 + 80*(2*8192^2 + 2*8192*1024 + 3*8192*28672 + 2*8192) + 8192 = 68,976,648,192
PARAMETERS = {"llama-7b": 6_738_415_616, "llama-13b": 13_015_864_320, "llama-30b": 32_528_943_616,
              "llama-70b": 68_976_648_192}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_published_parameter_counts(name: str) -> None:
    shape = ModelShape.from_config(PUBLISHED[name])
    assert shape.parameters("lm") == PARAMETERS[name]
    # the reward model drops the untied LM head (V d) and adds a one-output score head (d)
    assert shape.parameters("score") == PARAMETERS[name] - 32000 * shape.hidden_size + shape.hidden_size


def _tiny(arch: str, **extra: object) -> dict:
    spec = dict(TINY_CONFIGS[arch])
    return AutoConfig.for_model(spec.pop("model_type"), vocab_size=259, num_hidden_layers=2,
                                max_position_embeddings=512, **{**spec, **extra}).to_dict()


CONFIGS = {
    **{arch: _tiny(arch, tie_word_embeddings=False) for arch in ("llama", "qwen2", "gpt_neox", "gemma", "gpt2")},
    "gemma-tied": _tiny("gemma"),
    "llama-biases": _tiny("llama", attention_bias=True, mlp_bias=True),
    "llama-7b": PUBLISHED["llama-7b"],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_counts_match_transformers(name: str) -> None:
    """Each family's count is transformers' own, for the causal LM and the reward model."""
    config = AutoConfig.for_model(**CONFIGS[name])
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config)
        config.num_labels = 1
        reward = AutoModelForSequenceClassification.from_config(config)
    shape = ModelShape.from_config(CONFIGS[name])
    assert shape.parameters("lm") == sum(p.numel() for p in lm.parameters())
    assert shape.parameters("score") == sum(p.numel() for p in reward.parameters())


def test_unknown_layouts_are_refused_by_name() -> None:
    with pytest.raises(UnknownNameError, match="model type to size 'mamba'"):
        ModelShape.from_config({"model_type": "mamba", "hidden_size": 8})
    with pytest.raises(ConfigError, match="intermediate_size"):
        ModelShape.from_config({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2,
                                "num_hidden_layers": 1, "vocab_size": 10, "max_position_embeddings": 8})


def test_weight_bytes_per_precision() -> None:
    """7B: 6,476,005,376 decoder linear weights and 262,410,240 other parameters."""
    shape = ModelShape.from_config(PUBLISHED["llama-7b"])
    linear, rest = 32 * (4 * 4096**2 + 3 * 4096 * 11008), 2 * 32000 * 4096 + 65 * 4096
    assert (shape.matmul_parameters, shape.parameters() - shape.matmul_parameters) == (linear, rest)
    assert Precision("float32").weight_bytes(shape) == 4 * 6_738_415_616
    assert Precision("bfloat16").weight_bytes(shape) == 2 * 6_738_415_616  # 12.55 GiB
    # NF4 + double quantization: 4 bits + an 8-bit absmax per 64 weights + a float32 one per 64 x 256
    # (bitsandbytes 0.50.2 measured 4.1274 bits on a 4096 x 4096 weight: that and its 256-entry table)
    assert NF4_BITS == 4 + 8 / 64 + 32 / (64 * 256) == 4.126953125
    nf4 = Precision("bfloat16", "4bit").weight_bytes(shape)
    assert nf4 == int(linear * 4.126953125 / 8 + rest * 2)
    assert nf4 / GIB == pytest.approx(3.60, abs=0.01)
    # LLM.int8: one byte per weight plus a float32 scale per output row (32 layers' rows)
    rows = 32 * (3 * 4096 + 4096 + 2 * 11008 + 4096)
    assert Precision("bfloat16", "8bit").weight_bytes(shape) == linear + 4 * rows + rest * 2
    # QLoRA training keeps what is not quantized in float32
    assert Precision("bfloat16", "4bit").weight_bytes(shape, training=True) == int(linear * NF4_BITS / 8 + rest * 4)


def test_lora_and_adamw_sizes() -> None:
    """LoRA r 64 on PEFT's llama targets (q_proj, v_proj): r (in + out) per adapted weight and
    layer; AdamW keeps 2 float32 moments, the gradient and the float32 weight: 16 bytes each."""
    seven = ModelShape.from_config(PUBLISHED["llama-7b"])
    assert default_lora_targets(seven) == ["q_proj", "v_proj"]
    assert lora_parameters(seven, 64, ["q_proj", "v_proj"], 32) == 64 * 32 * (2 * 4096 + 2 * 4096) == 33_554_432
    seventy = ModelShape.from_config(PUBLISHED["llama-70b"])  # grouped-query attention: v_proj is 8192 -> 1024
    assert lora_parameters(seventy, 64, ["q_proj", "v_proj"], 80) == 64 * 80 * ((8192 + 8192) + (8192 + 1024))
    assert ADAPTER_BYTES == 16
    with pytest.raises(ConfigError, match="'w_in' is not a linear layer"):
        lora_parameters(seven, 8, ["w_in"], 1)

    sizer = Sizer(seven, Precision("bfloat16"), True, lambda _: TYPICAL_DATA)
    weights, trained, optimizer, layers = sizer.reward_model(load_intervention("lora", "paper"))
    assert (trained, optimizer, layers) == (33_554_432 + 4096, (33_554_432 + 4096) * 16, 32)
    assert weights == 2 * seven.parameters("score")
    weights, trained, optimizer, _ = sizer.reward_model(load_intervention("full_fine_tune", "paper"))
    assert (weights, trained) == (4 * seven.parameters("score"), seven.parameters("score"))
    assert optimizer == 12 * trained  # float32 gradients and AdamW moments; the weights are counted above
    assert optimizer / GIB == pytest.approx(73.8, abs=0.1)


def test_estimate_parts_and_sharding() -> None:
    memory = MemoryEstimate(weights=8 * GIB, activations=4 * GIB, optimizer=2 * GIB, buffers=GIB)
    assert memory.total == 15 * GIB
    assert memory.per_device(2) == 7 * GIB + GIB  # weights, optimizer, activations split; buffers do not
    assert memory.gib() == {"weights": 8.0, "activations": 4.0, "optimizer": 2.0, "buffers": 1.0, "total": 15.0}


def test_flops_and_nominal_rates() -> None:
    seven = ModelShape.from_config(PUBLISHED["llama-7b"])
    assert forward_flops(seven, 1000) == 2 * 1000 * seven.matmul_parameters
    assert forward_flops(seven, 0, head_tokens=10) == 2 * 10 * 32000 * 4096
    rate = gpu_flop_rate(gpu_spec("NVIDIA H100 80GB HBM3"), Precision("bfloat16"))
    assert rate.peak == 989.4e12 and rate.seconds(rate.effective) == 1.0
    assert gpu_spec("NVIDIA H100 PCIe").name == "h100-pcie"
    assert gpu_flop_rate(gpu_spec("a100"), Precision("float32")).peak == 19.5e12
    with pytest.raises(UnknownNameError, match="GPU type 'tpu'"):
        gpu_spec("tpu")


def test_packed_lines() -> None:
    assert packed_lines(4, 182, 182, 256) == (4, 182)  # rows longer than half a line go alone
    assert packed_lines(16, 42, 42, 256) == (3, 252)  # six rows a line, padded to the fullest line
    assert packed_lines(16, 42, 1000, 256) == (3, 1000)  # ... and to the longest row


def test_data_shape_from_examples() -> None:
    from genies.data.schema import Distribution, Example

    train = [Example("p" * 400, ("a" * 40, "b" * 80, "c" * 4), 0)]
    shape = DataShape.of(Distribution.from_examples("d", train, [Example("q" * 40, ("x" * 4, "y" * 4), 1)]))
    assert (shape.train, shape.test, shape.responses) == (1, 1, 2.5)
    assert shape.longest_pair == (400 + 80 + 40) / 4 + 2  # a prompt and its two longest responses, + EOS
    assert shape.longest_query == (400 + 124) / 4 + 3
    assert shape.capped(None, 0).test == 0


def _plan(shape_name: str, interventions: list[str], preset: str = "paper"):
    from genies.data.shifts import get_shifts

    shifts = get_shifts("genies")[:2]
    methods = configure_methods([*interventions, "zero_shot", "lora"], preset)
    return build_plan(interventions=interventions, shifts=shifts, methods=methods, seed=0, model_fingerprint="m",
                      precision={}, data_hash=lambda n, s: f"{n}/{s}")


def _sizes(name: str, interventions: list[str], *, quantize: str = "none", devices: int = 1, memory: float = 72.0):
    shape = ModelShape.from_config(PUBLISHED[name])
    precision = Precision("bfloat16", quantize)
    hardware = gpu_hardware(gpu_spec("h100"), devices, memory, rate=gpu_flop_rate(gpu_spec("h100"), precision))
    sizer = Sizer(shape, precision, True, lambda _: TYPICAL_DATA)
    return size_plan(_plan(name, interventions), sizer, hardware), hardware


def test_seven_b_fits_one_gpu_and_lora_training_asks_for_checkpointing() -> None:
    """LLaMA-7B in bf16 on one 80 GB GPU (72 GiB planned): the causal LM (12.6 GiB) stays loaded
    while a reward-model job holds its own copy; a 16-pair batch padded to the longest training row
    saves more activations than fit, so lora fits with gradient checkpointing."""
    sizes, hardware = _sizes("llama-7b", ["lora", "mms"])
    check_fits(sizes, hardware)
    fits = {s.intervention: s for s in sizes if s.kind == "fit" and s.distribution}
    assert fits["lora"].gradient_checkpointing and fits["lora"].placement(hardware) == "1 GPU +ckpt"
    assert fits["lora"].memory.weights == 2 * 6_738_415_616 + 2 * 6_607_347_712  # the LM and the reward model
    assert not fits["mms"].gradient_checkpointing and fits["mms"].devices == 1
    assert totals(sizes)["not_fitting"] == 0 and totals(sizes)["hours"] > 0


def test_a_job_that_cannot_fit_is_refused_in_one_line_naming_the_fix() -> None:
    """LLaMA-30B in bf16: its weights alone (60.6 GiB), twice for a reward model, exceed one GPU."""
    sizes, hardware = _sizes("llama-30b", ["lora"])
    with pytest.raises(ConfigError) as caught:
        check_fits(sizes, hardware)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("fit lora on ") and "GiB" in message and "one h100 GPU has 72.0 GiB" in message
    assert "--quantize 4bit" in message and "--gpus 2" in message and "more jobs do not fit" in message
    # and what the message promises is true: 4-bit fits one GPU, two GPUs fit bf16
    check_fits(*_sizes("llama-30b", ["lora"], quantize="4bit"))
    check_fits(*_sizes("llama-30b", ["lora"], devices=2))


def test_a_smaller_batch_is_named_when_it_is_what_fits() -> None:
    """13B lora on a 56 GiB GPU: with checkpointing, 16 pairs padded to the longest training row
    still do not fit; 8 pairs a forward pass (the same training, accumulated) do."""
    sizes, hardware = _sizes("llama-13b", ["lora"], memory=56.0)
    fit = next(s for s in sizes if s.kind == "fit" and s.intervention == "lora")
    assert not fit.fits and fit.gradient_checkpointing  # shown at its smallest
    assert "--set lora.micro_batch_size=8 (54.5 GiB)" in fit.fixes


# -- the estimate against measured peaks on the embedded model ---------------------------------

PROBE = r'''
"""Peak memory of scoring, hidden-state extraction and one LoRA training step on the embedded
model, each over the RSS just before it (the executor's state when a job starts: model loaded)."""
import json, re, sys
import genies  # noqa: F401
import numpy as np
import torch

def status():
    text = open("/proc/self/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS

def resident(model):
    """Weights into anonymous memory. On CPU transformers memory-maps safetensors, so a weight
    page would count only once touched (an embedding row only for the tokens used); on a GPU
    every weight is resident, and that is what the estimate counts. The copy's own transient
    (file pages and copy together) is no job's: the peak is reset after it."""
    for param in model.parameters():
        param.data = param.data.clone()
    reset_peak()
    return model

def measure(run):
    reset_peak()
    before = status()["VmRSS"]
    run()
    return status()["VmHWM"] - before

import genies.interventions._reward_model as reward_model
from genies.data.schema import Distribution, Example
from genies.interventions.context import FitContext
from genies.interventions.registry import load_intervention
from genies.models.hidden import extract_hidden
from genies.models.loading import load_model
from genies.models.scoring import score_examples

load_reward_model = reward_model.load_reward_model
reward_model.load_reward_model = lambda lm: resident(load_reward_model(lm))
lm = load_model("default")
resident(lm.model)
words = "the of and to in is was for on that with as by at from his an were are which this be have".split()
rng = np.random.default_rng(0)

def text(n):
    return " ".join(rng.choice(words, n))

def examples(n, prompt, response, k):
    return [Example(text(prompt), tuple(text(response) for _ in range(k)), 0) for _ in range(n)]

def tokens(s):
    return len(lm.tokenizer(s, add_special_tokens=False).input_ids)

def shape(train, test):
    """The DataShape fields of these examples, from their real token counts."""
    every = train + test
    responses = [tokens(r) + 1 for e in every for r in e.responses]
    return {"train": len(train), "test": len(test),
            "prompt_tokens": float(np.mean([tokens(e.prompt) for e in every])),
            "response_tokens": float(np.mean(responses)),
            "responses": float(np.mean([len(e.responses) for e in every])),
            "longest_pair": max(tokens(e.prompt) + sum(sorted(tokens(r) + 1 for r in e.responses)[-2:]) for e in every),
            "longest_query": max(tokens(e.prompt) + sum(tokens(r) + 1 for r in e.responses) for e in every)}

score_examples(lm, examples(1, 20, 5, 2))  # the per-model checks, run once per model in a real run too
out = {"folder": str(lm.path)}
scoring = examples(16, 60, 15, 4)  # about 124 tokens each: together one tree of the CPU budget, 2048 nodes
out["scoring"] = {"peak": measure(lambda: score_examples(lm, scoring, batch_tokens=2048)), "data": shape([], scoring)}
extraction = examples(2, 100, 40, 4)  # 8 texts, two prompts of 4 responses: one tree under the CPU budget
prefixes = [e.prompt for e in extraction for _ in e.responses]
completions = [r for e in extraction for r in e.responses]
out["extraction"] = {"peak": measure(lambda: extract_hidden(lm, prefixes, completions)),
                     "data": shape([], extraction)}
train = examples(8, 100, 40, 2)  # the cpu preset's lora: 4 pairs a step, the last 4 layers adapted
source = Distribution.from_examples("probe", train, [])
lora = load_intervention("lora", "cpu", steps=1)
out["lora"] = {"peak": measure(lambda: lora.fit(lm, source, FitContext(seed=0))), "data": shape(train, [])}
print(json.dumps(out))
'''


@pytest.mark.slow
def test_estimates_are_within_30_percent_of_measured_peaks_on_the_embedded_model(tmp_path: Path) -> None:
    """Each job's estimate beyond the loaded causal LM (what the job itself adds: working memory,
    and for lora its reward model, adapters, AdamW state and saved activations) against the peak
    RSS increase it causes, measured in a fresh process. glibc's mmap threshold is fixed so that
    freed tensors leave the RSS at once (by default it grows to 32 MB and freed buffers stay
    in the heap), which makes the RSS peak the peak of live memory, as GPU allocator stats are.

    Measured 2026-11-26 (2 cores, float32): scoring 67.4 MB (the estimate 57.7 MB: a second call
    at the same size peaks at 57.2 MB; the first call's extra 10 MB are one-time buffers the
    estimate leaves to the headroom), extraction 50.0 MB (53.3), lora 727.1 MB (682.3)."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    shape = ModelShape.from_config(json.loads((Path(measured["folder"]) / "config.json").read_text()))
    precision = Precision("float32")

    def estimate(kind: str, method, job: str) -> int:
        data = DataShape(**measured[kind]["data"])
        sizer = Sizer(shape, precision, False, lambda _: data)
        memory = sizer.workload(method, job, "probe").memory(False)
        return memory.total - sizer.base_weights

    estimates = {
        "scoring": estimate("scoring", load_intervention("zero_shot", "cpu"), "predict"),
        "extraction": estimate("extraction", load_intervention("mms", "cpu"), "predict"),
        "lora": estimate("lora", load_intervention("lora", "cpu", steps=1), "fit"),
    }
    report = {k: (round(measured[k]["peak"] / 1e6, 1), round(v / 1e6, 1)) for k, v in estimates.items()}
    for kind, value in estimates.items():
        assert value == pytest.approx(measured[kind]["peak"], rel=0.3), f"{kind}: (measured MB, estimate MB) {report}"


def test_jobs_are_placed_as_the_loader_places_the_model() -> None:
    """Without --gpus, the loader shards a model only when its weights exceed 80 % of one GPU:
    30B in bf16 (60.6 GiB) stays on one 80 GiB GPU, where its reward-model jobs (two copies)
    cannot fit; 70B (128.5 GiB) is spread over every visible GPU. --gpus N shards over N."""
    def plan(name: str, devices: int, given: bool):
        shape = ModelShape.from_config(PUBLISHED[name])
        hardware = gpu_hardware(gpu_spec("h100"), devices, gpus_given=given)
        return size_plan(_plan(name, ["lora"]), Sizer(shape, Precision("bfloat16"), True, lambda _: TYPICAL_DATA),
                         hardware), hardware

    sizes, hardware = plan("llama-30b", 4, given=False)
    assert hardware.memory == int(80 * GIB * 0.9) and hardware.shards(60 * GIB) == 1
    assert {s.devices for s in sizes if s.intervention == "zero_shot"} == {1}
    assert not any(s.fits for s in sizes if s.intervention == "lora")
    assert {s.devices for s in plan("llama-30b", 4, given=True)[0]} == {4}
    assert {s.devices for s in plan("llama-70b", 4, given=False)[0] if s.intervention == "zero_shot"} == {4}


def test_check_run_sizes_a_runs_plan_for_its_placement(tmp_path: Path) -> None:
    """What `genies run` calls before any job: the run's own options decide the hardware (a cuda
    run where no GPU is visible is planned for one H100), its distributions the token counts."""
    from genies.data.schema import Distribution, Example
    from genies.pipeline.config import RunConfig
    from genies.pipeline.sizing import check_run, checkpointing_overrides

    examples = [Example("a prompt " * 40, ("one answer " * 10, "another answer " * 10), 0)] * 20
    source = Distribution.from_examples("d", examples, examples)
    for name in ("llama-7b", "llama-30b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(PUBLISHED[name]))
    config = RunConfig(out=tmp_path / "run", model="m", interventions=("lora",), preset="paper", device="cuda")
    plan = _plan("llama-7b", ["lora"])
    sizes = check_run(plan, config, tmp_path / "llama-7b", lambda _: source)
    assert len(sizes) == plan.n_jobs and all(s.fits and s.devices == 1 for s in sizes)
    # 20 short pairs a batch of 16 fits without checkpointing; the typical GENIES lengths do not
    assert checkpointing_overrides(sizes) == {}
    assert checkpointing_overrides(check_run(plan, config, tmp_path / "llama-7b")) == {
        "lora": {"gradient_checkpointing": True}}
    with pytest.raises(ConfigError, match=r"^fit lora on .* it fits with --quantize 4bit .* or --gpus 2 "):
        check_run(plan, config, tmp_path / "llama-30b", lambda _: source)
    (tmp_path / "mamba").mkdir()
    (tmp_path / "mamba" / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert check_run(plan, config, tmp_path / "mamba") == []  # a layout the planner does not know: not checked
