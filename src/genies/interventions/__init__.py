"""Interventions: the contract (`Intervention`, `hparam`, `register`), its value types and the
registry. Names are imported lazily from their modules so `import genies.interventions` stays
light; the methods themselves are the other modules of this package, one file each."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Intervention": "base", "Unfitted": "base", "Scorer": "base", "FAMILIES": "base",
    "FitContext": "context",
    "hparam": "hparams",
    "register": "registry", "available": "registry", "get_intervention": "registry",
    "load_intervention": "registry",
    "Scores": "scores", "Predictions": "scores",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"genies.interventions.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'genies.interventions' has no attribute {name!r}")
