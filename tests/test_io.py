"""Atomic writes and folders: all or nothing, shareable mode, no temporary files left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from genies import _io
from genies._io import atomic_path, publish_folder, write_atomic


def test_write_replaces_whole_files_with_mode_0644(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "results.csv"
    write_atomic(target, "a,b\n")
    write_atomic(target, b"c,d\n")
    assert target.read_bytes() == b"c,d\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["results.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def _entries(folder: Path) -> list[str]:
    """What a reader of `folder` sees, minus the publish lock file (it stays: removing a lock file races)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".lock")


def test_a_published_folder_appears_whole_with_a_shareable_mode(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "entry"
    with publish_folder(final) as tmp:
        (tmp / "data.npy").write_text("x")
        assert not final.exists()  # nothing visible before the block ends
    assert (final / "data.npy").read_text() == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~umask  # as mkdir makes it, not mkdtemp's 0700
    assert _entries(final.parent) == ["entry"]


def test_a_failed_build_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError, match="out of memory"), publish_folder(final) as tmp:
        (tmp / "half.npy").write_text("half")
        raise RuntimeError("out of memory")
    assert _entries(tmp_path) == []


def test_a_concurrent_winner_is_kept_and_ours_dropped(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with publish_folder(final) as tmp:
        (tmp / "who").write_text("ours")
        final.mkdir()  # another process published while we were building
        (final / "who").write_text("theirs")
    assert (final / "who").read_text() == "theirs"
    assert _entries(tmp_path) == ["entry"]


def test_an_existing_folder_keep_existing_rejects_is_replaced(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    final.mkdir()
    (final / "who").write_text("stale")
    with publish_folder(final, keep_existing=lambda folder: (folder / "done").is_file()) as tmp:
        (tmp / "who").write_text("ours")
    assert (final / "who").read_text() == "ours"
    assert _entries(tmp_path) == ["entry"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "entry"
    final.mkdir()
    (final / "who").write_text("old")
    rename = os.rename

    def failing(src, dst) -> None:
        if Path(dst) == final and Path(src).name == "entry":  # our folder going into place
            raise OSError("disk gone")
        rename(src, dst)

    monkeypatch.setattr(_io.os, "rename", failing)
    with pytest.raises(OSError, match="disk gone"), publish_folder(final, keep_existing=lambda _: False) as tmp:
        (tmp / "who").write_text("ours")
    assert (final / "who").read_text() == "old"
    assert _entries(tmp_path) == ["entry"]
