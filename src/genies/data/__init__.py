"""Preference data: examples, distributions, shifts. Public names are imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Example": "schema", "Query": "schema", "EvalSet": "schema", "Pair": "schema", "Distribution": "schema",
    "DataError": "schema", "Shift": "shift", "load_distribution": "loading", "get_shifts": "shifts",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"genies.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'genies.data' has no attribute {name!r}")
