"""genies: measure how reward models generalize across distribution shifts.

`genies.run(...)` is imported lazily so that `import genies` (and `genies --help`) stays fast:
the pipeline pulls in torch and transformers.
"""

from __future__ import annotations

import os
from typing import Any

# OpenMP threads that spin forever collapse when the CPU is shared (2.8x slower scoring at load
# 8), threads that sleep at once pay a wake-up per op (17 % slower on an idle machine): a
# bounded spin costs 2-8 % in either case (docs/PERFORMANCE.md). libgomp reads this when torch
# is first imported, so it is set here; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

__version__ = "0.1.0"
__all__ = ["__version__", "run", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from genies.pipeline.api import run

        return run
    if name == "load_run":
        from genies.pipeline.results import load_run

        return load_run
    raise AttributeError(f"module 'genies' has no attribute {name!r}")
