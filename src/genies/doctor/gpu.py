"""`genies doctor --gpu`: can this GPU run genies at a given model size, and how fast?

No weights are needed: a model of the chosen shape (`shapes`) is built with random weights in
bf16 directly on the GPU, and every check compares two ways of computing the same numbers, which
random weights make as telling as trained ones. In order:

- `gpu`: a CUDA GPU is visible and computes in bf16 (its sustained bf16 matmul rate, measured);
- `build`: the random model, built on the GPU;
- `bf16-vs-fp32`: scores of the same weights in bf16 and in fp32 (the weights are drawn in bf16,
  so the fp32 copy is exact: parameters are upcast in place and cast back, never held twice);
- `tree-vs-dense`: the scoring engine's two attention paths at the GPU batch budget, agreement
  and tokens per second;
- `lora`, `lora-4bit`: LoRA reward-model training steps through the methods' own training
  forward, with the causal LM still loaded as it is during a run; the 4-bit step (bitsandbytes)
  first quantizes both models to NF4, as `--quantize 4bit` loads them (QLoRA);
- `memory`: the peak memory of the scoring and training checks against the planner's estimate
  for the same work (`genies.pipeline.sizing` sizing a zero_shot and a lora job on data with
  these checks' token counts).

`plan_gpu_checks` describes all this without a GPU (`--dry-run`). Only torch, transformers,
peft and accelerate are needed; bitsandbytes and the planner are imported when a check uses
them, and their absence is a skip with its reason.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genies.data.schema import Example
from genies.doctor.checks import (
    check_tree_vs_dense,
    lora_method,
    lora_step,
    max_diff_per_token,
    quantize_4bit,
    sample_examples,
    score_tolerance,
    training_pairs,
)
from genies.doctor.report import CheckFailed, CheckResult, CheckSkipped, Checkup, DoctorReport, Outcome
from genies.doctor.shapes import ShapeSpec, parameter_counts, random_causal_lm, random_reward_model, shape_spec
from genies.models.base import LoadedModel
from genies.models.prefix_tree import GPU_BATCH_TOKENS
from genies.models.scoring import tokenize_examples

GIB = 1024**3
GPU_CHECKS: tuple[tuple[str, str], ...] = (
    ("gpu", "a CUDA GPU is visible and computes in bf16; its bf16 matmul rate"),
    ("build", "random weights in the shape, built in bf16 on the GPU"),
    ("bf16-vs-fp32", "scores of the same weights in bf16 and in fp32"),
    ("tree-vs-dense", "tree against dense attention at the GPU batch budget: agreement and speed"),
    ("lora", "LoRA reward-model training steps on a bf16 base, the causal LM loaded beside it"),
    ("lora-4bit", "QLoRA training steps, both models in NF4 (needs bitsandbytes)"),
    ("memory", "measured peak memory of scoring and training against the planner's estimate"),
)
AGREEMENT_EXAMPLES = 16
SPEED_EXAMPLES = 128  # long prompts: several full batches of the GPU budget
SPEED_PROMPT_WORDS = (40, 100)
SPEED_RESPONSE_WORDS = (5, 30)
LORA_PAIRS = 4
PLANNER_TOLERANCE = 0.3  # the target: the estimate within 30 % of the measured peak
MATMUL_SIZE = 8192  # large enough that one bf16 matmul takes milliseconds on an H100


def run_gpu_checks(shape: str = "default", *, seed: int = 0, device: str = "cuda",
                   on_result: Callable[[CheckResult], None] | None = None) -> DoctorReport:
    """Run every GPU check on random weights in `shape` on `device` (cuda:1 for the second GPU);
    see the module docstring."""
    spec = shape_spec(shape)
    report = DoctorReport("gpu", {"shape": spec.name, "source": spec.source, **spec.summary()})
    checkup = Checkup(report, on_result)
    session = _GpuSession(spec, seed, torch.device(device))
    for i, (name, _) in enumerate(GPU_CHECKS):
        result = checkup.run(name, getattr(session, name.replace("-", "_")))
        if name in ("gpu", "build") and result.status != "ok":
            for rest, _ in GPU_CHECKS[i + 1:]:
                checkup.skip(rest, f"nothing to check on (the {name} check failed)")
            break
    session.lm = None
    session.release()
    return report


@dataclass(frozen=True)
class Workload:
    """What one measured phase computed, in the planner's terms: the job ("score": the scoring
    engine at the GPU batch budget, as zero_shot runs it; "lora": training steps of
    `checks.lora_method`, one batch of every pair), the
    models' quantization, and each example's token counts (prompt, responses with their EOS)."""

    job: str
    quantize: str
    examples: tuple[tuple[int, tuple[int, ...]], ...]

    @classmethod
    def of(cls, job: str, quantize: str, lm: LoadedModel, examples: Sequence[Example]) -> Workload:
        tokenized = tokenize_examples(lm, examples)
        return cls(job, quantize, tuple((len(t.prompt), tuple(len(r) for r in t.responses)) for t in tokenized))


class _GpuSession:
    """The checks' shared state (the model, the training data, the peaks measured) and the GPU
    bookkeeping around the device-independent checks."""

    def __init__(self, spec: ShapeSpec, seed: int, device: torch.device) -> None:
        self.spec = spec
        self.seed = seed
        self.device = device
        self.lm: LoadedModel | None = None
        self.peaks: dict[str, int] = {}  # phase -> torch.cuda.max_memory_allocated bytes
        self.workloads: dict[str, Workload] = {}  # phase -> what it computed, for the planner
        self.matmul_flops = 0.0  # TFLOP/s, measured by the gpu check

    def gpu(self) -> Outcome:
        from genies.bench.machine import MatmulProbe

        if not torch.cuda.is_available():
            raise CheckFailed(f"no CUDA GPU is visible (torch {torch.__version__}, CUDA "
                              f"{torch.version.cuda or 'none'}); `genies doctor --gpu --dry-run` shows what would run")
        props = torch.cuda.get_device_properties(self.device)
        metrics = {"name": props.name, "memory_gib": props.total_memory / GIB,
                   "capability": f"{props.major}.{props.minor}", "torch": torch.__version__, "cuda": torch.version.cuda}
        if not torch.cuda.is_bf16_supported():
            raise CheckFailed(f"{props.name} does not compute in bf16, the dtype genies uses on GPUs", metrics)
        probe = MatmulProbe(MATMUL_SIZE, self.device, torch.bfloat16)
        probe.sample(repeats=20)
        self.matmul_flops = metrics["matmul_tflops"] = probe.flops_per_s / 1e12
        return Outcome(f"{props.name}, {props.total_memory / GIB:.0f} GiB, compute capability "
                       f"{props.major}.{props.minor}; bf16 matmul {self.matmul_flops:.0f} TFLOP/s; "
                       f"torch {torch.__version__}", metrics)

    def build(self) -> Outcome:
        with self._peak("build"):
            self.lm = random_lm(self.spec, self.device, self.seed)
        parameters = sum(p.numel() for p in self.lm.model.parameters())
        weights = torch.cuda.memory_allocated(self.device)
        return Outcome(f"{parameters:,} parameters, {weights / GIB:.2f} GiB in bf16 ({self.spec.source})",
                       {"parameters": parameters, "weights_gib": weights / GIB,
                        "build_peak_gib": self.peaks.pop("build") / GIB})

    def bf16_vs_fp32(self) -> Outcome:
        return check_bf16_vs_fp32(self.lm, sample_examples(AGREEMENT_EXAMPLES, self.seed))

    def tree_vs_dense(self) -> Outcome:
        examples = speed_examples(self.seed)
        self.workloads["score"] = Workload.of("score", "none", self.lm, examples)
        try:
            with self._peak("score"):
                outcome = check_tree_vs_dense(self.lm, examples, batch_tokens=GPU_BATCH_TOKENS)
        except CheckSkipped as skip:  # the engine uses no tree attention here: keep the dense numbers
            raise CheckSkipped(skip.reason, self._speed_metrics(skip.metrics)) from None
        metrics = self._speed_metrics(outcome.metrics)
        return Outcome(f"{outcome.detail}; dense at {metrics['dense_fraction_of_matmul']:.0%} of the matmul rate; "
                       f"peak {self.peaks['score'] / GIB:.2f} GiB", metrics)

    def _speed_metrics(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The check's numbers plus each path's achieved matmul FLOP/s over what the GPU's matmuls
        sustain (2 FLOPs per parameter per token), and the scoring peak memory."""
        out = dict(metrics)
        parameters = sum(p.numel() for p in self.lm.model.parameters())
        for path in ("tree", "dense"):
            if f"{path}_tokens_per_s" in out:
                out[f"{path}_fraction_of_matmul"] = out[f"{path}_tokens_per_s"] * 2 * parameters / (
                    self.matmul_flops * 1e12)
        out["score_peak_gib"] = self.peaks["score"] / GIB
        return out

    def lora(self) -> Outcome:
        return self._lora_steps(quantized=False)

    def lora_4bit(self) -> Outcome:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise CheckSkipped("bitsandbytes is not installed (pip install 'genies[gpu]'), so there is no 4-bit step")
        quantize_4bit(self.lm.model, torch.bfloat16)  # the run's causal LM, as --quantize 4bit loads it
        return self._lora_steps(quantized=True)

    def _lora_steps(self, quantized: bool) -> Outcome:
        phase = "lora-4bit" if quantized else "lora"
        examples = training_examples(self.seed)
        model = lora_reward_model(self.spec, self.device, self.seed, quantized)
        self.release()  # a 4-bit model is built in bf16 first: that transient is not the training's peak
        try:
            with self._peak(phase):
                outcome = lora_step(model, self.lm, training_pairs(self.lm, examples))
        finally:
            del model
            self.release()
        self.workloads[phase] = Workload.of("lora", "4bit" if quantized else "none", self.lm, examples)
        return Outcome(f"{outcome.detail}; peak {self.peaks[phase] / GIB:.2f} GiB",
                       {**outcome.metrics, "peak_gib": self.peaks[phase] / GIB})

    def memory(self) -> Outcome:
        measured = {f"{phase}_peak_gib": peak / GIB for phase, peak in self.peaks.items()}
        if not self.workloads:
            raise CheckSkipped("no peak was measured (the scoring and training checks did not finish)", measured)
        config = self.spec.config().to_dict()
        try:
            estimates = {phase: planner_estimate(config, work) for phase, work in self.workloads.items()}
        except CheckSkipped as skip:
            raise CheckSkipped(skip.reason, measured) from None
        metrics: dict[str, Any] = dict(measured)
        compared, off = [], []
        for phase, estimate in estimates.items():
            ratio = estimate / self.peaks[phase]
            metrics[f"{phase}_estimate_gib"], metrics[f"{phase}_estimate_ratio"] = estimate / GIB, ratio
            line = f"{phase} {estimate / GIB:.2f} GiB estimated vs {self.peaks[phase] / GIB:.2f} GiB measured"
            compared.append(line)
            if not abs(ratio - 1) <= PLANNER_TOLERANCE:
                off.append(line)
        if off:
            raise CheckFailed(f"planner off by more than {PLANNER_TOLERANCE:.0%}: {'; '.join(off)}", metrics)
        return Outcome(f"planner within {PLANNER_TOLERANCE:.0%}: {'; '.join(compared)}", metrics)

    @contextmanager
    def _peak(self, phase: str) -> Iterator[None]:
        """Record the peak GPU memory allocated during the block as `phase`."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield
        finally:
            torch.cuda.synchronize(self.device)
            self.peaks[phase] = torch.cuda.max_memory_allocated(self.device)

    def release(self) -> None:
        """Hand freed blocks back to the GPU so the next phase's peak starts from what it holds."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_bf16_vs_fp32(lm: LoadedModel, examples: list[Example]) -> Outcome:
    """Scores of `lm` (a bf16 model) in bf16 and, with its parameters upcast in place, in fp32.

    The weights were drawn in bf16, so the fp32 model holds exactly the same numbers and the
    cast back is exact; the model is never held in both precisions at once."""
    from genies.models.scoring import score_examples

    bf16 = score_examples(lm, examples)
    _cast_parameters(lm.model, torch.float32)
    try:
        fp32 = score_examples(lm, examples)
    finally:
        _cast_parameters(lm.model, torch.bfloat16)
    diff, tol = max_diff_per_token(bf16, fp32), score_tolerance(torch.bfloat16, fp32)
    same_best = sum(int(a.sum.argmax() == b.sum.argmax()) for a, b in zip(bf16, fp32)) / len(examples)
    metrics = {"examples": len(examples), "max_diff_per_token": diff, "tolerance": tol, "same_best_response": same_best}
    if not diff <= tol:
        raise CheckFailed(f"bf16 and fp32 scores differ by {diff:.1e} nats/token (tolerance {tol:.1e})", metrics)
    return Outcome(f"bf16 = fp32 within {diff:.1e} nats/token on {len(examples)} examples; the same best "
                   f"response in {same_best:.0%} of them", metrics)


