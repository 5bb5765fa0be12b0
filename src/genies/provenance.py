"""Installed package versions: what cache keys and run manifests record about the software."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence

# The libraries whose upgrade can change a model's numbers: part of every job and activation key.
KEYED_LIBRARIES = ("torch", "transformers", "peft")


@functools.lru_cache(maxsize=None)
def package_versions(names: Sequence[str] = KEYED_LIBRARIES) -> dict[str, str | None]:
    """name -> installed version (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
