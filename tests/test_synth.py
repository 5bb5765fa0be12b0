"""Synthetic shifts: byte-for-byte reproducible, labels recomputed from the prompt, valid GENIES data."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genies.commands import data_synth
from genies.data.audit import audit_distribution
from genies.data.loading import load_distribution
from genies.data.schema import Example
from genies.data.shift import CATEGORIES
from genies.data.shifts import get_shifts, read_shift_file
from genies.data.synth import DISTRIBUTIONS, GENERATOR_VERSION, ensure_synthetic, synthetic_shifts, write_synthetic
from genies.data.validation import check_distribution_folder, errors

SIZE = 40


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synth") / "out", SIZE, seed=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(synth: Path, tmp_path: Path) -> None:
    again = _files(write_synthetic(tmp_path / "again", SIZE, seed=3))
    assert again == _files(synth)
    other = _files(write_synthetic(tmp_path / "other", SIZE, seed=4))
    assert set(other) == set(again)
    for spec in DISTRIBUTIONS:
        for split in ("train", "test"):
            assert other[f"{spec.name}/{split}.json"] != again[f"{spec.name}/{split}.json"], spec.name


# --- exact labels: every preferred response recomputed from the prompt's own text --------------

_SUM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")
# written out independently of the generator's table
_FACTORS = {("kilometres", "metres"): 1000, ("metres", "centimetres"): 100, ("centimetres", "millimetres"): 10,
            ("kilograms", "grams"): 1000, ("litres", "millilitres"): 1000, ("hours", "minutes"): 60,
            ("minutes", "seconds"): 60, ("days", "hours"): 24, ("weeks", "days"): 7, ("years", "months"): 12}


def _eval(a: str, op: str, b: str) -> int:
    return int(a) + int(b) if op == "+" else int(a) - int(b)


def _sum_answer(text: str) -> int:
    match = _SUM.search(text)
    assert match, text
    return _eval(*match.groups())


def _words_in(instruction: str) -> list[str]:
    listed = instruction.split("alphabetical order: ", 1)[1].split("?", 1)[0]
    return listed.split(", ")


def _count(instruction: str) -> int:
    letter, word = re.search(r"letter '(\w)' appear in the word '(\w+)'", instruction).groups()
    return word.count(letter)


def _claimed_count(sentence: str) -> int:
    return int(re.search(r"appears (\d+) times?", sentence).group(1))


def _check_story(ex: Example, pref: str, others: list[str]) -> None:
    a, verb, b = re.search(r"has (\d+) \w+ and then (finds|gives) (\d+)", ex.metadata["input"]).groups()
    assert int(pref) == (int(a) + int(b) if verb == "finds" else int(a) - int(b))


def _check_madeup(ex: Example, pref: str, others: list[str]) -> None:
    a, b, word = re.search(r"`\.(\d+)\. \.(\d+)\. (glub|snark)`", ex.metadata["instruction"]).groups()
    assert int(pref) == _eval(a, "+" if word == "glub" else "-", b)


def _check_claim(ex: Example, pref: str, others: list[str]) -> None:
    claimed = re.search(r"I think the answer is (\d+),", ex.metadata["instruction"]).group(1)
    assert int(pref) == _sum_answer(ex.metadata["input"]) and others == [claimed] and claimed != pref


def _check_low_quality(ex: Example, pref: str, others: list[str]) -> None:
    truth = _sum_answer(ex.metadata["instruction"])
    (other,) = others
    assert truth not in (int(pref), int(other))  # both responses are wrong
    assert abs(int(pref) - truth) < abs(int(other) - truth)  # the better one is preferred


def _check_units(ex: Example, pref: str, others: list[str]) -> None:
    n, src, dst = re.search(r"Convert (\d+) (\w+) to (\w+)\.", ex.metadata["instruction"]).groups()
    assert pref == f"{int(n) * _FACTORS[src, dst]} {dst}"


def _check_csv(ex: Example, pref: str, others: list[str]) -> None:
    quoted = re.findall(r'"([^"]*)"', ex.metadata["instruction"])
    assert ex.metadata["instruction"] == ", ".join(f'"{w}"' for w in quoted)  # the whole instruction is encoded
    assert pref == min(_words_in(" ".join(quoted)))


def _check_count_long(ex: Example, pref: str, others: list[str]) -> None:
    n = _count(ex.metadata["instruction"])
    assert _claimed_count(pref) == n and int(others[0]) != n and len(pref) > len(others[0])


def _check_count_short(ex: Example, pref: str, others: list[str]) -> None:
    n = _count(ex.metadata["instruction"])
    assert int(pref) == n and _claimed_count(others[0]) != n and len(pref) < len(others[0])


CHECKS: dict[str, Callable[[Example, str, list[str]], None]] = {
    "synth_arithmetic_easy": lambda ex, p, o: _check_sum(ex, p, digits=(1, 2)),
    "synth_arithmetic_hard": lambda ex, p, o: _check_sum(ex, p, digits=(6, 9)),
    "synth_arithmetic_high_quality": lambda ex, p, o: _check_sum(ex, p, digits=(2, 3)),
    "synth_arithmetic_story": _check_story,
    "synth_arithmetic_madeup": _check_madeup,
    "synth_arithmetic_user_claim": _check_claim,
    "synth_arithmetic_low_quality": _check_low_quality,
    "synth_unit_conversion": _check_units,
    "synth_alphabetical": lambda ex, p, o: _check_equal(p, min(_words_in(ex.metadata["instruction"]))),
    "synth_alphabetical_csv": _check_csv,
    "synth_string_reversal": lambda ex, p, o: _check_equal(
        p, re.search(r"word '(\w+)'", ex.metadata["instruction"]).group(1)[::-1]),
    "synth_count_long": _check_count_long,
    "synth_count_short": _check_count_short,
    "synth_count": lambda ex, p, o: _check_equal(int(p), _count(ex.metadata["instruction"])),
}


def _check_sum(ex: Example, pref: str, digits: tuple[int, int]) -> None:
    a, _, b = _SUM.search(ex.metadata["instruction"]).groups()
    assert digits[0] <= max(len(a), len(b)) <= digits[1]
    assert int(pref) == _sum_answer(ex.metadata["instruction"])


def _check_equal(got: object, expected: object) -> None:
    assert got == expected


def test_every_distribution_has_a_label_check() -> None:
    assert set(CHECKS) == {spec.name for spec in DISTRIBUTIONS}


@pytest.mark.parametrize("name", [spec.name for spec in DISTRIBUTIONS])
def test_labels_are_exact(synth: Path, name: str) -> None:
    dist = load_distribution(synth / name)
    for split in ("train", "test"):
        examples = dist.split(split)
        assert len(examples) == SIZE
        for ex in examples:
            assert ex.prompt.startswith("Below is an instruction that describes a task")
            assert ex.prompt.endswith("### Response:\n") and ex.metadata["instruction"] in ex.prompt
            others = [ex.responses[i] for i in ex.dispreferred_indices]
            assert len(set(ex.responses)) == len(ex.responses)
            CHECKS[name](ex, ex.preferred_response, others)
    # the preferred response's position carries no signal
    positions = {ex.preferred for ex in dist.train}
    assert len(positions) == len(dist.train[0].responses)


def test_every_distribution_validates_and_audits_clean(synth: Path) -> None:
    cued = {}
    for spec in DISTRIBUTIONS:
        _, findings = check_distribution_folder(synth / spec.name)
        assert errors(findings) == [], spec.name
        warnings = [f.problem for f in audit_distribution(load_distribution(synth / spec.name))]
        assert not [w for w in warnings if not w.startswith("length cue")], (spec.name, warnings)
        cued.update({spec.name: w for w in warnings})
    # the only length cues are the planted ones, in opposite directions
    assert set(cued) == {"synth_count_long", "synth_count_short"}
    assert "longest in 100.0%" in cued["synth_count_long"] and "shortest in 100.0%" in cued["synth_count_short"]


def test_shifts_cover_the_categories(synth: Path) -> None:
    shifts = synthetic_shifts()
    assert len(shifts) >= 6 and len({s.category for s in shifts}) >= 4
    assert {s.category for s in shifts} <= set(CATEGORIES)
    names = {spec.name for spec in DISTRIBUTIONS}
    assert all({s.source, s.target, s.target_reference} <= names for s in shifts)
    assert read_shift_file(synth / "shifts.json") == shifts  # the file round-trips
    assert get_shifts("synthetic") == shifts  # and the registry offers the same list
    rows = json.loads((synth / "shifts.json").read_text())
    assert all(set(row) <= {"source", "target", "target_reference", "category", "label"} for row in rows)


def test_ensure_synthetic_generates_once_and_replaces_stale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    root = ensure_synthetic(size=5, seed=1)
    assert root == tmp_path / "home" / "synthetic" / "5-1"
    stamp = root / "synthetic.json"
    before = stamp.stat().st_mtime_ns
    assert ensure_synthetic(size=5, seed=1) == root and stamp.stat().st_mtime_ns == before  # not regenerated
    assert len(load_distribution("synth_arithmetic_easy", data_root=root).test) == 5
    stamp.write_text(json.dumps({"generator_version": GENERATOR_VERSION - 1, "seed": 1, "size": 5}))
    (root / "synth_count" / "train.json").write_text("[]")
    ensure_synthetic(size=5, seed=1)
    assert json.loads(stamp.read_text())["generator_version"] == GENERATOR_VERSION
    assert len(load_distribution(root / "synth_count").train) == 5
    # no temporary folders left; the publish lock file stays (removing a lock file races its next user)
    assert [p.name for p in root.parent.iterdir() if p.suffix != ".lock"] == ["5-1"]


def test_cli_writes_the_folder(tmp_path: Path) -> None:
    app = typer.Typer()
    data_synth.register(app)
    result = CliRunner().invoke(app, [str(tmp_path / "s"), "--size", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "shifts.json").is_file() and "14 distributions" in result.output
    assert f"GENIES_DATA_DIR={tmp_path / 's'}" in result.output  # how to use it, said where it is written
    assert _files(tmp_path / "s") == _files(write_synthetic(tmp_path / "t", 3, 2))
    result = CliRunner().invoke(app, [str(tmp_path / "u"), "--size", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
