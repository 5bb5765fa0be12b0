"""The SHA-256 manifest of the GENIES distribution files, and verification against it.

The data comes from an S3 bucket or a GitHub archive that genies does not control, so a download
is trusted only when every `<distribution>/<train|test|metadata>.json` matches the size and hash
recorded here. The manifest ships with the package (resources/manifest.json, never the data) and
is rebuilt reproducibly from a trusted copy with
`python -m genies.data.manifest /path/to/distributions`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from genies._io import file_sha256, write_atomic

DATA_FILES = ("metadata.json", "test.json", "train.json")
_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """Relative path (`<dist>/<file>`, forward slashes) -> expected hash and size."""

    files: dict[str, FileEntry]

    @functools.cached_property
    def distributions(self) -> frozenset[str]:  # cached: store.py asks once per archive member
        return frozenset(path.split("/", 1)[0] for path in self.files)

    def to_json(self) -> str:
        body = {
            "format": _FORMAT,
            "files": {p: {"sha256": e.sha256, "size": e.size} for p, e in sorted(self.files.items())},
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        if body.get("format") != _FORMAT:
            raise ValueError(f"unsupported manifest format {body.get('format')!r}")
        return cls({p: FileEntry(e["sha256"], int(e["size"])) for p, e in body["files"].items()})


def build_manifest(folder: str | Path) -> Manifest:
    """Hash the data files of every distribution sub-folder of `folder` (a folder holding any of them)."""
    folder = Path(folder)
    files = {}
    for dist in sorted(p for p in folder.iterdir() if p.is_dir()):
        for name in DATA_FILES:
            path = dist / name
            if path.is_file():
                files[f"{dist.name}/{name}"] = FileEntry(file_sha256(path), path.stat().st_size)
    if not files:
        raise ValueError(f"{folder}: no distribution folders with {', '.join(DATA_FILES)}")
    return Manifest(files)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """The shipped manifest, or the one at `path` (tests and forks inject their own)."""
    if path is not None:
        return Manifest.from_json(Path(path).read_text(encoding="utf-8"))
    shipped = resources.files("genies.data").joinpath("resources/manifest.json")
    return Manifest.from_json(shipped.read_text(encoding="utf-8"))


def verify(folder: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Every way `folder` differs from the manifest: missing, unexpected and mismatched files, named.

    An empty list means the folder holds exactly the manifest's files with the recorded content.
    """
    folder = Path(folder)
    manifest = manifest or load_manifest()
    problems = []
    for rel, entry in sorted(manifest.files.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"size mismatch: {rel} (expected {entry.size} bytes, found {size})")
            continue
        digest = file_sha256(path)
        if digest != entry.sha256:
            problems.append(
                f"checksum mismatch: {rel} (expected sha256 {entry.sha256[:12]}..., found {digest[:12]}...)")
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel not in manifest.files:
                problems.append(f"unexpected file: {rel}")
    return problems


def _write_shipped(source: Path) -> Path:
    """Rebuild resources/manifest.json from a trusted copy (atomically)."""
    target = Path(__file__).parent / "resources" / "manifest.json"
    write_atomic(target, build_manifest(source).to_json())
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m genies.data.manifest DISTRIBUTIONS_FOLDER")
    print(_write_shipped(Path(sys.argv[1])))
