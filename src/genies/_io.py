"""File helpers shared across genies: atomic writes and whole-file hashes.

Atomic writes are used by every module that publishes a file others may read.

A reader (another run, the report, a resumed job) must never see a half-written file, so each
write goes to a temporary name in the same folder and is `os.replace`d into place; a failed
write leaves nothing behind. Published files get mode 0644 (mkstemp creates 0600), so results
can be shared. No torch here: light commands import this.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
