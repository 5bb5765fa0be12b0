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


def _refused(tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], problem: str) -> None:
    """Extraction stops at `member` with exactly `problem` as the reason, the error naming the
    archive and the member, and nothing is written outside the destination."""
    archive = _tar(tmp_path / "a.tar", [_file("ok/first.json"), member])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, dest)
    name = member[0].name
    assert (err.value.archive, err.value.member, err.value.problem) == (str(archive), name, problem)
    assert str(err.value) == f"{archive}: refusing member {name!r}: {problem}"
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


def test_empty_member_name_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _file(""), "empty member name")


@pytest.mark.parametrize("name", ["\\etc\\passwd", "\\evil.json"])
def test_windows_rooted_path_is_refused(tmp_path: Path, name: str) -> None:
    """`\\etc\\passwd` has no drive and is a relative name to POSIX, but is rooted on Windows."""
    _refused(tmp_path, _file(name), "absolute path")


@pytest.mark.parametrize("name", ["ok\\..\\..\\evil.json", "..\\evil.json", "ok/..\\..\\evil.json"])
def test_backslash_dotdot_component_is_refused(tmp_path: Path, name: str) -> None:
    _refused(tmp_path, _file(name), "path contains a '..' component")


def test_dotdot_component_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _file("ok/../../evil.json"), "path contains a '..' component")


def test_symlink_is_refused(tmp_path: Path) -> None:
    link = _special("ok/link", tarfile.SYMTYPE, "/etc/passwd")
    _refused(tmp_path, link, "symbolic link (to '/etc/passwd')")


def test_hard_link_is_refused(tmp_path: Path) -> None:
    link = _special("ok/hard", tarfile.LNKTYPE, "ok/first.json")
    _refused(tmp_path, link, "hard link (to 'ok/first.json')")


def test_character_device_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/tty", tarfile.CHRTYPE), "device file")


def test_block_device_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/sda", tarfile.BLKTYPE), "device file")


def test_fifo_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, _special("ok/pipe", tarfile.FIFOTYPE), "FIFO (named pipe)")


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
    assert (err.value.archive, err.value.member) == (str(archive), member)
    assert err.value.problem == "resolves outside the target folder"
    assert str(err.value) == f"{archive}: refusing member {member!r}: resolves outside the target folder"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"keep"


def test_select_skipping_a_file_goes_on_to_the_next(tmp_path: Path) -> None:
    """Files that `select` turns down come before, between and after the ones it keeps."""
    archive = _tar(tmp_path / "a.tar", [
        _file("d/big.bin", b"0"), _file("d/train.json", b"1"), _file("d/notes.txt", b"2"),
        _file("d/test.json", b"3"), _file("d/more.bin", b"4"),
    ])
    dest = tmp_path / "out"
    assert safe_extract(archive, dest, select=lambda n: n.endswith(".json")) == 2
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "d/test.json", "d/train.json"]
    assert (dest / "d/train.json").read_bytes() == b"1" and (dest / "d/test.json").read_bytes() == b"3"


def test_nested_files_without_folder_entries(tmp_path: Path) -> None:
    """Archives need not list folders: a file three folders deep, and a folder entry whose parents
    are not listed either, are created with all their parents."""
    archive = _tar(tmp_path / "a.tar", [
        _file("a/b/c/train.json", b"[1]"), _special("x/y/z", tarfile.DIRTYPE), _file("top.txt", b"t"),
    ])
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == 2
    assert (dest / "a/b/c/train.json").read_bytes() == b"[1]"
    assert (dest / "top.txt").read_bytes() == b"t"
    assert (dest / "x/y/z").is_dir() and not any((dest / "x/y/z").iterdir())


def test_folders_that_already_exist_are_reused(tmp_path: Path) -> None:
    """A folder listed twice, or already in the destination, is not an error, and what it holds
    stays."""
    dest = tmp_path / "out"
    (dest / "top").mkdir(parents=True)
    (dest / "top/kept.txt").write_bytes(b"k")
    archive = _tar(tmp_path / "a.tar", [
        _special("top", tarfile.DIRTYPE), _special("top/sub", tarfile.DIRTYPE),
        _file("top/sub/train.json", b"[2]"), _special("top/sub", tarfile.DIRTYPE),
    ])
    assert safe_extract(archive, dest) == 1
    assert (dest / "top/sub/train.json").read_bytes() == b"[2]"
    assert (dest / "top/kept.txt").read_bytes() == b"k"


def test_destination_is_created_with_its_parents(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", [_file("d/train.json", b"[3]")])
    dest = tmp_path / "not" / "yet" / "there"
    assert safe_extract(archive, dest) == 1
    assert (dest / "d/train.json").read_bytes() == b"[3]"


def test_an_existing_destination_is_used_as_is(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "before.txt").write_bytes(b"b")
    archive = _tar(tmp_path / "a.tar", [_file("d/train.json", b"[4]")])
    assert safe_extract(str(archive), str(dest)) == 1
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "before.txt", "d/train.json"]
