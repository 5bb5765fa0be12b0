"""Shared fixtures: tiny random models (no downloads) and the real GENIES data when available."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import genies  # noqa: F401  (first: it sets the OpenMP spin policy before torch is imported)
import pytest
import transformers

from genies.models.base import LoadedModel
from genies.models.testing import tiny_model

transformers.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A 2-layer random Llama-shaped model with a byte tokenizer, shared by the whole session."""
    return tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules of many tiny-model steps: torch's thread hand-off outweighs the work on a
    shared 2-core machine. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def genies_data_dir() -> Path:
    """The real GENIES distributions; tests marked `data` are skipped without GENIES_DATA_DIR."""
    env = os.environ.get("GENIES_DATA_DIR")
    if not env or not Path(env).is_dir():
        pytest.skip("GENIES_DATA_DIR is not set to the GENIES distributions folder")
    return Path(env)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing into the user's cache; the model cache stays shared for speed."""
    if "GENIES_HOME" not in os.environ:
        monkeypatch.setenv("GENIES_HOME", str(tmp_path_factory.getbasetemp() / "genies-home"))
