"""A weak-to-strong run folder: `w2s.json` (every number, `W2SResults`) and `w2s-examples.json`
(the half-B examples whose weak label is wrong, `SourceExamples`), written atomically and read
back into the same typed dataclasses, so the report never reads a number by a string key."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from genies._io import write_atomic
from genies.errors import FileError
from genies.pipeline.run_dir import plain_json
from genies.weak_to_strong.metrics import SourceExamples, W2SResults

RESULTS_FILE = "w2s.json"
EXAMPLES_FILE = "w2s-examples.json"
FORMAT = 2  # 2: a student per loss (`students`), partial results, the examples file


def write_results(out: Path, results: W2SResults, examples: tuple[SourceExamples, ...]) -> None:
    write_atomic(out / EXAMPLES_FILE, json.dumps({"format": FORMAT, "sources": plain_json(
        [asdict(e) for e in examples])}, ensure_ascii=False) + "\n")
    write_atomic(out / RESULTS_FILE, json.dumps({"format": FORMAT, **plain_json(asdict(results))}, indent=1) + "\n")


def is_w2s_folder(folder: Path) -> bool:
    return (Path(folder) / RESULTS_FILE).is_file()


def load_results(folder: str | Path) -> W2SResults:
    """`folder/w2s.json` as `W2SResults`; a missing, unreadable or older file is one line naming it."""
    doc = _read(Path(folder) / RESULTS_FILE)
    return _decode(W2SResults, doc, Path(folder) / RESULTS_FILE)


def load_examples(folder: str | Path) -> tuple[SourceExamples, ...] | None:
    """`folder/w2s-examples.json`, or None when the run wrote none (it stopped before the end)."""
    path = Path(folder) / EXAMPLES_FILE
    if not path.is_file():
        return None
    sources = _decode(tuple[SourceExamples, ...], _read(path).get("sources"), path)
    for i, source in enumerate(sources):  # the page shows one choice per student and loss
        for j, example in enumerate(source.wrong_weak_labels):
            losses = [choice.loss for choice in example.students]
            if twice := sorted({loss for loss in losses if losses.count(loss) > 1}):
                raise FileError(path, f"sources[{i}].wrong_weak_labels[{j}]: student {twice[0]} twice")
    return sources


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileError(path, "file not found: is this a `genies w2s --out` folder?")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise FileError(path, f"cannot be read as JSON ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format", "none") if isinstance(doc, dict) else "not an object"
        raise FileError(path, f"format {found}, this genies reads format {FORMAT}: rerun `genies w2s` (its jobs are "
                        "cached) to rewrite it")
    return doc


def _decode(kind: Any, value: Any, path: Path, where: str = "") -> Any:
    """`value` (plain JSON) as `kind`: dataclasses, tuples, optional values, mappings, scalars."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, value, path, where)
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise FileError(path, f"{where or 'the document'}: expected an object")
        hints = typing.get_type_hints(kind)
        missing = [f.name for f in fields(kind) if f.name not in value]
        if missing:
            raise FileError(path, f"{where or 'the document'}: no {missing[0]!r}")
        return kind(**{f.name: _decode(hints[f.name], value[f.name], path, f"{where}.{f.name}".lstrip("."))
                       for f in fields(kind)})
    if origin is tuple:
        if not isinstance(value, list):
            raise FileError(path, f"{where}: expected a list")
        return tuple(_decode(args[0], v, path, f"{where}[{k}]") for k, v in enumerate(value))
    if origin is Mapping or kind is Any:
        return value
    if kind is float and value is None:
        return float("nan")  # plain_json writes NaN as null
    accepted = {int: (int,), float: (int, float), str: (str,)}.get(kind, ())
    if isinstance(value, accepted) and not isinstance(value, bool):
        return kind(value)
    raise FileError(path, f"{where}: expected {getattr(kind, '__name__', kind)}, found {value!r}")
