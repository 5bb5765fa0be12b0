"""genies._typed_json: known answers for every supported type, the one-line message of every
mistyped value (file, record, field, problem), nested dataclasses, fields added later with a
default, bool never standing for an int, and the callers' own error classes and files."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from genies._typed_json import decode, read_json
from genies.errors import FileError

FILE = Path("f.json")


class PlantedError(FileError):
    """Stands for a caller's own class (RunDirError, JudgeFileError): decode raises what `error` makes."""


ERROR = partial(PlantedError, FILE)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float | None


@dataclass(frozen=True)
class Record:
    name: str
    count: int
    flag: bool
    score: float
    maybe: int | None
    tags: tuple[str, ...]
    interval: Interval
    intervals: tuple[Interval, ...]
    extra: Mapping[str, Any]
    anything: Any
    added: float = 0.5  # fields added after files were written: absent in older files
    also_added: tuple[int, ...] = field(default_factory=tuple)


def _record(**changes: Any) -> dict[str, Any]:
    doc = {"name": "a", "count": 3, "flag": True, "score": 2, "maybe": None, "tags": ["x", "y"],
           "interval": {"low": 0.25, "high": None}, "intervals": [{"low": 1, "high": 2.5}, {"low": None, "high": 3}],
           "extra": {"k": [1, None]}, "anything": [1, "two"], "added": 0.75, "also_added": [4, 5],
           "not_a_field": "ignored"}
    return {**doc, **changes}


def test_every_supported_type_decodes_to_its_known_value() -> None:
    got = decode(Record, _record(), ERROR, "row 0")
    assert got == Record("a", 3, True, 2.0, None, ("x", "y"), Interval(0.25, None),
                         (Interval(1.0, 2.5), Interval(got.intervals[1].low, 3.0)), {"k": [1, None]}, [1, "two"],
                         0.75, (4, 5))
    assert math.isnan(got.intervals[1].low)  # null as a float is NaN (plain_json writes NaN as null)
    assert type(got.score) is float and type(got.intervals[1].high) is float  # an int read as a float is a float
    assert type(got.count) is int and type(got.flag) is bool
    assert decode(tuple[Interval, ...], [], ERROR) == ()
    assert decode(float | None, None, ERROR) is None and decode(float | None, 1, ERROR) == 1.0


def test_a_nested_dataclass_is_decoded_field_by_field() -> None:
    got = decode(tuple[Interval, ...], [{"low": 0, "high": 1}, {"low": 2, "high": None}], ERROR, "sources")
    assert got == (Interval(0.0, 1.0), Interval(2.0, None)) and all(type(i) is Interval for i in got)


def test_fields_with_a_default_may_be_missing_as_in_older_files() -> None:
    old = {k: v for k, v in _record().items() if k not in ("added", "also_added")}
    got = decode(Record, old, ERROR, "row 0")
    assert (got.added, got.also_added) == (0.5, ())
    with pytest.raises(PlantedError) as err:  # a field without a default may not
        decode(Record, {k: v for k, v in old.items() if k not in ("name", "count")}, ERROR, "row 0")
    assert str(err.value) == "f.json: row 0 lacks name, count"


def test_bool_is_not_an_int_nor_an_int_a_bool_or_a_float() -> None:
    for kind, value in ((int, True), (int, False), (bool, 1), (bool, 0), (float, True)):
        with pytest.raises(PlantedError, match=f"should be an? {kind.__name__}, not {value}$"):
            decode(kind, value, ERROR, "row 0")
    assert decode(int, 0, ERROR) == 0 and decode(bool, False, ERROR) is False


