"""genies: measure how reward models generalize across distribution shifts.

`genies.run(...)` is imported lazily so that `import genies` (and `genies --help`) stays fast:
the pipeline pulls in torch and transformers.
"""

from __future__ import annotations

from typing import Any

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
