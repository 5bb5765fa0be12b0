"""Where a model runs and at what precision: `--device`, `--dtype`, `--quantize`.

Precision changes a model's numbers (a 4-bit model's scores are not a bf16 model's scores), so
`Placement.precision_key()` is part of every job key; the device and the GPUs a model is spread
over only change how fast the same numbers come out (and their last bits, as a batch size does),
so they are execution settings and stay out of keys. Checked before anything loads: a GPU asked
for where none exists, or a quantization whose library is missing, is one line naming the fix.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from genies.errors import ConfigError, UnknownNameError
from genies.provenance import package_versions

DEVICES = ("auto", "cpu", "cuda")
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
}
QUANTIZATIONS = ("none", "8bit", "4bit")


@dataclass(frozen=True)
class Placement:
    """How to load a model. `device`: auto (the GPU when there is one, else CPU), cpu, cuda or
    cuda:N; `dtype`: auto (bf16 on GPU, fp32 on CPU) or a torch dtype name; `quantize`: none,
    8bit or 4bit (bitsandbytes; 4-bit is NF4, and LoRA on top of it is QLoRA); `gpus`: how many
    visible GPUs a model may be sharded over (None: all of them)."""

    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    gpus: int | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise UnknownNameError("device", self.device, DEVICES)
        if self.dtype not in DTYPES:
            raise UnknownNameError("dtype", self.dtype, DTYPES)
        if self.quantize not in QUANTIZATIONS:
            raise UnknownNameError("quantization", self.quantize, QUANTIZATIONS)
        if self.gpus is not None and self.gpus < 1:
            raise ConfigError(f"--gpus must be at least 1, got {self.gpus}")

    @property
    def torch_device(self) -> torch.device:
        """The concrete device (the first GPU of a sharded model)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        """fp32 on CPU (bf16 matmuls are slow there and less exact), bf16 on GPU, unless named."""
        named = DTYPES[self.dtype]
        if named is not None:
            return named
        return torch.bfloat16 if self.torch_device.type == "cuda" else torch.float32

    @property
    def quantized(self) -> bool:
        return self.quantize != "none"

    def check(self) -> None:
        """Refuse, before any loading, what this machine cannot do."""
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
        return {**self.precision_key(), "device": str(self.torch_device), "gpus": self.gpus}
