"""Size every job of a plan: its peak memory, where it runs, and about how long it takes.

Why a planner: a 30B reward model that runs out of GPU memory after an hour of extraction jobs
wastes the hour and says nothing useful. `size_plan` estimates each job from the model's config
(`genies.models.memory`), the job's batch settings (the method's own hyperparameters) and the
token counts of its data, places it where the run will (the CPU, one GPU, or sharded over the
run's GPUs exactly when the loader would shard the model: `Hardware.shards`), turns gradient
checkpointing on for reward-model training whose activations would not fit otherwise, and
`check_fits` refuses a plan with a job that does not fit, naming the options that would help.

What each job computes, as the code does it today:

- zero_shot / few_shot predictions: the scoring engine's forward passes of `batch_tokens` nodes
  (tree attention on CPU, padded rows of 384 nodes under a dense mask on GPU) and the LM head
  over chunks of 128 scored positions.
- representation methods (mms, lat, cra, ccs, logistic): hidden-state extraction of the split in
  batches of the activation store's 8 texts, one packed row per prompt, all hidden states of the
  batch kept; cra and ccs read each text twice (Yes and No templates). Extraction is cached per
  (distribution, split, template), so its time is counted once, for the first job that needs it.
  The probes are fitted on the CPU from the stored activations: not counted.
- reward models (lora, prompt_tuning, full_fine_tune): the job loads its own copy of the model
  as a sequence classifier while the run's causal LM stays loaded, so both count. Training
  packs each pair into one row (prompt tuning cannot: two padded sequences per pair), rows share
  lines of 256 tokens, and lora's `last_layers` keeps the frozen layers' outputs once per pair.
- model loading is not counted in the time, nor are CPU-side probe fits.

Token counts: each distribution's own examples when its data is at hand, else `TYPICAL_DATA`.
Peaks use the longest example (a batch is padded to its longest row), times use the means.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genies.data.schema import Distribution
from genies.errors import ConfigError, UnknownNameError
from genies.interventions.base import Intervention
from genies.models.memory import (
    ADAPTER_BYTES,
    FULL_FINE_TUNE_OPTIMIZER_BYTES,
    GIB,
    FlopRate,
    GpuSpec,
    MemoryEstimate,
    ModelShape,
    Precision,
    backward_buffer_bytes,
    checkpointed_layer_bytes,
    default_lora_targets,
    forward_flops,
    inference_layer_bytes,
    lm_head_buffer,
    lora_module_shapes,
    lora_parameters,
    quantized_buffer,
    training_layer_bytes,
)
from genies.pipeline.jobs import FitJob
from genies.pipeline.plan import Plan

CHARS_PER_TOKEN = 4.0  # the embedded model's tokenizer over the 66 GENIES distributions: 3.97
USABLE_FRACTION = 0.9  # of a device's memory: room for the CUDA context, fragmentation, what is not counted
MAX_SUGGESTED_GPUS = 8  # a node's worth: the most GPUs a refusal suggests sharding over
CHECKPOINTING = "gradient_checkpointing"  # the reward models' switch, when the installed version has it


@dataclass(frozen=True)
class DataShape:
    """The token counts of one distribution that sizing needs (means for time, longest for peaks)."""

    train: int  # examples of the train split (one training pair each)
    test: int  # examples of the test split
    prompt_tokens: float  # mean
    response_tokens: float  # mean, EOS included
    responses: float  # mean responses per example
    longest_pair: int  # the longest prompt + its two longest responses: a training row
    longest_query: int  # the longest prompt + all its responses: a scoring or extraction row

    @classmethod
    def of(cls, distribution: Distribution) -> DataShape:
        """From a distribution's examples (after any caps), at CHARS_PER_TOKEN characters a token."""
        examples = [*distribution.train, *distribution.test]
        if not examples:
            raise ConfigError(f"distribution {distribution.id!r} has no examples to size")
        responses = [len(r) for ex in examples for r in ex.responses]
        pairs = [len(ex.prompt) + sum(sorted(len(r) for r in ex.responses)[-2:]) for ex in examples]
        queries = [len(ex.prompt) + sum(len(r) for r in ex.responses) for ex in examples]
        n_responses = [len(ex.responses) for ex in examples]
        return cls(
            train=len(distribution.train), test=len(distribution.test),
            prompt_tokens=sum(len(ex.prompt) for ex in examples) / len(examples) / CHARS_PER_TOKEN,
            response_tokens=sum(responses) / len(responses) / CHARS_PER_TOKEN + 1,
            responses=sum(n_responses) / len(examples),
            longest_pair=math.ceil(max(pairs) / CHARS_PER_TOKEN) + 2,
            longest_query=math.ceil(max(queries) / CHARS_PER_TOKEN) + max(n_responses),
        )

    def capped(self, max_train: int | None, max_test: int | None) -> DataShape:
        """The shape under a budget's example caps (the longest examples are kept: conservative)."""
        return dataclasses.replace(self, train=self.train if max_train is None else min(self.train, max_train),
                                   test=self.test if max_test is None else min(self.test, max_test))

    @property
    def query_tokens(self) -> float:
        """Mean tokens of a prompt with all of its responses (the prompt computed once)."""
        return self.prompt_tokens + self.responses * self.response_tokens

    @property
    def pair_tokens(self) -> float:
        """Mean tokens of a training row: a prompt and two responses."""
        return self.prompt_tokens + 2 * self.response_tokens


