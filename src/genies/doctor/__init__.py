"""`genies doctor`: self-checks of an installation and of a GPU, one job per module.

- `report`: a check's result (`CheckResult`), a run's results (`DoctorReport`), the runner;
- `shapes`: random-weights models in the embedded model's, a 7B or a 13B LLaMA shape;
- `checks`: the comparisons both doctors make on a loaded model;
- `install`: `genies doctor`, the installation checks;
- `gpu`: `genies doctor --gpu`, its `--dry-run` plan and the memory-planner comparison.

Public names are imported lazily (torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"CheckResult": "report", "DoctorReport": "report", "run_install_checks": "install",
            "run_gpu_checks": "gpu", "plan_gpu_checks": "gpu"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"genies.doctor.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'genies.doctor' has no attribute {name!r}")
