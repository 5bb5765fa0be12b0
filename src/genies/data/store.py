"""Download and import the GENIES data: resume, safe extraction, manifest check, atomic install.

The flow is the same for every source: get the files into a private temporary folder next to the
data home (an archive is extracted safely, a folder is copied), find the folder that holds the
distribution folders (the S3 tar and the GitHub archive nest it differently), take exactly the
manifest's files, verify each one's size and SHA-256, and only then rename the verified folder
into place. A failed or interrupted import therefore never leaves a half-installed data home, and
a download that does not match the manifest is never used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from genies._io import publish_folder
from genies.data.archive import UnsafeArchiveError, safe_extract
from genies.data.home import genies_home, installed_data_dir
from genies.data.manifest import Manifest, load_manifest, verify
from genies.errors import GeniesError

S3_URL = "https://genies-data.s3.us-east-2.amazonaws.com/genies-datasets.tar"
GITHUB_URL = (
    "https://github.com/Joshuaclymer/GENIES/archive/31306c7238d96d812a7cce81383a5f4e1d8d968f.tar.gz"
)
# The official archive first; the last GitHub commit that still held distributions/ as a fallback.
DEFAULT_URLS: tuple[str, ...] = (S3_URL, GITHUB_URL)

_TIMEOUT = (15, 60)  # seconds to connect, seconds between bytes
_CHUNK = 1 << 20
_SEARCH_DEPTH = 6  # how deep below an imported path the distribution folders may sit
_HOW_TO = ("download genies-datasets.tar by other means and run `genies data import PATH`, "
           "or set GENIES_DATA_DIR to a GENIES distributions folder")


class StoreError(GeniesError, RuntimeError):
    """Downloading or importing failed; the one-line message says why and what to do."""


class ManifestMismatchError(StoreError):
    """The files do not match the shipped manifest; nothing was installed."""

    def __init__(self, source: str | Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:3]) + ("; ..." if len(self.problems) > 3 else "")
        super().__init__(
            f"{source}: {len(self.problems)} problem(s) against the GENIES manifest, nothing installed: {shown}")


@dataclass(frozen=True)
class ImportResult:
    """What an import or download installed, and what it deliberately left out."""

    path: Path  # the installed distributions folder
    files: int  # files verified against the manifest
    source: str  # the folder, archive or URL the data came from
    ignored: tuple[str, ...] = ()  # files inside distribution folders that the manifest does not list


def import_data(
    path: str | Path, dest: str | Path | None = None, manifest: Manifest | None = None
) -> ImportResult:
    """Install the GENIES data from a local folder or tar archive into `dest` (the data home).

    `path` may be the distributions folder itself, any folder above it, or an archive in either
    layout. Only the manifest's files are installed, each verified first.
    """
    source = Path(path).expanduser()
    dest = Path(dest).expanduser() if dest is not None else installed_data_dir()
    manifest = manifest or load_manifest()
    if not source.exists():
        raise StoreError(f"{source}: no such file or folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-import-", dir=dest.parent))
    try:
        extracted = not source.is_dir()
        found = _extract(source, work / "extracted", manifest) if extracted else source
        root = find_distributions_root(found, manifest)
        # An import always replaces what is installed; the old copy stays until the new one is in place.
        with publish_folder(dest, keep_existing=lambda _: False) as staging:
            ignored = _stage(root, staging, manifest, move=extracted)
            problems = verify(staging, manifest)
            if problems:
                raise ManifestMismatchError(source, problems)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImportResult(dest, len(manifest.files), str(source), tuple(ignored))


def download(
    dest: str | Path | None = None,
    urls: Sequence[str] = DEFAULT_URLS,
    progress: bool = True,
    manifest: Manifest | None = None,
) -> ImportResult:
    """Fetch the GENIES archive (trying `urls` in order), then import it into `dest`.

    A partial download is kept as `<name>.part` under `genies_home()/downloads` and resumed with an
    HTTP Range request next time. An archive that fails extraction or verification is deleted and
    the next URL is tried. When every URL fails, the StoreError says what to do offline.
    """
    dest = Path(dest).expanduser() if dest is not None else installed_data_dir()
    manifest = manifest or load_manifest()
    if dest.is_dir() and not verify(dest, manifest):
        return ImportResult(dest, len(manifest.files), "already installed")
    downloads = genies_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            archive = fetch(url, downloads, progress=progress)
        except (requests.RequestException, StoreError) as err:
            failures.append(f"{url}: {_reason(err)}")
            continue
        try:
            with _status(progress, f"Verifying and installing {archive.name}"):
                result = import_data(archive, dest, manifest)
        except (StoreError, UnsafeArchiveError) as err:
            archive.unlink(missing_ok=True)  # a bad archive must not be reused on the next run
            failures.append(f"{url}: {_reason(err)}")
            continue
        archive.unlink(missing_ok=True)
        return ImportResult(result.path, result.files, url, result.ignored)
    raise StoreError(f"could not get the GENIES data ({' | '.join(failures)}); {_HOW_TO}")


def fetch(url: str, folder: Path, progress: bool = True) -> Path:
    """Download `url` into `folder`, resuming a `.part` file left by an interrupted attempt."""
    final = folder / _download_name(url)
    if final.exists():
        return final
    part = final.with_name(final.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with requests.get(url, headers=headers, stream=True, timeout=_TIMEOUT) as response:
        if response.status_code == 416:  # nothing after byte `start`: complete, or not this file
            if _range_total(response) == start:
                os.replace(part, final)
                return final
            part.unlink()
            return fetch(url, folder, progress)
        response.raise_for_status()
        if start and response.status_code == 206 and _range_start(response) == start:
            mode, done = "ab", start
        else:  # the server ignored the Range header: start over
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with open(part, mode) as out, _bar(progress, url, total, done) as advance:
            try:
                # read1 hands over whatever has arrived, so bytes received before a dropped
                # connection reach the .part file; raw (undecoded) bytes are what Range counts.
                while chunk := response.raw.read1(_CHUNK, decode_content=False):
                    out.write(chunk)
                    done += len(chunk)
                    advance(len(chunk))
            except urllib3.exceptions.HTTPError as err:
                raise StoreError(f"download interrupted after {done} bytes ({_reason(err)}); "
                                 "run `genies data download` again to resume") from err
    if total is not None and done != total:
        raise StoreError(f"download stopped at {done} of {total} bytes; run `genies data download` again to resume")
    os.replace(part, final)
    return final


def find_distributions_root(folder: Path, manifest: Manifest) -> Path:
    """The folder under `folder` that holds the most of the manifest's files.

    Candidates are the parents of folders named like a GENIES distribution, so a repository
    archive (GENIES-<commit>/distributions/...) and a flat one (distributions/...) both work, and a
    folder of generator scripts named like distributions loses to the one holding the data.
    """
    candidates = set()
    base_depth = len(folder.parts)
    for root, dirs, _ in os.walk(folder):
        if len(Path(root).parts) - base_depth >= _SEARCH_DEPTH:
            dirs.clear()
        if any(d in manifest.distributions for d in dirs):
            candidates.add(Path(root))
    scored = [(sum((c / rel).is_file() for rel in manifest.files), c) for c in candidates]
    best = max(scored, key=lambda sc: (sc[0], -len(sc[1].parts)), default=(0, folder))
    if best[0] == 0:
        raise StoreError(
            f"{folder}: no GENIES distribution folders found (expected sub-folders such as "
            f"{', '.join(sorted(manifest.distributions)[:3])} holding train.json, test.json, metadata.json)")
    return best[1]


def _extract(archive: Path, into: Path, manifest: Manifest) -> Path:
    """Extract only what sits inside distribution-named folders; the rest of an archive is not needed."""
    def wanted(name: str) -> bool:
        return any(part in manifest.distributions for part in name.split("/")[:-1])
    try:
        safe_extract(archive, into, select=wanted)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise StoreError(f"{archive}: not a readable tar archive ({err})") from err
    return into


def _stage(root: Path, staging: Path, manifest: Manifest, move: bool) -> list[str]:
    """Put the manifest's files from `root` into `staging`; return the others found in their folders."""
    for rel in manifest.files:
        src = root / rel
        if not src.is_file():
            continue  # verify() reports it as missing
        dst = staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(src, dst)
        else:
            shutil.copyfile(src, dst)  # contents only: a read-only source stays read-only, the copy does not
    ignored = []
    for dist in sorted(manifest.distributions):
        if (root / dist).is_dir():
            ignored += [p.relative_to(root).as_posix() for p in sorted((root / dist).rglob("*"))
                        if p.is_file() and p.relative_to(root).as_posix() not in manifest.files]
    return ignored


def _download_name(url: str) -> str:
    """A file name unique per URL (two URLs may end in the same name) that keeps the extension."""
    tail = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1]) or "download"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{tail}"


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(response: requests.Response) -> int | None:
    match = re.match(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _reason(err: BaseException) -> str:
    """One short line for an error (requests' messages nest whole reprs of the failed connection)."""
    if isinstance(err, requests.ConnectionError):
        return "unreachable (offline?)"
    if isinstance(err, urllib3.exceptions.ProtocolError):
        return "connection broken"
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


@contextmanager
def _bar(enabled: bool, url: str, total: int | None, done: int) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr (or nothing), yielding the function that advances it."""
    if not enabled:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"Downloading {url.rsplit('/', 1)[-1]}", total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def _status(enabled: bool, message: str) -> AbstractContextManager[object]:
    """A spinner while extracting and hashing (seconds on the real archive), silent in tests."""
    return Console(stderr=True).status(message) if enabled else nullcontext()