# Measured over all 66 GENIES distributions (the published data) with the embedded
# model's tokenizer: mean train and test examples per distribution, mean prompt and response
# (+ EOS) tokens, mean responses per example, and the longest training row and query of all.
TYPICAL_DATA = DataShape(train=685, test=288, prompt_tokens=98, response_tokens=44, responses=3.2,
                         longest_pair=1038, longest_query=1714)


@dataclass(frozen=True)
class Hardware:
    """Where jobs run: the CPU, or `devices` GPUs of one kind with `memory` usable bytes each.
    `capacity` is what the loader sees of one GPU (its memory, or --gpu-memory) and `gpus_given`
    whether --gpus was: together they decide whether a model is sharded (`shards`)."""

    kind: str  # "cpu" | "cuda"
    name: str  # "cpu" or a GPU type (`genies.models.memory.GPUS`)
    devices: int
    memory: int  # usable bytes per device
    rate: FlopRate | None = None  # None: no time estimates
    capacity: int = 0
    gpus_given: bool = False

    @property
    def gpu(self) -> bool:
        return self.kind == "cuda"

    def shards(self, weights: int) -> int:
        """GPUs the loader spreads a model of `weights` bytes over (`placement.weight_placement`):
        all of the run's GPUs when --gpus asks for several or when the weights exceed
        WEIGHT_SHARE of one GPU, else one. A reward-model job's copy is placed like the LM."""
        from genies.models.placement import WEIGHT_SHARE

        if not self.gpu or self.devices == 1:
            return 1
        return self.devices if self.gpus_given or weights > WEIGHT_SHARE * self.capacity else 1

    def describe(self) -> str:
        if not self.gpu:
            return f"the CPU has {self.memory / GIB:.1f} GiB"
        count = "one" if self.devices == 1 else f"each of {self.devices}"
        return f"{count} {self.name} GPU{'s' if self.devices > 1 else ''} has {self.memory / GIB:.1f} GiB"