def lora_reward_model(spec: ShapeSpec, device: torch.device, seed: int, quantized: bool) -> torch.nn.Module:
    """A random-weights bf16 reward model of the shape on `device`, made trainable as the lora
    intervention trains it: on a quantized base the QLoRA recipe (`prepare_model_for_kbit_training`),
    adapters from `Lora.wrap`, and every trained tensor in fp32 (bf16 Adam updates round away)."""
    from genies.interventions._reward_model import head_name

    model = random_reward_model(spec, device, torch.bfloat16, seed)
    with warnings.catch_warnings():  # PEFT calls transformers APIs deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        if quantized:
            from peft import prepare_model_for_kbit_training

            quantize_4bit(model, torch.bfloat16)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = lora_method(LORA_PAIRS).wrap(model, head_name(model))
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model


def _cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters in place, one at a time (peak: the model in `dtype` plus one tensor).
    Buffers keep their dtype: rotary frequencies stay fp32 as the model built them."""
    for param in model.parameters():
        param.data = param.data.to(dtype)


def random_lm(spec: ShapeSpec, device: str | torch.device, seed: int) -> LoadedModel:
    """A random-weights bf16 model of the shape on `device` ("meta" for its tokenization only)
    with the byte tokenizer. Built in memory: there is no folder, and no check reloads it."""
    from genies.models.testing import byte_tokenizer

    name = f"random:{spec.name}"
    model = random_causal_lm(spec, device, torch.bfloat16, seed)
    return LoadedModel(name=name, model=model, tokenizer=byte_tokenizer(), path=Path(name),
                       fingerprint=f"{name}:{seed}")


def speed_examples(seed: int) -> list[Example]:
    """Long examples for tree against dense: several full batches of the GPU budget."""
    return sample_examples(SPEED_EXAMPLES, seed + 1, SPEED_PROMPT_WORDS, SPEED_RESPONSE_WORDS)


def training_examples(seed: int) -> list[Example]:
    """The LoRA checks' examples: a prompt, its preferred and one dispreferred response."""
    return [Example(ex.prompt, ex.responses[:2], 0) for ex in sample_examples(LORA_PAIRS, seed + 2)]


