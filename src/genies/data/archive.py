"""Safe extraction of downloaded or user-supplied tar archives.

An archive from the network (or from a user) is untrusted input: a member named `/etc/x` or
`../../x`, a symlink pointing outside the target, a hard link to an arbitrary file, or a device
node could write or expose files outside the extraction folder. Python's `tarfile` has a "data"
filter, but its rejections are generic; here every member is checked explicitly and rejected with
an error naming the member and the reason, and files are written by streaming their bytes (never
through `tarfile.extract`), so ownership, permissions and link targets from the archive are ignored.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

from genies.errors import GeniesError


class UnsafeArchiveError(GeniesError, ValueError):
    """An archive member would escape the target folder or is not a plain file or folder."""

    def __init__(self, archive: str | Path, member: str, problem: str) -> None:
        self.archive = str(archive)
        self.member = member
        self.problem = problem
        super().__init__(f"{self.archive}: refusing member {member!r}: {problem}")


def check_member(member: tarfile.TarInfo) -> str | None:
    """Why `member` is unsafe to extract, or None when it is a plain file or folder inside the target."""
    name = member.name
    if not name:
        return "empty member name"
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path contains a '..' component"
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO (named pipe)"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}"
    return None


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    select: Callable[[str], bool] | None = None,
) -> int:
    """Extract the regular files of `archive` (tar, tar.gz, ...) into `dest`; return how many.

    Every member is checked, selected or not, so an archive carrying anything unsafe is refused as a
    whole (a download that contains a crafted member is not one to trust). `select` limits which
    regular files are written (the GitHub archive holds the whole repository, only the data is needed).
    The caller extracts into a fresh temporary folder and removes it on error, so a refused archive
    leaves nothing behind that anyone reads.
    """
    archive = Path(archive)
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            problem = check_member(member)
            if problem:
                raise UnsafeArchiveError(archive, member.name, problem)
            target = (root / member.name).resolve()
            if target != root and root not in target.parents:  # defence in depth after the checks
                raise UnsafeArchiveError(archive, member.name, "resolves outside the target folder")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if select is not None and not select(member.name):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # regular files always have a payload
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            written += 1
    return written