def cpu_hardware(rate: FlopRate | None = None) -> Hardware:
    """This machine's CPU, with USABLE_FRACTION of its physical memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Hardware("cpu", "cpu", 1, int(total * USABLE_FRACTION), rate)


def gpu_hardware(spec: GpuSpec, devices: int, memory_gib: float | None = None, *,
                 reported_bytes: int | None = None, rate: FlopRate | None = None, gpus_given: bool = True
                 ) -> Hardware:
    """`devices` GPUs of `spec` (`gpus_given`: by --gpus). Usable memory: `memory_gib` as given
    (--gpu-memory), else USABLE_FRACTION of what the GPU reports, else of its nominal size."""
    capacity = reported_bytes if reported_bytes is not None else int(spec.memory_gib * GIB)
    if memory_gib is not None:
        capacity = min(capacity, int(memory_gib * GIB))
        usable = int(memory_gib * GIB)
    else:
        usable = int(capacity * USABLE_FRACTION)
    return Hardware("cuda", spec.name, devices, usable, rate, capacity, gpus_given)


def hardware_for(*, device: str = "auto", gpus: int | None = None, gpu_memory: float | None = None,
                 gpu_type: str | None = None, dtype: str = "auto", quantize: str = "none", rate: bool = True
                 ) -> tuple[Hardware, Precision]:
    """The devices and precision to size for, from the run's options. GPUs when asked for
    (`gpus`, `gpu_memory`, `gpu_type`, a cuda `device`) or visible, else the CPU; `dtype` auto
    is bfloat16 on GPU and float32 on CPU, as `Placement` resolves it. `rate`: measure (CPU) or
    look up (GPU) the FLOP rate for time estimates; a fit check alone does not need it."""
    import torch

    from genies.models.memory import cpu_flop_rate, gpu_flop_rate, gpu_spec

    visible = torch.cuda.is_available()
    asked = gpus is not None or gpu_memory is not None or gpu_type is not None or device.startswith("cuda")
    on_gpu = device != "cpu" and (asked or visible)
    precision = Precision(dtype if dtype != "auto" else ("bfloat16" if on_gpu else "float32"), quantize)
    if not on_gpu:
        return cpu_hardware(cpu_flop_rate() if rate else None), precision
    reported = None
    if gpu_type is None and visible:
        spec = gpu_spec(torch.cuda.get_device_name(0))
        reported = torch.cuda.get_device_properties(0).total_memory
    else:
        spec = gpu_spec(gpu_type or "h100")
    count = gpus if gpus is not None else (torch.cuda.device_count() if visible and gpu_type is None else 1)
    return gpu_hardware(spec, count, gpu_memory, reported_bytes=reported, gpus_given=gpus is not None,
                        rate=gpu_flop_rate(spec, precision) if rate else None), precision


# -- what a job computes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """One job's memory (as a function of gradient checkpointing) and its FLOPs."""

    memory: Callable[[bool], MemoryEstimate]
    flops: Callable[[bool], float]
    trains: bool = False  # gradient checkpointing applies
    note: str = ""


