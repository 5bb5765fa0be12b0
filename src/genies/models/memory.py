"""Memory and time a model needs, from its config alone (no weights): the planner's arithmetic.

Why from the config: a user sizing a 30B run should not have to download 60 GB first, and
`genies run` should refuse a job that cannot fit before anything loads. Everything here is pure
arithmetic on a `ModelShape` (read from a config.json dict) and a `Precision`; the planner
(`genies.pipeline.sizing`) decides what each job computes and calls these functions.

What the numbers count, and how they were checked (tests/test_memory.py):

- Parameters: embeddings, attention (grouped-query attention included), MLP (gated SwiGLU for the
  llama family, two matrices for gpt2 and gpt_neox), norms, biases, a tied or untied output head.
  Equal to transformers' own count for every supported family.
- Weights: 4 bytes per parameter in float32, 2 in bfloat16/float16. Quantized (bitsandbytes),
  only the decoder's linear weights shrink: 8-bit is LLM.int8 (1 byte per weight plus a float32
  scale per output row), 4-bit is NF4 with QLoRA's double quantization (4 bits per weight plus
  an 8-bit absmax per block of 64 and a float32 absmax per 256 blocks: 4.127 bits; bitsandbytes
  0.50.2 measured 4.1274 on a 4096 x 4096 weight, its 256-entry table included); embeddings,
  norms, biases and the heads stay in the compute dtype, or float32 in a reward model trained on
  a quantized base (QLoRA's `prepare_model_for_kbit_training` casts them).
- Activations: what a forward pass keeps across layers (the hidden states an extraction
  returns; the tensors training saves for backward), so they spread over the GPUs of a sharded
  model. Buffers: what exists for one layer or one batch at a time (a layer's MLP working set,
  the attention mask, the LM-head logits chunk, a backward pass's gradients), so they do not.
  The per-token counts are those of transformers' llama layer as traced on the embedded model
  (float32 on CPU): inference peaks inside the MLP with 3 intermediate-size tensors and 4
  hidden-size ones alive (the embeddings output, the layer input, the residual, the normed
  input); training saves per layer both norms' inputs and outputs, q, the repeated k and v and
  the attention output (the SDPA memory-efficient kernel: no per-head square of the sequence),
  and the MLP's gate, activation and up projections. gpt2-like layers are counted the same way
  with their own intermediate size.
- Optimizer: the trained tensors of a reward model (LoRA adapters, virtual tokens, the score
  head) in float32, their float32 gradients and AdamW's two float32 moments: 16 bytes each. For
  full fine-tuning the model's own weights are the float32 trained copies (counted in weights)
  and the optimizer adds 12 bytes per parameter.
- FLOPs: 2 x matmul parameters per token forward (attention's own score FLOPs are left out: at
  a few hundred tokens per row they are under 2 % of a 7B layer's); training with frozen base
  weights costs 2 forwards (backward computes input gradients only), full fine-tuning 3, and
  gradient checkpointing one forward more.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genies.errors import ConfigError, UnknownNameError

GIB = 1 << 30

# model_type -> layer family. "gated": llama-style SwiGLU MLP (gate, up, down), RMSNorm.
FAMILIES: dict[str, str] = {"llama": "gated", "mistral": "gated", "qwen2": "gated", "gemma": "gated",
                            "gpt2": "gpt2", "gpt_neox": "gpt_neox"}

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # weight + double-quantized absmax (QLoRA), bits per weight
ADAPTER_BYTES = 4 + 4 + 8  # float32 trained tensor, its gradient, AdamW's two moments
FULL_FINE_TUNE_OPTIMIZER_BYTES = 4 + 8  # the float32 weight itself is counted in weights

# LLaMA-1 7B, 13B, 30B (the GENIES paper's models) and Llama-2 70B (grouped-query attention),
# as their published config.json files give them: sizing works without downloading anything.
PUBLISHED: dict[str, dict[str, Any]] = {
    "llama-7b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                 "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "llama-13b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 5120, "intermediate_size": 13824,
                  "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
                  "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "llama-30b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 6656, "intermediate_size": 17920,
                  "num_hidden_layers": 60, "num_attention_heads": 52, "num_key_value_heads": 52,
                  "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "llama-70b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 8192, "intermediate_size": 28672,
                  "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
                  "max_position_embeddings": 4096, "tie_word_embeddings": False},
}


def _required(config: Mapping[str, Any], *names: str) -> int:
    for name in names:
        if config.get(name) is not None:
            return int(config[name])
    raise ConfigError(f"model config: none of {', '.join(names)} is set; sizing needs it")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions sizing needs, read once from a config.json dict."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    tied_embeddings: bool
    context_length: int
    layer_biases: int = 0  # bias parameters of one decoder layer

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a config.json dict (a multimodal config's text part when it has one). Families
        and their defaults follow transformers' config classes."""
        config = dict(config.get("text_config") or config)
        model_type = str(config.get("model_type", ""))
        if model_type not in FAMILIES:
            raise UnknownNameError("model type to size", model_type or "(none)", FAMILIES,
                                   hint="; the planner knows these layer layouts")
        hidden = _required(config, "hidden_size", "n_embd")
        heads = _required(config, "num_attention_heads", "n_head")
        if model_type == "gpt2":
            intermediate = int(config.get("n_inner") or 4 * hidden)
        else:
            intermediate = _required(config, "intermediate_size")
        tie_default = model_type in ("gpt2", "gemma")
        shape = cls(
            model_type=model_type,
            vocab_size=_required(config, "vocab_size"),
            hidden_size=hidden,
            num_layers=_required(config, "num_hidden_layers", "n_layer"),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=intermediate,
            tied_embeddings=bool(config.get("tie_word_embeddings", tie_default)),
            context_length=_required(config, "max_position_embeddings", "n_positions"),
        )
        return dataclasses.replace(shape, layer_biases=shape.biases(config))

    def biases(self, config: Mapping[str, Any]) -> int:
        """Bias parameters of one layer as the family's config switches them on."""
        d, i, q, kv = self.hidden_size, self.intermediate_size, self.q_size, self.kv_size
        if self.family in ("gpt2", "gpt_neox"):  # the MLP always has biases, attention unless switched off
            attention = 3 * d + d if config.get("attention_bias", True) else 0
            return attention + i + d
        if self.model_type == "qwen2":  # q, k and v always have biases, o_proj never
            attention = q + 2 * kv
        else:
            attention = q + 2 * kv + d if config.get("attention_bias", False) else 0
        mlp = 2 * i + d if config.get("mlp_bias", False) else 0
        return attention + mlp

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type]

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear weight of one decoder layer, by module name: what LoRA
        adapts (`target_modules`) and what bitsandbytes quantizes."""
        d, i = self.hidden_size, self.intermediate_size
        if self.family == "gpt2":
            return {"c_attn": (d, 3 * d), "attn.c_proj": (d, d), "c_fc": (d, i), "mlp.c_proj": (i, d)}
        if self.family == "gpt_neox":
            return {"query_key_value": (d, 3 * d), "dense": (d, d), "dense_h_to_4h": (d, i), "dense_4h_to_h": (i, d)}
        return {"q_proj": (d, self.q_size), "k_proj": (d, self.kv_size), "v_proj": (d, self.kv_size),
                "o_proj": (self.q_size, d), "gate_proj": (d, i), "up_proj": (d, i), "down_proj": (i, d)}

    @property
    def layer_linear_weights(self) -> int:
        """Weights of one layer's linear layers (biases excluded): the matmul parameters."""
        return sum(a * b for a, b in self.linear_shapes().values())

    @property
    def layer_small_parameters(self) -> int:
        """Norm weights (LayerNorm: and biases) and the biases of one layer: never quantized."""
        norms = 2 * self.hidden_size * (1 if self.family == "gated" else 2)
        return norms + self.layer_biases

    @property
    def largest_linear(self) -> int:
        return max(a * b for a, b in self.linear_shapes().values())

    @property
    def final_norm_parameters(self) -> int:
        return self.hidden_size * (1 if self.family == "gated" else 2)

    @property
    def embedding_parameters(self) -> int:
        """Token embeddings, plus gpt2's learned position embeddings."""
        positions = self.context_length * self.hidden_size if self.family == "gpt2" else 0
        return self.vocab_size * self.hidden_size + positions

    @property
    def lm_head_parameters(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    def parameters(self, head: str = "lm") -> int:
        """All parameters of the causal LM (`head="lm"`) or of the reward model built from it
        (`head="score"`: AutoModelForSequenceClassification drops the untied LM head and adds a
        one-output score head)."""
        body = (self.embedding_parameters + self.num_layers * (self.layer_linear_weights + self.layer_small_parameters)
                + self.final_norm_parameters)
        if head == "lm":
            return body + self.lm_head_parameters
        if head == "score":
            return body + self.hidden_size
        raise ValueError(f"head must be 'lm' or 'score', got {head!r}")

    @property
    def matmul_parameters(self) -> int:
        """Parameters a token multiplies through in the decoder (no embeddings, no head)."""
        return self.num_layers * self.layer_linear_weights

    def describe(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "parameters": self.parameters("lm"), "layers": self.num_layers,
                "hidden_size": self.hidden_size, "heads": self.num_heads, "kv_heads": self.num_kv_heads,
                "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size,
                "tied_embeddings": self.tied_embeddings}


@dataclass(frozen=True)
class Precision:
    """How weights are stored and activations computed. `dtype` is the compute dtype (and the
    storage of whatever is not quantized); `quantize` is none, 8bit or 4bit."""

    dtype: str = "bfloat16"
    quantize: str = "none"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise UnknownNameError("dtype", self.dtype, DTYPE_BYTES)
        if self.quantize not in ("none", "8bit", "4bit"):
            raise UnknownNameError("quantization", self.quantize, ("none", "8bit", "4bit"))

    @property
    def bytes(self) -> int:
        """Bytes of one activation value (the compute dtype)."""
        return DTYPE_BYTES[self.dtype]

    @property
    def training_activations(self) -> Precision:
        """The precision a reward model trained on this base saves its activations in: float32
        on a quantized base. QLoRA's `prepare_model_for_kbit_training` casts the embeddings to
        float32, so the residual stream is float32, and bitsandbytes' quantized layers return
        their input's dtype, so every projection's output is float32 too. Counting them in bf16
        put a 7B QLoRA step at 13.5 GiB where an H100 measured 23.8 (`genies doctor --gpu
        --shape 7b`, docs/scaling.md)."""
        return Precision("float32") if self.quantize != "none" else self

    def linear_weight_bytes(self, shape: ModelShape) -> float:
        """Bytes of one layer's linear weights as stored."""
        weights = shape.layer_linear_weights
        if self.quantize == "4bit":
            return weights * NF4_BITS / 8
        if self.quantize == "8bit":
            return weights + 4 * sum(out for _, out in shape.linear_shapes().values())
        return weights * self.bytes

    def weight_bytes(self, shape: ModelShape, head: str = "lm", *, training: bool = False) -> int:
        """Bytes of all weights of the model (`head` as in `ModelShape.parameters`). `training`
        a quantized model: PEFT's `prepare_model_for_kbit_training` (QLoRA) casts every weight it
        did not quantize (embeddings, norms, biases, the head) to float32."""
        linear = shape.num_layers * self.linear_weight_bytes(shape)
        rest = shape.parameters(head) - shape.matmul_parameters
        return int(linear + rest * (4 if training and self.quantize != "none" else self.bytes))


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one job, by what holds them (see the module docstring): `weights` and
    `optimizer` live for the whole job, `activations` for a forward (and backward) pass and
    spread over the GPUs of a sharded model, `buffers` for one layer or batch at a time."""

    weights: int
    activations: int = 0
    optimizer: int = 0
    buffers: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.optimizer + self.buffers

    def per_device(self, devices: int) -> int:
        """Peak on each of `devices` GPUs when the model is split layer-wise across them
        (accelerate's device_map): weights, trained state and saved activations divide; one
        layer's working set and the batch's buffers do not."""
        return math.ceil((self.weights + self.optimizer + self.activations) / devices) + self.buffers

    def gib(self) -> dict[str, float]:
        """The parts and the total in GiB, for tables and JSON."""
        parts = {"weights": self.weights, "activations": self.activations, "optimizer": self.optimizer,
                 "buffers": self.buffers, "total": self.total}
        return {name: round(value / GIB, 3) for name, value in parts.items()}


# -- per-token working sets -----------------------------------------------------------------

def inference_layer_bytes(shape: ModelShape, precision: Precision) -> int:
    """Bytes per token alive at a decoder layer's peak in inference: 4 hidden-size tensors
    (embeddings output, layer input, residual, normed input), 3 intermediate-size ones (gate
    activation, up projection, their product) and the rotary tables."""
    return (4 * shape.hidden_size + 3 * shape.intermediate_size + 2 * shape.head_dim) * precision.bytes


def training_layer_bytes(shape: ModelShape, precision: Precision, *, adapted: Sequence[tuple[int, int]] = (),
                         rank: int = 0, dropout: bool = False, full: bool = False) -> int:
    """Bytes per token one decoder layer saves for backward. `adapted`: (in, out) of the LoRA
    modules of the layer, each saving its rank-r hidden and, with dropout, its dropped input
    and the mask; `full`: every weight trains, so o_proj and down_proj save their inputs too.
    Norms compute in float32 (transformers upcasts), so each saves a float32 input."""
    b, d, i = precision.bytes, shape.hidden_size, shape.intermediate_size
    norms = 2 * (4 * d + b * d)
    attention = 2 * (shape.q_size + shape.num_heads * shape.head_dim) * b  # q, out; k, v repeated to all heads
    mlp = 3 * i * b
    lora = sum(rank * b + ((inp * b + inp) if dropout else 0) for inp, _ in adapted)
    inputs = (shape.q_size + i) * b if full else 0
    return norms + attention + mlp + lora + inputs


def checkpointed_layer_bytes(shape: ModelShape, precision: Precision) -> int:
    """Bytes per token a layer keeps under gradient checkpointing: its input only."""
    return shape.hidden_size * precision.bytes


def backward_buffer_bytes(shape: ModelShape, precision: Precision) -> int:
    """Bytes per token of one layer's backward working set (gradients of its MLP tensors and of
    the hidden state)."""
    return (3 * shape.intermediate_size + shape.hidden_size) * precision.bytes


def quantized_buffer(shape: ModelShape, precision: Precision) -> int:
    """bitsandbytes dequantizes a weight to the compute dtype for each matmul: one of the
    largest at a time."""
    return shape.largest_linear * precision.bytes if precision.quantize != "none" else 0


def lm_head_buffer(shape: ModelShape, precision: Precision, chunk: int) -> int:
    """The scoring engine's logits for `chunk` positions: in the compute dtype, then float32."""
    return chunk * shape.vocab_size * (precision.bytes + 4)


# -- trained parameters ---------------------------------------------------------------------

def lora_parameters(shape: ModelShape, rank: int, target_modules: Sequence[str], layers: int) -> int:
    """Parameters of LoRA adapters of rank `rank` on `target_modules` of `layers` decoder
    layers: r x (in + out) per adapted weight."""
    return rank * layers * sum(a + b for a, b in lora_module_shapes(shape, target_modules))


def lora_module_shapes(shape: ModelShape, target_modules: Sequence[str]) -> list[tuple[int, int]]:
    """(in, out) of each adapted module of one layer; a name is matched as PEFT does, as the
    end of a module's path (`c_proj` adapts both of gpt2's)."""
    shapes = shape.linear_shapes()
    found = []
    for target in target_modules:
        hits = [dims for name, dims in shapes.items() if name == target or name.endswith("." + target)]
        if not hits:
            raise ConfigError(f"LoRA target module {target!r} is not a linear layer of a {shape.model_type} layer "
                              f"(its linear layers: {', '.join(shapes)})")
        found.extend(hits)
    return found


def default_lora_targets(shape: ModelShape) -> list[str]:
    """PEFT's default target modules for the architecture (what `target_modules=None` adapts)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(shape.model_type)
    if targets is None:
        raise ConfigError(f"PEFT has no default LoRA target modules for {shape.model_type!r}; set lora.target_modules")
    return list(targets)


# -- time -----------------------------------------------------------------------------------

def forward_flops(shape: ModelShape, tokens: float, *, head_tokens: float = 0.0, layers: float | None = None) -> float:
    """2 x matmul parameters x tokens through `layers` decoder layers (all by default), plus the
    LM head at `head_tokens` positions (the scoring engine runs it at scored tokens only)."""
    per_layer = shape.layer_linear_weights
    n = shape.num_layers if layers is None else layers
    return 2.0 * per_layer * n * tokens + 2.0 * shape.vocab_size * shape.hidden_size * head_tokens


@dataclass(frozen=True)
class FlopRate:
    """A device's matmul throughput: `peak` FLOP/s (nominal or measured) times `efficiency`,
    the share a transformers forward or training step reaches; `source` says where both come from."""

    device: str
    peak: float
    efficiency: float
    source: str

    @property
    def effective(self) -> float:
        return self.peak * self.efficiency

    def seconds(self, flops: float) -> float:
        return flops / self.effective


@dataclass(frozen=True)
class GpuSpec:
    """A GPU's nominal dense matmul rates (NVIDIA datasheets, without sparsity) and memory."""

    name: str
    match: tuple[str, ...]  # substrings of torch.cuda.get_device_name() that identify it
    bf16_flops: float
    fp32_flops: float  # plain FP32 (torch leaves TF32 off for matmuls by default)
    memory_gib: float


GPUS: dict[str, GpuSpec] = {spec.name: spec for spec in (
    GpuSpec("h100", ("H100 80GB HBM3", "H100 SXM", "H100"), 989.4e12, 66.9e12, 80),
    GpuSpec("h100-pcie", ("H100 PCIe",), 756.0e12, 51.0e12, 80),
    GpuSpec("h200", ("H200",), 989.4e12, 66.9e12, 141),
    GpuSpec("a100", ("A100",), 312.0e12, 19.5e12, 80),
)}
# Share of nominal bf16 throughput a transformers (eager) forward or training step reaches on
# these GPUs at the planner's batch sizes: an assumption, not measured here (no GPU); it scales
# every GPU time estimate, so a measured value replaces it here.
GPU_EFFICIENCY = 0.35
# Share of the measured 2048 x 2048 float32 matmul rate (MatmulProbe) a plain batched forward
# reaches on CPU: the embedded model's decoder on 8 x 256 tokens ran at 0.45-0.50 of it, probe
# and forward interleaved (3 runs on the shared 2-core machine at load 6-7, 2026-11-26). The
# scoring engine does better (0.81-0.89 on a quiet machine, docs/PERFORMANCE.md).
CPU_EFFICIENCY = 0.5


def gpu_spec(name: str) -> GpuSpec:
    """A GPU by planner name (`h100`) or by what torch calls it (`NVIDIA H100 80GB HBM3`)."""
    if name in GPUS:
        return GPUS[name]
    matches = sorted(((m, spec) for spec in GPUS.values() for m in spec.match), key=lambda ms: -len(ms[0]))
    for match, spec in matches:  # the most specific name first: "H100 PCIe" before "H100"
        if match.lower() in name.lower():
            return spec
    raise UnknownNameError("GPU type", name, GPUS, hint="; pass --gpu-type with the closest one")


def gpu_flop_rate(spec: GpuSpec, precision: Precision) -> FlopRate:
    """Nominal rate of `spec` in the compute dtype (quantized weights are dequantized to it)."""
    peak = spec.fp32_flops if precision.dtype == "float32" else spec.bf16_flops
    return FlopRate(spec.name, peak, GPU_EFFICIENCY,
                    f"nominal {spec.name} {precision.dtype} dense {peak / 1e12:.0f} TFLOP/s x {GPU_EFFICIENCY}")


def cpu_flop_rate(samples: int = 3) -> FlopRate:
    """This CPU's float32 matmul rate, measured now (about a second) with `MatmulProbe`."""
    from genies.bench.machine import MatmulProbe

    probe = MatmulProbe()
    for _ in range(samples):
        probe.sample()
    return FlopRate("cpu", probe.flops_per_s, CPU_EFFICIENCY,
                    f"measured float32 matmul {probe.flops_per_s / 1e9:.0f} GFLOP/s x {CPU_EFFICIENCY}")