def planner_estimate(config: Mapping[str, Any], workload: Workload) -> int:
    """Peak GPU bytes the memory planner gives for `workload` on a model with this config.json
    dict: `genies.pipeline.sizing` sizes a zero_shot job ("score") or a lora fit of one batch of
    every pair ("lora") on data with the workload's token counts; `CheckSkipped` when this
    installation has no planner."""
    try:
        from genies.models.memory import ModelShape, Precision
        from genies.pipeline.sizing import DataShape, Sizer
    except ImportError:
        raise CheckSkipped("planner not available (genies.models.memory or genies.pipeline.sizing is missing)"
                           ) from None
    from genies.interventions.zero_shot import ZeroShot

    prompts = [p for p, _ in workload.examples]
    responses = [r for _, rs in workload.examples for r in rs]
    data = DataShape(train=len(prompts), test=len(prompts), prompt_tokens=statistics.fmean(prompts),
                     response_tokens=statistics.fmean(responses),
                     responses=statistics.fmean(len(rs) for _, rs in workload.examples),
                     longest_pair=max(p + sum(sorted(rs)[-2:]) for p, rs in workload.examples),
                     longest_query=max(p + sum(rs) for p, rs in workload.examples))
    sizer = Sizer(ModelShape.from_config(config), Precision("bfloat16", workload.quantize), gpu=True,
                  data=lambda _: data)
    if workload.job == "score":
        work = sizer.scoring(ZeroShot(), data)
    else:
        work = sizer.reward_training(lora_method(len(prompts)), data)
    return work.memory(False).total


