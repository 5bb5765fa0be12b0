"""Archive safety: every unsafe member kind is refused with its name, and nothing lands outside."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from genies.data.archive import UnsafeArchiveError, safe_extract


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _refused(tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], reason: str) -> None:
    archive = _tar(tmp_path / "a.tar", [_file("ok/first.json"), member])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as err:
        safe_extract(archive, dest)
    assert err.value.member == member[0].name and repr(member[0].name) in str(err.value)
    # nothing outside the target, and inside it only the safe member that came first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "out"]
    assert [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()] == ["ok/first.json"]


def test_plain_files_and_folders_extract(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [
        _special("top", tarfile.DIRTYPE), _file("top/a/train.json", b"[1]"), _file("top/README", b"r"),
    ], mode="w:gz")
    assert safe_extract(archive, tmp_path / "out") == 2
    assert (tmp_path / "out/top/a/train.json").read_bytes() == b"[1]"


def test_select_limits_written_files(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [_file("d/train.json"), _file("d/big.bin")])
    assert safe_extract(archive, tmp_path / "out", select=lambda n: n.endswith(".json")) == 1
    assert not (tmp_path / "out/d/big.bin").exists()


def test_absolute_path_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _file(str(tmp_path / "evil.json")), "absolute path")


def test_windows_drive_path_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _file("C:/evil.json"), "absolute path")


def test_dotdot_component_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _file("ok/../../evil.json"), r"'\.\.' component")


def test_symlink_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link")


def test_hard_link_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/hard", tarfile.LNKTYPE, "ok/first.json"), "hard link")


def test_character_device_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/tty", tarfile.CHRTYPE), "device file")


def test_block_device_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/sda", tarfile.BLKTYPE), "device file")


def test_fifo_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/pipe", tarfile.FIFOTYPE), "FIFO")


def test_unsafe_member_refused_even_when_not_selected(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [_special("x/link", tarfile.SYMTYPE, "/etc")])
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out", select=lambda n: n.endswith(".json"))


@pytest.mark.parametrize("member", ["link/evil.json", "link"])
def test_a_symlink_already_in_the_destination_is_not_written_through(tmp_path: Path, member: str) -> None:
    """Every member name is harmless, but the destination already holds a symlink pointing
    outside (a folder link, written into; a file link, overwritten): the resolved target lies
    outside the destination and extraction must refuse it, leaving the outside untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "link").symlink_to(outside if member == "link/evil.json" else outside / "victim")
    archive = _tar(tmp_path / "a.tar", [_file("ok/first.json"), _file(member, b"evil")])
    with pytest.raises(UnsafeArchiveError, match="resolves outside the target folder") as err:
        safe_extract(archive, dest)
    assert err.value.member == member
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"keep"
