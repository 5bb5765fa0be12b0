"""Plain JSON back into typed frozen dataclasses, by their type hints: the one decoder behind every
results file genies reads back (a run's results.json, a judge's judge.json, a w2s folder's files).

Each reader used to carry its own copy of this, and the copies drifted apart (one took a field's
default, the others did not; one said "lacks", another "no 'x'"). Here a bad value is one line
that names the record and the field, and the caller passes the error to raise it as (a
`FileError` subclass bound to its file, e.g. `functools.partial(RunDirError, path)`), so
`genies.errors` stays the one hierarchy and each command keeps its own error class.

Decoded: nested dataclasses field by field (extra keys are ignored; a field with a default may be
absent, so files written before it was added still read), `tuple[X, ...]` from a list, `X | None`,
`float` (an int is accepted; null is NaN, which is how `plain_json` writes NaN), `int` and `bool`
(neither stands for the other), `str`, and free-form `Mapping`/`dict`/`Any` values, kept as read.
Any other type hint is a programming error (`TypeError`), not a user's.
"""

from __future__ import annotations

import functools
import json
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

Error = Callable[[str], Exception]
"""Makes the exception for one problem (`row 3: n_shifts should be an int, not 2.0`)."""

_SCALARS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    float: ("a float", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    int: ("an int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    bool: ("a bool", lambda v: isinstance(v, bool)),
    str: ("a str", lambda v: isinstance(v, str)),
}
_repr = reprlib.Repr()  # a wrong value is quoted, shortened: never a whole list of rows in one line
_repr.maxstring = _repr.maxother = 60


def read_json(path: Path, error: Error, missing: str = "file not found") -> Any:
    """The parsed JSON document at `path`; an absent file is `error(missing)`, an unreadable one
    `error("not valid JSON (...)")` or `error("cannot be read (...)")`."""
    if not path.is_file():
        raise error(missing)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"not valid JSON ({err})") from err
    except OSError as err:
        raise error(f"cannot be read ({err})") from err
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested deeper than Python's stack
        raise error(f"not valid JSON ({err})") from err


def decode(kind: Any, value: Any, error: Error, where: str = "") -> Any:
    """`value` (parsed JSON) as the type `kind`, e.g. `decode(ResultRow, record, error, "row 3")`.

    `where` labels the value in messages: a field inside it reads `row 3: n_shifts`, an item
    `sources[2]`, deeper paths `sources[2].weak.low`; without a label the path stands alone and
    the value itself is "the document"."""
    return _decode(kind, value, error, where, "")


def _decode(kind: Any, value: Any, error: Error, label: str, path: str) -> Any:
    if kind in _SCALARS:  # first: most values are scalars
        expected, accepts = _SCALARS[kind]
        if kind is float and value is None:
            return math.nan  # plain_json writes NaN (and inf) as null
        if not accepts(value):
            raise error(f"{_where(label, path)} should be {expected}, not {_repr.repr(value)}")
        return kind(value)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise error(f"{_where(label, path)} is not an object")
        spec = _fields(kind)
        missing = [name for name, _, required in spec if required and name not in value]
        if missing:
            raise error(f"{_where(label, path)} lacks {', '.join(missing)}")
        return kind(**{name: _decode(hint, value[name], error, label, f"{path}.{name}" if path else name)
                       for name, hint, _ in spec if name in value})
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"genies._typed_json cannot decode {kind!r}: only `X | None` unions")
        return None if value is None else _decode(options[0], value, error, label, path)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"genies._typed_json cannot decode {kind!r}: only tuple[X, ...]")
        if not isinstance(value, list):
            raise error(f"{_where(label, path)} is not a list")
        return tuple(_decode(args[0], v, error, label, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is Any:
        return value
    if origin in (Mapping, dict) or kind in (Mapping, dict):  # free-form (hyperparameters, versions): kept as read
        if not isinstance(value, dict):
            raise error(f"{_where(label, path)} is not an object")
        return value
    raise TypeError(f"genies._typed_json cannot decode {kind!r}; extend it")


@functools.cache
def _fields(kind: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type hint, required) of each constructor field; cached, as a results file
    decodes the same few dataclasses thousands of times."""
    hints = typing.get_type_hints(kind)
    return tuple((f.name, hints[f.name], f.default is MISSING and f.default_factory is MISSING)
                 for f in fields(kind) if f.init)


def _where(label: str, path: str) -> str:
    if not path:
        return label or "the document"
    if not label:
        return path
    return label + path if path.startswith("[") else f"{label}: {path}"
