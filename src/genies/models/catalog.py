"""What models are available offline: the embedded default, converted GGUF models (and models
truncated to their first K layers, `NAME:layers=K`), the HF cache.

This module also says where converted models live (`models_cache_dir`, `MANIFEST`) and imports
neither torch nor transformers, so `genies models list` starts fast; `genies.models.loading`
writes the conversions it lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from genies.data.home import genies_home
from genies.models.embedded import DEFAULT_MODEL_LABEL, ModelNotFoundError, default_gguf_path

# The file a finished GGUF conversion writes last: a folder without it is never offered or loaded.
MANIFEST = "genies-model.json"


def models_cache_dir() -> Path:
    """Where converted (GGUF -> safetensors) models live."""
    return genies_home() / "models"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what to pass to `load_model` / `--model`
    kind: str  # default | converted | hf-cache
    location: str
    size_mib: float | None
    note: str = ""


def folder_size(folder: Path) -> int:
    """Bytes in the files under `folder` (a converted model, an activation entry or a whole cache)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def list_models() -> list[ModelEntry]:
    """Every model genies can load without a network, default first."""
    entries: list[ModelEntry] = []
    try:
        gguf = default_gguf_path()
        entries.append(ModelEntry("default", "default", str(gguf), gguf.stat().st_size / 2**20,
                                  f"{DEFAULT_MODEL_LABEL} (GGUF, converted to safetensors on first load)"))
    except ModelNotFoundError as err:
        entries.append(ModelEntry("default", "default", "-", None, str(err)))
    cache = models_cache_dir()
    if cache.is_dir():
        for folder in sorted(cache.iterdir()):
            manifest = folder / MANIFEST
            if folder.name.startswith(".") or not manifest.is_file():
                continue  # a conversion in progress or abandoned: never offered
            info = json.loads(manifest.read_text())
            origin = Path(info.get("source", "?")).name
            if "layers" in info:  # a NAME:layers=K truncation (genies.models.loading.truncate_layers)
                origin = f"the first {info['layers']} of {info.get('of_layers', '?')} layers of {origin}"
            entries.append(ModelEntry(str(folder), "converted", str(folder), folder_size(folder) / 2**20,
                                      f"from {origin}, fingerprint {info.get('fingerprint')}"))
    try:
        from huggingface_hub import scan_cache_dir

        repos = sorted(scan_cache_dir().repos, key=lambda r: r.repo_id)
    except Exception:  # no HF cache folder at all: nothing to list
        repos = []
    for repo in repos:
        if repo.repo_type == "model":
            entries.append(ModelEntry(repo.repo_id, "hf-cache", str(repo.repo_path), repo.size_on_disk / 2**20,
                                      f"{len(repo.revisions)} revision(s)"))
    return entries