# ---- --dry-run ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedCheck:
    """One check as `--dry-run` describes it: the dtype it computes in, the bytes the weights it
    holds take, and the planner's peak estimate when there is a planner."""

    name: str
    what: str
    dtype: str
    weights_bytes: int | None
    planner_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        def gib(value: int | None) -> float | None:
            return None if value is None else round(value / GIB, 3)

        return {"name": self.name, "what": self.what, "dtype": self.dtype, "weights_gib": gib(self.weights_bytes),
                "planner_peak_gib": gib(self.planner_bytes)}


@dataclass(frozen=True)
class GpuPlan:
    """What `genies doctor --gpu --shape S` would build and run."""

    spec: ShapeSpec
    parameters: dict[str, int]
    checks: tuple[PlannedCheck, ...]
    planner: str  # "available" or why not

    def lines(self) -> list[str]:
        s = self.spec.summary()
        out = [f"dry run: genies doctor --gpu --shape {self.spec.name} would run these checks on one CUDA GPU "
               "(nothing is built now)",
               f"shape {self.spec.name} ({self.spec.source}): {s['model_type']}, {s['num_hidden_layers']} layers, "
               f"hidden {s['hidden_size']}, intermediate {s['intermediate_size']}, {s['num_attention_heads']} heads "
               f"({s['num_key_value_heads']} KV), vocab {s['vocab_size']}",
               f"parameters: {self.parameters['causal_lm']:,} (causal LM), {self.parameters['reward_model']:,} "
               "(reward model); random weights drawn in bf16 on the GPU",
               f"examples: {AGREEMENT_EXAMPLES} for bf16 vs fp32, {SPEED_EXAMPLES} long ones for tree vs dense, "
               f"{LORA_PAIRS} training pairs (byte-level tokenizer)",
               f"{'check':<15}{'dtype':<11}{'weights':>10}{'planner':>10}  what"]
        for c in self.checks:
            weights = "-" if c.weights_bytes is None else f"{c.weights_bytes / GIB:.1f} GiB"
            planned = "-" if c.planner_bytes is None else f"{c.planner_bytes / GIB:.1f} GiB"
            out.append(f"{c.name:<15}{c.dtype:<11}{weights:>10}{planned:>10}  {c.what}")
        out.append(f"planner: {self.planner}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "gpu-dry-run", "shape": self.spec.name, "source": self.spec.source,
                "config": self.spec.summary(), "parameters": self.parameters,
                "checks": [c.to_dict() for c in self.checks], "planner": self.planner,
                "examples": {"agreement": AGREEMENT_EXAMPLES, "speed": SPEED_EXAMPLES, "lora_pairs": LORA_PAIRS}}


