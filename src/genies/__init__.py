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

# The public API, imported on first use: name -> module that defines it.
_EXPORTS = {
    "run": "genies.pipeline.api", "RunConfig": "genies.pipeline.config", "load_run": "genies.pipeline.results",
    "Intervention": "genies.interventions.base", "register": "genies.interventions.registry",
    "hparam": "genies.interventions.hparams", "Example": "genies.data.schema",
    "Distribution": "genies.data.schema", "Shift": "genies.data.shift", "GeniesError": "genies.errors",
    "w2s": "genies.weak_to_strong", "W2SConfig": "genies.weak_to_strong",
    "sweep": "genies.sweeps.sweep", "SweepConfig": "genies.sweeps.sweep", "load_sweep": "genies.sweeps.sweep",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genies' has no attribute {name!r}")