@pytest.mark.parametrize(("changes", "problem"), [
    ({"count": True}, "row 0: count should be an int, not True"),
    ({"count": 2.0}, "row 0: count should be an int, not 2.0"),
    ({"count": None}, "row 0: count should be an int, not None"),
    ({"flag": 1}, "row 0: flag should be a bool, not 1"),
    ({"score": "0.1"}, "row 0: score should be a float, not '0.1'"),
    ({"name": None}, "row 0: name should be a str, not None"),
    ({"maybe": "1"}, "row 0: maybe should be an int, not '1'"),
    ({"tags": "x"}, "row 0: tags is not a list"),
    ({"tags": ["x", 3]}, "row 0: tags[1] should be a str, not 3"),
    ({"interval": 7}, "row 0: interval is not an object"),
    ({"interval": {"low": 1}}, "row 0: interval lacks high"),
    ({"intervals": [{"low": 1, "high": 2}, {"low": "x", "high": 2}]},
     "row 0: intervals[1].low should be a float, not 'x'"),
    ({"extra": [1]}, "row 0: extra is not an object"),
])
def test_a_mistyped_field_is_one_line_naming_file_record_and_field(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(PlantedError) as err:
        decode(Record, _record(**changes), ERROR, "row 0")
    assert str(err.value) == f"{FILE}: {problem}" and err.value.file == str(FILE)


def test_where_labels_the_value_and_without_a_label_the_path_stands_alone() -> None:
    cases = ((lambda: decode(Record, 7, ERROR, "row 3"), "row 3 is not an object"),
             (lambda: decode(Record, 7, ERROR), "the document is not an object"),
             (lambda: decode(Interval, {"low": "x", "high": 1}, ERROR), "low should be a float, not 'x'"),
             (lambda: decode(tuple[Interval, ...], [{"low": 1}], ERROR, "sources"), "sources[0] lacks high"),
             (lambda: decode(tuple[Interval, ...], [{"low": 1, "high": "x"}], ERROR, "sources"),
              "sources[0].high should be a float, not 'x'"),
             (lambda: decode(tuple[Interval, ...], None, ERROR, "sources"), "sources is not a list"))
    for call, problem in cases:
        with pytest.raises(PlantedError) as err:
            call()
        assert err.value.problem == problem


def test_a_long_wrong_value_is_shortened_to_keep_the_message_one_short_line() -> None:
    with pytest.raises(PlantedError) as err:
        decode(Record, _record(count="a\nb" * 1000), ERROR, "row 0")
    assert err.value.problem.startswith("row 0: count should be an int, not 'a\\nba\\nb")
    assert "\n" not in str(err.value) and len(err.value.problem) < 120


def test_a_type_hint_it_cannot_decode_is_a_programming_error() -> None:
    for kind in (list[int], int | str, tuple[int, str], set):
        with pytest.raises(TypeError, match="cannot decode"):
            decode(kind, [1], ERROR)


def test_read_json_names_a_missing_broken_or_unreadable_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "doc.json"
    error = partial(PlantedError, path)
    with pytest.raises(PlantedError) as err:
        read_json(path, error, "file not found: is this a results folder?")
    assert str(err.value) == f"{path}: file not found: is this a results folder?"
    for content, problem in ((b"{", "not valid JSON (Expecting property name"),
                             (b'"\xff"', "not valid JSON ('utf-8' codec can't decode"),
                             (b"[" * 200_000, "not valid JSON (maximum recursion depth")):
        path.write_bytes(content)
        with pytest.raises(PlantedError) as err:
            read_json(path, error)
        assert err.value.problem.startswith(problem)
    path.write_text(json.dumps({"a": [1, None]}))
    assert read_json(path, error) == {"a": [1, None]}

    def refused(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refused)  # root reads any file: refuse it by hand
    with pytest.raises(PlantedError) as err:
        read_json(path, error)
    assert err.value.problem == "cannot be read ([Errno 13] Permission denied)"


def test_each_caller_raises_its_own_error_naming_its_own_file(tmp_path: Path) -> None:
    """judge-outcomes.json's records are named in that file, not in judge.json beside it."""
    from judge_runs import write_judge  # tests/judge_runs.py

    from genies.judging import JudgeFileError, read_results
    from genies.pipeline.run_dir import RunDirError, load_run

    folder = write_judge(tmp_path / "judge", "rm:a", {"alpaca_easy": [1, 0, 1]})
    outcomes = folder / "judge-outcomes.json"
    doc = json.loads(outcomes.read_text())
    doc["outcomes"][0]["hits"][1] = 0.5
    outcomes.write_text(json.dumps(doc))
    with pytest.raises(JudgeFileError) as err:
        read_results(folder)
    assert str(err.value) == f"{outcomes}: outcomes[0].hits[1] should be an int, not 0.5"
    judge = folder / "judge.json"
    judge.write_text(json.dumps({**json.loads(judge.read_text()), "seed": "0"}))
    with pytest.raises(JudgeFileError) as err:
        read_results(folder)
    assert str(err.value) == f"{judge}: seed should be an int, not '0'"
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 2, "rows": [], "failed": [{"job": 1}]}))
    with pytest.raises(RunDirError) as err:
        load_run(tmp_path)
    assert str(err.value) == f"{tmp_path / 'results.json'}: failed job 0 lacks error"