def plan_gpu_checks(shape: str = "default", seed: int = 0) -> GpuPlan:
    """The checks `run_gpu_checks(shape)` would make; weights counted on the meta device."""
    spec = shape_spec(shape)
    counts = parameter_counts(spec)
    causal, reward, linear = counts["causal_lm"], counts["reward_model"], counts["reward_linear"]
    # NF4 keeps about half a byte per quantized weight; QLoRA keeps the reward model's other weights in fp32
    nf4 = linear // 2 + (causal - linear) * 2 + linear // 2 + (reward - linear) * 4
    lm = random_lm(spec, "meta", seed)  # its tokenizer and config: the token counts of the checks' data
    workloads = {"tree-vs-dense": Workload.of("score", "none", lm, speed_examples(seed)),
                 "lora": Workload.of("lora", "none", lm, training_examples(seed)),
                 "lora-4bit": Workload.of("lora", "4bit", lm, training_examples(seed))}
    weights = {"build": causal * 2, "bf16-vs-fp32": causal * 4, "tree-vs-dense": causal * 2,
               "lora": (causal + reward) * 2, "lora-4bit": nf4}
    dtypes = {"bf16-vs-fp32": "bf16+fp32", "lora": "bf16+fp32", "lora-4bit": "nf4+fp32", "memory": "-"}
    planner = "available"
    estimates: dict[str, int | None] = {}
    config = spec.config().to_dict()
    for name, workload in workloads.items():
        try:
            estimates[name] = planner_estimate(config, workload)
        except CheckSkipped as skip:
            planner, estimates[name] = f"skipped: {skip.reason}", None
    checks = tuple(PlannedCheck(name, what, dtypes.get(name, "bf16"), weights.get(name), estimates.get(name))
                   for name, what in GPU_CHECKS)
    return GpuPlan(spec, counts, checks, planner)
