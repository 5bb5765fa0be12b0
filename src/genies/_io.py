"""File helpers shared across genies: atomic writes, atomic folders and whole-file hashes.

Atomic writes are used by every module that publishes a file others may read, and
`publish_folder` by every module that publishes a folder (a cache entry, a converted model,
the installed data).

A reader (another run, the report, a resumed job) must never see a half-written file, so each
write goes to a temporary name in the same folder and is `os.replace`d into place; a failed
write leaves nothing behind. Published files get mode 0644 (mkstemp creates 0600), so results
can be shared. No torch here: light commands import this.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it becomes `path` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (archives and GGUF files can be large)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def publish_folder(final: Path, keep_existing: Callable[[Path], bool] = Path.exists) -> Iterator[Path]:
    """An empty folder to build in; when the block succeeds it becomes `final` in one rename.

    The folder is yielded inside a private `.<final name>.*.tmp` folder beside `final` (same file
    system, so the rename is atomic; a dot-name, so listings skip it). On normal exit, under the
    file lock `.<final name>.lock` beside `final`:

    - no `final` yet: ours is renamed into place;
    - a `final` that `keep_existing` accepts (by default any, i.e. a concurrent writer finished
      first; pass a completeness check such as "has its manifest" where a stale or partial
      folder may exist): ours is dropped, theirs kept;
    - any other `final` (stale: pass `lambda _: False` to always replace): it is moved aside,
      ours renamed in and the old one removed; if our rename fails the old one is put back.

    On an exception nothing is published and `final` is untouched. Either way the private folder
    and everything in it are removed. Readers therefore see no folder or a complete one, never
    a half-built one. The lock covers only the swap: a caller that wants to avoid computing the
    same folder twice holds its own lock (another file) around the whole block. The lock file
    stays after use: deleting a lock file races the next process that opens it.

    Every folder genies publishes goes through here: the data install (always replaces), a GGUF
    conversion (keeps a folder with its manifest), the synthetic data (keeps a current one), and
    cache entries, which keep an entry holding the file they write last (`state.json`,
    `meta.json`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        ours = work / final.name
        ours.mkdir()  # default mode: mkdtemp's 0700 would keep a shared cache from other users
        yield ours
        with FileLock(str(final.parent / f".{final.name}.lock")):
            _swap_in(ours, final, work / "replaced", keep_existing)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap_in(ours: Path, final: Path, aside: Path, keep_existing: Callable[[Path], bool]) -> None:
    """Put `ours` at `final` (the lock held), keeping or moving aside an existing `final`."""
    replaced = final.exists() or final.is_symlink()
    if replaced:
        if keep_existing(final):
            return
        os.rename(final, aside)
    try:
        os.rename(ours, final)
    except OSError:
        if replaced:
            os.rename(aside, final)
        raise
