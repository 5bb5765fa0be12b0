"""Models: loading, the scoring engine, hidden states. Public names are imported lazily (torch)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"LoadedModel": "base", "load_model": "loading"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"genies.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'genies.models' has no attribute {name!r}")