@dataclass(frozen=True)
class Sizer:
    """Everything a job's workload depends on besides the job: the model, its precision, the
    device kind (batch defaults and attention path differ) and the data's token counts."""

    shape: ModelShape
    precision: Precision
    gpu: bool
    data: Callable[[str], DataShape]

    @property
    def base_weights(self) -> int:
        """The run's causal LM, loaded for the whole run once a job needs it."""
        return self.precision.weight_bytes(self.shape, "lm")

    def workload(self, method: Intervention, kind: str, distribution: str | None, extract: bool = True
                 ) -> Workload:
        """`kind` "fit" (on `distribution`'s train split) or "predict" (its test split);
        `extract`: whether this job computes its hidden states (False when an earlier job did:
        then its time is not counted again; its memory still is, for whichever job runs first)."""
        from genies.interventions._reward_model import RewardModelIntervention
        from genies.interventions.few_shot import FewShot
        from genies.interventions.random_baseline import RandomBaseline
        from genies.interventions.zero_shot import ZeroShot

        nothing = Workload(lambda _: MemoryEstimate(self.base_weights), lambda _: 0.0)
        if isinstance(method, RandomBaseline) or (kind == "fit" and not method.needs_training_data):
            return nothing
        if isinstance(method, (ZeroShot, FewShot)):
            return nothing if kind == "fit" else self.scoring(method, self.data(distribution or ""))
        if isinstance(method, RewardModelIntervention):
            data = self.data(distribution or "")
            return self.reward_training(method, data) if kind == "fit" else self.reward_scoring(method, data)
        templates = extraction_templates(method)
        if templates:
            data = self.data(distribution or "")
            return self.extraction(templates, data.train if kind == "fit" else data.test, data, extract)
        return dataclasses.replace(nothing, note=f"{method.name}: not sized (runs code genies cannot see)")

    # -- scoring engine (zero_shot, few_shot) ---------------------------------------------------
    def scoring(self, method: Any, data: DataShape) -> Workload:
        from genies.interventions.few_shot import FewShot
        from genies.models.prefix_tree import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, ROW_TOKENS
        from genies.models.scoring import HEAD_CHUNK

        s, p = self.shape, self.precision
        shots = method.num_shots * (data.prompt_tokens + data.response_tokens + 1) if isinstance(method, FewShot) else 0
        budget = method.batch_tokens or (GPU_BATCH_TOKENS if self.gpu else CPU_BATCH_TOKENS)
        tokens = max(budget, data.longest_query + shots)  # a query longer than the budget goes alone
        layer = tokens * inference_layer_bytes(s, p)
        head = tokens * s.hidden_size * p.bytes + lm_head_buffer(s, p, HEAD_CHUNK)
        mask = tokens * ROW_TOKENS * p.bytes if self.gpu else 0  # dense path: [rows, 1, 384, 384]
        memory = MemoryEstimate(self.base_weights, buffers=mask + max(layer, head) + quantized_buffer(s, p))
        scored = data.test * data.responses * data.response_tokens
        flops = forward_flops(s, data.test * (data.query_tokens + shots), head_tokens=scored)
        return Workload(lambda _: memory, lambda _: flops)

    # -- hidden-state extraction (representation methods) ---------------------------------------
    def extraction(self, templates: Sequence[tuple[str, float]], examples: int, data: DataShape, extract: bool
                   ) -> Workload:
        from genies.models.prefix_tree import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, ROW_TOKENS

        s, p = self.shape, self.precision
        budget = GPU_BATCH_TOKENS if self.gpu else CPU_BATCH_TOKENS  # the activation store's default
        peak = MemoryEstimate(self.base_weights)
        flops = 0.0
        for _, extra in templates:
            width = data.longest_query + math.ceil(data.responses * extra) + 1  # + BOS
            # tokens per forward: the budget, or the whole split when smaller; a query longer than it goes alone
            tokens = max(width, min(budget, math.ceil(examples * (data.query_tokens + data.responses * extra + 1))))
            mask = tokens * max(ROW_TOKENS, width) * p.bytes if self.gpu else 0  # dense rows on GPUs, tree on CPU
            memory = MemoryEstimate(
                self.base_weights, activations=(s.num_layers + 1) * tokens * s.hidden_size * p.bytes,
                buffers=tokens * inference_layer_bytes(s, p) + mask + quantized_buffer(s, p))
            peak = max(peak, memory, key=lambda m: m.total)
            flops += forward_flops(s, examples * (data.query_tokens + data.responses * extra + 1))
        counted = flops if extract else 0.0
        return Workload(lambda _: peak, lambda _: counted)

    # -- reward models (lora, prompt_tuning, full_fine_tune) ------------------------------------
    def reward_model(self, method: Any) -> tuple[int, int, int, int]:
        """(weights of the job's reward model, trained parameters, optimizer bytes, layers that
        carry gradients) for a reward-model method. Full fine-tuning's weights are its float32
        trained copies; an adapter's float32 tensors count with the optimizer in training."""
        from genies.interventions.full_fine_tune import FullFineTune
        from genies.interventions.lora import Lora
        from genies.interventions.prompt_tuning import PromptTuning

        s, p = self.shape, self.precision
        head = s.hidden_size  # the score head, trained in full (PEFT's modules_to_save copy)
        if isinstance(method, FullFineTune):
            trained = s.parameters("score")
            return 4 * trained, trained, trained * FULL_FINE_TUNE_OPTIMIZER_BYTES, s.num_layers
        weights = p.weight_bytes(s, "score", training=True)
        if isinstance(method, Lora):
            layers = min(method.last_layers or s.num_layers, s.num_layers)
            targets = method.target_modules or default_lora_targets(s)
            trained = lora_parameters(s, method.r, targets, layers) + head
            return weights, trained, trained * ADAPTER_BYTES, layers
        if isinstance(method, PromptTuning):
            trained = method.num_virtual_tokens * s.hidden_size + head
            return weights, trained, trained * ADAPTER_BYTES, s.num_layers
        return weights, head, head * ADAPTER_BYTES, s.num_layers

    def reward_training(self, method: Any, data: DataShape) -> Workload:
        from genies.interventions._reward_packing import CACHE_LIMIT_BYTES, LINE_TOKENS
        from genies.interventions.full_fine_tune import FullFineTune
        from genies.interventions.lora import Lora
        from genies.interventions.prompt_tuning import PromptTuning

        s, p = self.shape, self.precision
        weights, _, optimizer, layers = self.reward_model(method)
        cap = method.max_length
        micro = method.micro_batch_size or method.batch_size
        mean_row = min(data.pair_tokens, 2 * cap) if cap else data.pair_tokens
        longest = min(data.longest_pair, 2 * cap) if cap else data.longest_pair
        virtual = method.num_virtual_tokens if isinstance(method, PromptTuning) else 0
        if virtual:  # unpacked: 2 padded sequences per pair, virtual tokens in front
            sequence = min(longest, cap) if cap else longest
            lines, width = 2 * micro, sequence + virtual
        else:
            lines, width = packed_lines(micro, mean_row, longest, LINE_TOKENS)
        tokens = lines * width
        lora = isinstance(method, Lora)
        adapted = lora_module_shapes(s, method.target_modules or default_lora_targets(s)) if lora else []
        a = p.training_activations
        per_layer = training_layer_bytes(s, a, adapted=adapted, rank=method.r if lora else 0,
                                         dropout=lora and method.dropout > 0, full=isinstance(method, FullFineTune))
        cache = 0
        if lora and layers < s.num_layers:  # frozen layers' outputs kept once per training row
            states = data.train * mean_row * s.hidden_size * a.bytes
            cache = int(states) if states <= CACHE_LIMIT_BYTES else 0
        buffers = (tokens * backward_buffer_bytes(s, a) + lines * width * width * p.bytes + cache
                   + quantized_buffer(s, p))

        def memory(checkpointing: bool) -> MemoryEstimate:
            saved = (layers * checkpointed_layer_bytes(s, a) + per_layer) if checkpointing else layers * per_layer
            return MemoryEstimate(self.base_weights + weights, activations=tokens * saved, optimizer=optimizer,
                                  buffers=buffers)

        full = isinstance(method, FullFineTune)
        step_tokens = method.steps * method.batch_size * mean_row

        def flops(checkpointing: bool) -> float:
            trained = (3 if full else 2) + (1 if checkpointing else 0)  # forwards' worth per step
            top = forward_flops(s, step_tokens, layers=layers) * trained
            if cache:  # the frozen layers run once per training row
                bottom = forward_flops(s, data.train * mean_row, layers=s.num_layers - layers)
            else:
                bottom = forward_flops(s, step_tokens, layers=s.num_layers - layers)
            return top + bottom

        note = "full fine-tuning cannot train quantized weights" if full and p.quantize != "none" else ""
        return Workload(memory, flops, trains=True, note=note)

    def reward_scoring(self, method: Any, data: DataShape) -> Workload:
        from genies.interventions._reward_packing import LINE_TOKENS
        from genies.interventions.full_fine_tune import FullFineTune
        from genies.interventions.prompt_tuning import PromptTuning

        s, p = self.shape, self.precision
        weights, trained, _, _ = self.reward_model(method)
        if not isinstance(method, FullFineTune):
            weights += trained * 4  # the float32 adapters (and head) put back for scoring
        cap = method.max_length
        per_query = max(1, int(method.eval_batch_size // max(1.0, data.responses)))
        virtual = method.num_virtual_tokens if isinstance(method, PromptTuning) else 0
        query = data.query_tokens
        if virtual:  # one padded sequence per response
            sequence = min(data.longest_query, cap) if cap else data.longest_query
            lines, width = method.eval_batch_size, sequence + virtual
            tokens_total = data.test * data.responses * (data.prompt_tokens + data.response_tokens + virtual)
        else:
            longest = min(data.longest_query, cap * math.ceil(data.responses)) if cap else data.longest_query
            lines, width = packed_lines(per_query, query, longest, LINE_TOKENS)
            tokens_total = data.test * query
        tokens = lines * width
        buffers = (tokens * inference_layer_bytes(s, p) + tokens * s.hidden_size * p.bytes
                   + lines * width * width * p.bytes + quantized_buffer(s, p))
        memory = MemoryEstimate(self.base_weights + weights, buffers=buffers)
        flops = forward_flops(s, tokens_total)
        return Workload(lambda _: memory, lambda _: flops)


def packed_lines(rows: int, mean: float, longest: int, line_tokens: int) -> tuple[int, int]:
    """(lines, padded width) of `rows` packed rows laid side by side in lines of `line_tokens`
    (`_reward_packing.Batch.collate`): as many mean rows as fit share a line, and every line is
    padded to the longest, which is at least the longest row of the batch."""
    per_line = max(1, int(line_tokens // mean)) if mean <= line_tokens else 1
    lines = math.ceil(rows / per_line)
    return lines, max(longest, math.ceil(min(rows, per_line) * mean))


def extraction_templates(method: Intervention) -> list[tuple[str, float]]:
    """(template, tokens it adds to a response) of each text template a representation method
    reads its hidden states through; empty for other methods."""
    from genies.interventions._representation import CosineProbeMethod
    from genies.interventions.ccs import CCS
    from genies.interventions.cra import CRA
    from genies.interventions.lat import LAT, STIMULUS_TEMPLATES
    from genies.interventions.logistic import Logistic
    from genies.models.templates import get_template

    if isinstance(method, LAT):
        names = [STIMULUS_TEMPLATES[method.stimulus]]
    elif isinstance(method, CRA):
        names = ["cra_yes", "cra_no"]
    elif isinstance(method, CCS):
        names = ["ccs_yes", method.no_template]
    elif isinstance(method, (CosineProbeMethod, Logistic)):
        names = [method.template]
    else:
        return []
    out = []
    for name in names:
        t = get_template(name)
        out.append((name, len(t.before + t.after) / CHARS_PER_TOKEN + (1 if t.add_eos else 0)))
    return out


# -- placing and sizing a plan ------------------------------------------------------------------

@dataclass(frozen=True)
class JobSize:
    """One job's estimate and placement. `devices` 0: it does not fit on the `sized_on` devices
    the run would give it (`fixes` says what would help); `gradient_checkpointing`: reward-model
    training fits only with it on (for a job that does not fit: it was sized with it on)."""

    key: str
    label: str
    kind: str  # "fit" | "predict"
    intervention: str  # as the results name it
    method: str  # its registered name, which --set and RunConfig.hparams key by
    distribution: str | None
    memory: MemoryEstimate
    devices: int
    gradient_checkpointing: bool
    seconds: float | None
    fixes: tuple[str, ...] = ()
    note: str = ""
    sized_on: int = 1

    @property
    def fits(self) -> bool:
        return self.devices > 0

    @property
    def peak(self) -> int:
        """Bytes on each device it is spread over (the busiest, were it uneven)."""
        return self.memory.per_device(self.sized_on)

    def placement(self, hardware: Hardware) -> str:
        if not self.fits:
            return "does not fit"
        where = "cpu" if not hardware.gpu else f"{self.devices} GPU{'s' if self.devices > 1 else ''}"
        return where + (" +ckpt" if self.gradient_checkpointing else "")

    def to_json(self, hardware: Hardware) -> dict[str, Any]:
        return {"key": self.key, "job": self.label, "kind": self.kind, "intervention": self.intervention,
                "distribution": self.distribution, "memory_gib": self.memory.gib(),
                "peak_gib": round(self.peak / GIB, 3), "placement": self.placement(hardware), "devices": self.devices,
                "sized_on": self.sized_on,
                "gradient_checkpointing": self.gradient_checkpointing,
                "seconds": None if self.seconds is None else round(self.seconds, 1), "fits": self.fits,
                "fixes": list(self.fixes), "note": self.note}


def _place(work: Workload, hardware: Hardware, checkpointing: Sequence[bool], devices: int) -> tuple[int, bool]:
    """(`devices`, the first of the `checkpointing` settings the job fits with there), or
    (0, False) when it fits with none."""
    for checkpointing_on in checkpointing:
        if work.memory(checkpointing_on).per_device(devices) <= hardware.memory:
            return devices, checkpointing_on
    return 0, False


def _checkpointing_options(method: Intervention, work: Workload) -> list[bool]:
    """Gradient checkpointing settings the planner may choose for a job: on if the method's
    `gradient_checkpointing` is set, off or on for reward-model training where the installed
    version has the switch, else off."""
    hparams = method.hparams()
    if not work.trains or CHECKPOINTING not in hparams:
        return [False]
    return [True] if hparams[CHECKPOINTING] else [False, True]



def _batch_setting(method: Intervention, kind: str) -> tuple[str, int] | None:
    """The execution setting that bounds this job's batch (results do not depend on it), with
    its current value: what a refusal suggests lowering."""
    from genies.interventions._reward_model import RewardModelIntervention
    from genies.interventions.few_shot import FewShot
    from genies.interventions.zero_shot import ZeroShot

    if isinstance(method, RewardModelIntervention):
        if kind == "fit":
            return "micro_batch_size", method.micro_batch_size or method.batch_size
        return "eval_batch_size", method.eval_batch_size
    if isinstance(method, (ZeroShot, FewShot)) and kind == "predict":
        return "batch_tokens", method.batch_tokens or 0
    return None


def _fixes(method: Intervention, kind: str, distribution: str | None, sizer: Sizer, hardware: Hardware
           ) -> tuple[str, ...]:
    """Options that make a job fit, each with the peak it would then need."""
    fixes = []
    if sizer.precision.quantize != "4bit":
        quantized = dataclasses.replace(sizer, precision=Precision(sizer.precision.dtype, "4bit"))
        work = quantized.workload(method, kind, distribution)
        devices, checkpointing = _place(work, hardware, _checkpointing_options(method, work),
                                        hardware.shards(quantized.base_weights))
        if devices and not work.note:
            fixes.append(f"--quantize 4bit ({work.memory(checkpointing).per_device(devices) / GIB:.1f} GiB)")
    work = sizer.workload(method, kind, distribution)
    if hardware.gpu:
        for count in range(hardware.devices + 1, MAX_SUGGESTED_GPUS + 1):
            devices, checkpointing = _place(work, hardware, _checkpointing_options(method, work), count)
            if devices:
                fixes.append(f"--gpus {devices} ({work.memory(checkpointing).per_device(devices) / GIB:.1f} GiB per GPU)")
                break
    setting = _batch_setting(method, kind)
    if setting is not None:
        name, value = setting
        if name == "batch_tokens" and not value:
            from genies.models.prefix_tree import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS

            value = GPU_BATCH_TOKENS if hardware.gpu else CPU_BATCH_TOKENS
        while value > 1:
            value //= 2
            smaller = sizer.workload(dataclasses.replace(method, **{name: value}), kind, distribution)
            devices, checkpointing = _place(smaller, hardware, _checkpointing_options(method, smaller),
                                            hardware.shards(sizer.base_weights))
            if devices:
                need = smaller.memory(checkpointing).per_device(devices) / GIB
                fixes.append(f"--set {method.name}.{name}={value} ({need:.1f} GiB)")
                break
    return tuple(fixes)


def size_plan(plan: Plan, sizer: Sizer, hardware: Hardware) -> list[JobSize]:
    """Every job of `plan` (fits first, each followed by its predictions) with its estimate,
    placement and time (None without a FLOP rate)."""
    methods: dict[tuple[str, str], Intervention] = {}
    extracted: set[tuple[str, str, str]] = set()
    sizes = []
    for fit in plan.fits.values():
        key = (fit.method_name, fit.hparams_json)
        if key not in methods:
            methods[key] = fit.method()
        method = methods[key]
        templates = [name for name, _ in extraction_templates(method)]
        for job in (fit, *plan.predicts_of(fit)):
            kind, distribution, split = ("fit", fit.source, "train") if isinstance(job, FitJob) else \
                ("predict", job.distribution, job.split)
            todo = {(distribution or "", split, t) for t in templates} - extracted
            extracted |= todo
            work = sizer.workload(method, kind, distribution, extract=bool(todo))
            options = _checkpointing_options(method, work)
            devices, checkpointing = _place(work, hardware, options, hardware.shards(sizer.base_weights))
            if not devices:  # shown at its smallest: with checkpointing wherever it may be on
                checkpointing = options[-1]
            fixes = () if devices else _fixes(method, kind, distribution, sizer, hardware)
            seconds = None if hardware.rate is None else hardware.rate.seconds(work.flops(checkpointing))
            sizes.append(JobSize(job.key, job.label, kind, fit.intervention, fit.method_name, distribution,
                                 work.memory(checkpointing),
                                 devices, checkpointing, seconds, fixes, work.note, hardware.shards(sizer.base_weights)))
    return sizes


def check_run(plan: Plan, config: Any, folder: Path,
              distribution: Callable[[str], Distribution] | None = None) -> list[JobSize]:
    """For `genies run`, before any job starts: size every job of `plan` for the run's
    placement (`config`: its RunConfig) and raise a one-line `ConfigError` if one cannot fit.
    `folder` holds the model's config.json; `distribution(name)` gives the run's (capped)
    distributions for token counts (without it, the typical GENIES shape under the budget).
    A model whose layout the planner does not know is not checked: the sizes are then []."""
    try:
        shape = ModelShape.from_config(json.loads((Path(folder) / "config.json").read_text("utf-8")))
    except UnknownNameError:
        return []
    hardware, precision = hardware_for(device=config.device, gpus=config.gpus, gpu_memory=config.gpu_memory,
                                       dtype=config.dtype, quantize=config.quantize, rate=False)
    caps = config.example_budget
    shapes: dict[str, DataShape] = {}

    def data(name: str) -> DataShape:
        if name not in shapes:
            shapes[name] = (DataShape.of(distribution(name)) if distribution is not None
                            else TYPICAL_DATA.capped(caps.max_train, caps.max_eval))
        return shapes[name]

    sizes = size_plan(plan, Sizer(shape, precision, hardware.gpu, data), hardware)
    check_fits(sizes, hardware)
    return sizes


def checkpointing_overrides(sizes: Iterable[JobSize]) -> dict[str, dict[str, bool]]:
    """The planner's recommendation as `RunConfig.hparams` overrides: gradient checkpointing on
    for each reward-model method one of whose fits needs it (`--set lora.gradient_checkpointing=
    true`). An execution setting: no job key changes, so a plan rebuilt with it is the same plan."""
    return {s.method: {CHECKPOINTING: True} for s in sizes if s.fits and s.gradient_checkpointing}


def check_fits(sizes: Sequence[JobSize], hardware: Hardware) -> None:
    """Raise a one-line `ConfigError` naming the first job that fits nowhere, its numbers and
    the options that would make it fit; return quietly when every job fits."""
    failing = [s for s in sizes if not s.fits]
    if not failing:
        return
    job = failing[0]
    parts = ", ".join(f"{name} {value:.1f}" for name, value in job.memory.gib().items() if name != "total" and value)
    fixes = (f"it fits with {' or '.join(job.fixes)}" if job.fixes
             else "no single option (--quantize 4bit, more --gpus, a smaller batch) makes it fit")
    others = len(failing) - 1
    more = "" if not others else f" ({others} more job{' does' if others == 1 else 's do'} not fit either)"
    spread = f" per GPU over {job.sized_on} GPUs" if job.sized_on > 1 else ""
    raise ConfigError(f"{job.label} needs {job.peak / GIB:.1f} GiB{spread} ({parts}{', in all' if spread else ''}) "
                      f"but {hardware.describe()}; {fixes}{more}")


def by_intervention(sizes: Iterable[JobSize]) -> dict[str, dict[str, Any]]:
    """`totals` per intervention (its fits and predictions), in the plan's order."""
    groups: dict[str, list[JobSize]] = {}
    for s in sizes:
        groups.setdefault(s.intervention, []).append(s)
    return {name: totals(group) for name, group in groups.items()}


def totals(sizes: Iterable[JobSize]) -> dict[str, Any]:
    """Counts, the largest peak and the time: sequential hours (one job after another, as the
    local executor runs them) and device-hours (each job's time times the GPUs it holds)."""
    sizes = list(sizes)
    timed = [s for s in sizes if s.seconds is not None]
    hours = sum(s.seconds for s in timed) / 3600 if timed else None  # type: ignore[misc]
    device_hours = sum(s.seconds * max(1, s.devices) for s in timed) / 3600 if timed else None  # type: ignore[operator]
    return {"jobs": len(sizes), "fits": sum(s.kind == "fit" for s in sizes),
            "predictions": sum(s.kind == "predict" for s in sizes),
            "peak_gib": round(max((s.peak for s in sizes), default=0) / GIB, 3),
            "max_devices": max((s.devices for s in sizes), default=0),
            "gradient_checkpointing": sum(s.gradient_checkpointing and s.fits for s in sizes),
            "not_fitting": sum(not s.fits for s in sizes),
            "hours": None if hours is None else round(hours, 3),
            "device_hours": None if device_hours is None else round(device_hours, 3)}
