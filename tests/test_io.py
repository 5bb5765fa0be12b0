"""Atomic writes: all or nothing, shareable mode, no temporary files left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from genies._io import atomic_path, write_atomic


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
