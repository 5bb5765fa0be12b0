"""A content-addressed, memory-mapped store of hidden states, so each (model, data, template) is
read by the model once and shared by every representation method.

Layout: `<root>/<key>/` holds `<site>.npy` (`residual` or `heads`, float32, one row per text),
`example_index.npy`, `response_index.npy`, and `meta.json` (the key fields, shape, creation time).
The texts of a split are every response of every example, in order. `key` hashes everything that
changes the numbers: the model fingerprint and dtype, the distribution id, split and a hash of
its texts (labels do not change hidden states), the template (name and text), the site, the
position, `EXTRACTION_VERSION` (kept honest by genies.interventions.versions' lock) and the
versions of torch, transformers and peft; all layers are always stored, so layer choices need no
key. An entry holds only the site that was asked for: every method reads one site per template,
so computing and writing the other one was unused work and I/O. (Version 1 entries held both
sites under a key without the site; version 2 keys name the site, so those are never served and
`genies cache clear` removes them.) Values are served as read-only memory maps: a method that
reads some rows pages in only those.

Writers build an entry in a private folder and publish it with one rename
(`genies._io.publish_folder`), so readers see a complete entry or none. A per-key file lock
makes a second process wait for the first instead of computing the same entry twice; should two
writers still race (a filesystem without locks), the first complete entry wins and the other
copy is discarded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from genies._io import publish_folder
from genies.data.home import genies_home
from genies.data.schema import EvalSet
from genies.models.catalog import folder_size
from genies.models.templates import POSITIONS, SITES, get_template
from genies.provenance import package_versions

if TYPE_CHECKING:  # torch and transformers: `genies cache ls/du/clear` import this module and need neither
    from genies.models.base import LoadedModel

# Bump when extraction changes its numbers (tokenization, BOS/EOS, pooling) or an entry's layout
# (2: one site per entry, named by the key): old entries stop matching.
EXTRACTION_VERSION = 2
META = "meta.json"
LOCKS = ".locks"


@dataclass(frozen=True)
class Activations:
    """One site's activations for a split: row t is response `response_index[t]` of example
    `example_index[t]`. `values` is a read-only memory map, so large splits stay on disk."""

    values: np.ndarray
    example_index: np.ndarray
    response_index: np.ndarray
    key: str
    meta: dict


@dataclass(frozen=True)
class CacheEntry:
    """One stored entry as listed by `genies cache ls`."""

    key: str
    path: Path
    size_bytes: int
    created: float
    meta: dict


def _fields_key(fields: dict) -> str:
    """The entry name for `ActivationStore.key_fields`: a hash of their canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class ActivationStore:
    """Hidden states per (model, distribution split, template, position), computed on first use."""

    def __init__(self, root: Path | str | None = None, *, batch_tokens: int | None = None) -> None:
        self.root = Path(root) if root is not None else genies_home() / "activations"
        self.batch_tokens = batch_tokens  # None: the extractor's default for the model's device

    # -- keys ---------------------------------------------------------------------------------

    def key_fields(self, lm: LoadedModel, data: EvalSet, template: str, site: str, position: str) -> dict:
        """Everything that changes the stored numbers; the key is its hash."""
        t = get_template(template)
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}; choose from {', '.join(SITES)}")
        if position not in POSITIONS:
            raise ValueError(f"unknown position {position!r}; choose from {', '.join(POSITIONS)}")
        return {
            "model": lm.fingerprint,
            "dtype": str(lm.dtype).removeprefix("torch."),
            "distribution": data.distribution,
            "split": data.split,
            "data_hash": data.texts_hash(),
            "template": t.name,
            "template_text": [t.before, t.after, t.add_eos],
            "site": site,
            "position": position,
            "add_bos": True,
            "version": EXTRACTION_VERSION,
            "libraries": package_versions(),
        }

    def key(self, lm: LoadedModel, data: EvalSet, template: str = "plain", site: str = "heads",
            position: str = "last") -> str:
        return _fields_key(self.key_fields(lm, data, template, site, position))

    # -- read / compute -------------------------------------------------------------------------

    def get(self, lm: LoadedModel, data: EvalSet, template: str = "plain", site: str = "heads",
            position: str = "last") -> Activations:
        """The activations at `site` of every response of `data` (a split's texts, labels not
        needed: `Distribution.eval_set(split)`), from the store or computed now (that site only)."""
        fields = self.key_fields(lm, data, template, site, position)  # hashes the split once
        key = _fields_key(fields)
        final = self.root / key
        if not (final / META).is_file():
            (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
            with FileLock(self.root / LOCKS / f"{key}.lock"):
                if not (final / META).is_file():
                    self._compute(lm, data, template, site, position, fields, final)
        return self._load(final, site)

    def _compute(self, lm: LoadedModel, data: EvalSet, template: str, site: str, position: str, fields: dict,
                 final: Path) -> None:
        from genies.models.hidden import encode_texts, iter_hidden, warn_truncated
        from genies.models.base import context_length

        fill = get_template(template)
        texts = [(i, j, fill(q.prompt, r)) for i, q in enumerate(data.queries) for j, r in enumerate(q.responses)]
        if not texts:
            raise ValueError(f"{data.distribution}: split {data.split!r} has no responses, so there is nothing "
                             "to extract")
        max_length = context_length(lm)
        encoded = encode_texts(lm.tokenizer, [t.prefix for _, _, t in texts], [t.completion for _, _, t in texts],
                               add_bos=True, add_eos=fill.add_eos, max_length=max_length,
                               name=lambda t: f"{data.distribution} {data.split}, example {texts[t][0]}, "
                                              f"response {texts[t][1]}")
        warn_truncated(encoded, max_length)
        with publish_folder(final, keep_existing=lambda folder: (folder / META).is_file()) as tmp:
            values: np.ndarray | None = None
            for batch in iter_hidden(lm, encoded, sites=(site,), position=position, batch_tokens=self.batch_tokens):
                rows = batch.values[site]
                if values is None:
                    values = np.lib.format.open_memmap(tmp / f"{site}.npy", mode="w+", dtype=np.float32,
                                                       shape=(len(texts), *rows.shape[1:]))
                values[batch.indices] = rows
            np.save(tmp / "example_index.npy", np.array([i for i, _, _ in texts], np.int64))
            np.save(tmp / "response_index.npy", np.array([j for _, j, _ in texts], np.int64))
            meta = {
                "key": final.name, **fields, "n_texts": len(texts), "n_truncated": int(encoded.truncated.sum()),
                "shapes": {site: list(values.shape)}, "created": time.time(), "model_name": lm.name,
            }
            values.flush()  # and close the map before the folder moves
            del values
            (tmp / META).write_text(json.dumps(meta, indent=1))

    @staticmethod
    def _load(folder: Path, site: str) -> Activations:
        meta = json.loads((folder / META).read_text())
        return Activations(
            values=np.load(folder / f"{site}.npy", mmap_mode="r"),
            example_index=np.load(folder / "example_index.npy"),
            response_index=np.load(folder / "response_index.npy"),
            key=folder.name,
            meta=meta,
        )

    # -- maintenance ----------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Complete entries, oldest first (unfinished temporary folders are not entries)."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            meta_file = folder / META
            if folder.name.startswith(".") or not meta_file.is_file():
                continue
            meta = json.loads(meta_file.read_text())
            found.append(CacheEntry(folder.name, folder, folder_size(folder), float(meta.get("created", 0)), meta))
        return sorted(found, key=lambda e: e.created)

    def total_size(self) -> int:
        """Bytes under the root, temporary folders included (they occupy the disk too)."""
        return folder_size(self.root) if self.root.is_dir() else 0

    def clear(self, older_than_s: float | None = None, *, now: Callable[[], float] = time.time) -> list[CacheEntry]:
        """Remove entries (all, or those created more than `older_than_s` seconds ago) and abandoned
        temporary folders. Entries being written by another process are skipped, not broken."""
        cutoff = None if older_than_s is None else now() - older_than_s
        removed = []
        for entry in self.entries():
            if cutoff is None or entry.created < cutoff:
                if self._remove_locked(entry.key, [entry.path]):
                    removed.append(entry)
        if self.root.is_dir():
            for tmp in self.root.glob(".*.tmp"):  # publish_folder's private folders: .<key>.<id>.tmp
                key = tmp.name[1:].split(".", 1)[0]
                if cutoff is None or tmp.stat().st_mtime < cutoff:
                    self._remove_locked(key, [tmp])
        return removed

    def _remove_locked(self, key: str, paths: list[Path]) -> bool:
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(self.root / LOCKS / f"{key}.lock", timeout=0):
                for path in paths:
                    _remove(path)
            return True
        except Timeout:
            return False
