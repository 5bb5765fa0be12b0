"""Where the GENIES data lives: `GENIES_DATA_DIR`, else the data home (`GENIES_HOME`/distributions).

Every command that needs data resolves it here so that a missing copy produces one clear line
telling the user what to run, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from genies.errors import GeniesError


class DataNotFoundError(GeniesError, RuntimeError):
    """No GENIES data was found; the message says what to run."""


def genies_home() -> Path:
    """The root for downloaded data, converted models and caches (`GENIES_HOME` overrides it)."""
    env = os.environ.get("GENIES_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("genies"))


def installed_data_dir() -> Path:
    """Where `genies data download` / `genies data import` install the distributions."""
    return genies_home() / "distributions"


def find_data_root() -> Path:
    """The folder holding one sub-folder per distribution, or a DataNotFoundError."""
    env = os.environ.get("GENIES_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path
        raise DataNotFoundError(f"GENIES_DATA_DIR={env} is not a folder; point it at the distributions folder")
    path = installed_data_dir()
    if path.is_dir() and any(path.iterdir()):
        return path
    raise DataNotFoundError(
        "no GENIES data found: run `genies data download` (or `genies data import PATH`), "
        "or set GENIES_DATA_DIR to a distributions folder"
    )
