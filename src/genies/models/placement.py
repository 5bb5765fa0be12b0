"""Where a model runs and at what precision: `--device`, `--dtype`, `--quantize`.

Precision changes a model's numbers (a 4-bit model's scores are not a bf16 model's scores), so
`Placement.precision_key()` is part of every job key; the device and the GPUs a model is spread
over only change how fast the same numbers come out (and their last bits, as a batch size does),
so they are execution settings and stay out of keys. Checked before anything loads: a GPU asked
for where none exists, or a quantization whose library is missing, is one line naming the fix.

`weight_placement` decides, from the placement, the GPUs' memory and the model's size alone (a
pure function, testable without a GPU), how `from_pretrained` places the weights: loaded then
moved with `.to(device)`, placed on one device while loading (a quantized model cannot be moved
afterwards), or sharded over several GPUs by accelerate (`device_map="auto"`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genies.errors import ConfigError, UnknownNameError
from genies.provenance import package_versions

DEVICES = ("auto", "cpu", "cuda")
# torch is imported only when a placement is resolved, so `genies run --help` and the checks of
# names that come before any work stay fast.
DTYPES: dict[str, str | None] = {
    "auto": None, "float32": "float32", "bfloat16": "bfloat16", "float16": "float16",
}
QUANTIZATIONS = ("none", "8bit", "4bit")
QUANTIZED_BYTES = {"8bit": 1.0, "4bit": 0.5}  # bytes per quantized weight (NF4 packs two in a byte)
# Share of a GPU's memory the weights may take: the rest holds activations, optimizer state and
# the CUDA context. A model above it on the first GPU is sharded when --gpus allows.
WEIGHT_SHARE = 0.8
GIB = 1 << 30

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Placement:
    """How to load a model. `device`: auto (the GPU when there is one, else CPU), cpu, cuda or
    cuda:N; `dtype`: auto (bf16 on GPU, fp32 on CPU) or a torch dtype name; `quantize`: none,
    8bit or 4bit (bitsandbytes; 4-bit is NF4, and LoRA on top of it is QLoRA); `gpus`: how many
    visible GPUs a model may be sharded over (None: all of them, used only when the model does not
    fit one); `gpu_memory`: GiB per GPU the model may use (None: what each GPU reports)."""

    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    gpus: int | None = None
    gpu_memory: float | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise UnknownNameError("device", self.device, DEVICES)
        if self.dtype not in DTYPES:
            raise UnknownNameError("dtype", self.dtype, DTYPES)
        if self.quantize not in QUANTIZATIONS:
            raise UnknownNameError("quantization", self.quantize, QUANTIZATIONS)
        if self.gpus is not None and self.gpus < 1:
            raise ConfigError(f"--gpus must be at least 1, got {self.gpus}")
        if self.gpu_memory is not None and self.gpu_memory <= 0:
            raise ConfigError(f"--gpu-memory must be positive, got {self.gpu_memory}")

    @property
    def torch_device(self) -> torch.device:
        """The concrete device (the first GPU of a sharded model)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        """fp32 on CPU (bf16 matmuls are slow there and less exact), bf16 on GPU, unless named."""
        import torch

        named = DTYPES[self.dtype]
        if named is not None:
            return getattr(torch, named)
        return torch.bfloat16 if self.torch_device.type == "cuda" else torch.float32

    @property
    def quantized(self) -> bool:
        return self.quantize != "none"

    @property
    def bytes_per_weight(self) -> float:
        """Bytes one weight takes as loaded (the quantized linear layers' size for 8bit and 4bit)."""
        return QUANTIZED_BYTES.get(self.quantize, self.torch_dtype.itemsize)

    def check(self) -> None:
        """Refuse, before any loading, what this machine cannot do."""
        import torch

        device = self.torch_device
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"--device {self.device}: no CUDA GPU is visible here "
                                  "(torch.cuda.is_available() is False); use --device cpu or auto")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ConfigError(f"--device {self.device}: only {torch.cuda.device_count()} GPU(s) are visible")
            if self.gpus is not None and self.gpus > torch.cuda.device_count():
                raise ConfigError(f"--gpus {self.gpus}: only {torch.cuda.device_count()} GPU(s) are visible")
        if self.quantized and importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(f"--quantize {self.quantize} needs bitsandbytes, which is not installed: "
                              "pip install 'genies[gpu]'")

    def precision_key(self) -> dict[str, Any]:
        """What of the placement changes results: the dtype, the quantization and, for a
        quantized model, the version of the library that quantizes it."""
        key: dict[str, Any] = {"dtype": str(self.torch_dtype).removeprefix("torch."), "quantize": self.quantize}
        if self.quantized:
            key["bitsandbytes"] = package_versions(("bitsandbytes",))["bitsandbytes"]
        return key

    def describe(self) -> dict[str, Any]:
        """For the run manifest: the precision and where the model was placed."""
        return {**self.precision_key(), "device": str(self.torch_device), "gpus": self.gpus,
                "gpu_memory": self.gpu_memory}


@dataclass(frozen=True)
class WeightPlacement:
    """How `from_pretrained` places the weights. `device_map` None: load, then `.to(device)` (the
    unquantized one-device path); a dict {"": device}: load straight onto that device (needed for
    a quantized model, which cannot be moved once loaded); "auto": accelerate shards the layers
    over the GPUs of `max_memory` (bytes per GPU index), the first GPU holding the embeddings."""

    device_map: str | dict[str, str] | None = None
    max_memory: dict[int, int] | None = None

    @property
    def sharded(self) -> bool:
        return self.device_map == "auto"

    def kwargs(self) -> dict[str, Any]:
        """The `from_pretrained` keyword arguments."""
        if self.device_map is None:
            return {}
        if self.max_memory is None:
            return {"device_map": self.device_map}
        return {"device_map": self.device_map, "max_memory": dict(self.max_memory)}


def weight_placement(placement: Placement, gpu_bytes: Sequence[int], model_bytes: int) -> WeightPlacement:
    """Where the weights go, decided from the placement, the memory of each visible GPU (bytes,
    index order) and the model's weights as loaded (`model_bytes`, e.g. parameters times
    `placement.bytes_per_weight`). Sharded over the GPUs from the placement's device on when
    `gpus` > 1, or when `gpus` is unset and the weights exceed WEIGHT_SHARE of the first GPU;
    each GPU then gets at most WEIGHT_SHARE of its memory (of `gpu_memory` when set)."""
    device = placement.torch_device
    if device.type != "cuda":
        return WeightPlacement({"": str(device)} if placement.quantized else None)
    first = device.index or 0
    if first >= len(gpu_bytes):
        raise ConfigError(f"--device {placement.device}: only {len(gpu_bytes)} GPU(s) are visible")
    usable = [min(b, int(placement.gpu_memory * GIB)) if placement.gpu_memory else b for b in gpu_bytes]
    count = placement.gpus if placement.gpus is not None else len(gpu_bytes) - first
    if first + count > len(gpu_bytes):
        raise ConfigError(f"--gpus {count} from cuda:{first}: only {len(gpu_bytes)} GPU(s) are visible; "
                          f"ask for at most {len(gpu_bytes) - first}")
    fits_one = model_bytes <= WEIGHT_SHARE * usable[first]
    if count > 1 and (placement.gpus is not None or not fits_one):
        return WeightPlacement("auto", {i: int(WEIGHT_SHARE * usable[i]) for i in range(first, first + count)})
    return WeightPlacement({"": f"cuda:{first}"} if placement.quantized else None)
