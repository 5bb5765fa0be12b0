"""What this machine can do: matmul-bound throughput and the process's peak memory.

The matmul limit is measured in the same process as the benchmark it normalises, so a loaded
shared machine lowers both numbers together rather than making the fraction meaningless.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time

import torch


class MatmulProbe:
    """Sustained FLOP/s of large matmuls, sampled in short probes between the timed work.

    A best-of-N timing would catch a quiet moment of a shared machine and overstate what the
    engine could have had while it ran; summing fixed-size probes spread over the run measures
    the machine under the same load as the work it normalises.
    """

    def __init__(self, size: int = 2048, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.a = torch.randn(size, size, dtype=dtype, device=self.device)
        self.b = torch.randn(size, size, dtype=dtype, device=self.device)
        torch.matmul(self.a, self.b)  # warm-up: thread pool and kernel selection
        self.flops = 0.0
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def sample(self, repeats: int = 2) -> None:
        self._sync()
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(self.a, self.b)
        self._sync()
        self.seconds += time.perf_counter() - start
        self.flops += repeats * 2.0 * self.a.shape[0] ** 3

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def describe_machine() -> str:
    """One line: CPU model, cores, the GPU when CUDA is available (models run there by default, so
    a GPU benchmark named only by its CPU would be misread), torch threads, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}; {os.cpu_count()} cores{gpu}; torch {torch.__version__} with {torch.get_num_threads()} threads; "
            f"Python {platform.python_version()}")
