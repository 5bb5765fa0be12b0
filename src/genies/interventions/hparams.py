"""Hyperparameters: declared once as dataclass fields with help, parsed and checked before a run.

A method's hyperparameters are the fields of its dataclass, each declared with `hparam(default,
help, ...)`. Two kinds are told apart because cache keys depend on it:

- result-affecting (the default): they enter every job key, so changing one reruns the jobs;
- execution settings (`execution=True`): batch sizes, timeouts, interpreters, folders. They change
  how fast or where a job runs, never its numbers (tests prove it where it can be proved), so they
  stay out of the keys and a different batch size reuses every cached result.

Values given on the command line arrive as strings; `configure` parses them against each field's
type and `choices` before anything starts, so `--set mms.k=abc` fails at once with one line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genies.errors import ConfigError, UnknownNameError


def hparam(default: Any, help: str, *, choices: tuple[Any, ...] | None = None, execution: bool = False) -> Any:
    """A hyperparameter field. `help` feeds `genies interventions show` and the docs; `choices`
    are enforced when the method is configured; `execution=True` keeps it out of cache keys."""
    metadata = {"help": help, "choices": choices, "execution": execution}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class HParamInfo:
    """One hyperparameter as `genies interventions show` prints it."""

    name: str
    type: str
    default: Any
    help: str
    presets: dict[str, Any]
    choices: tuple[Any, ...] | None
    execution: bool


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _type_name(hint: Any) -> str:
    """`int`, `list[str]`, `int | None`: a generic alias keeps its arguments (its `__name__`
    would say only `list`)."""
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(cls: type, presets: Mapping[str, Mapping[str, Any]]) -> list[HParamInfo]:
    """Every hyperparameter of a method class with its default, help, choices and preset values."""
    hints = _hints(cls)
    return [HParamInfo(f.name, _type_name(hints.get(f.name, f.type)), _default(f), f.metadata.get("help", ""),
                       {p: values[f.name] for p, values in presets.items() if f.name in values},
                       f.metadata.get("choices"), bool(f.metadata.get("execution")))
            for f in dataclasses.fields(cls)]


def configure(cls: type, method: str, presets: Mapping[str, Mapping[str, Any]], preset: str | None,
              overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a method: its preset's values, then `overrides` on top, each
    parsed (strings from the command line) and checked against the field's type and choices.

    A method that declares presets must declare `preset`; one that declares none runs its
    defaults whatever preset the run names (a plugin need not know genies' preset names).
    """
    values: dict[str, Any] = {}
    if preset and presets:
        if preset not in presets:
            raise UnknownNameError(f"{method} preset", preset, presets)
        values.update(presets[preset])
    values.update(overrides)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UnknownNameError(f"{method} hyperparameter", unknown[0], fields)
    hints = _hints(cls)
    return {name: check_value(method, name, value, hints.get(name, Any), fields[name].metadata.get("choices"))
            for name, value in values.items()}


def check_value(method: str, name: str, value: Any, hint: Any, choices: tuple[Any, ...] | None) -> Any:
    """`value` converted to the field's type (a string is parsed as JSON when the type is not
    str), or a ConfigError naming the method, the field, the type and the value."""
    try:
        converted = _convert(value, hint)
    except (TypeError, ValueError):
        raise ConfigError(f"{method}.{name}: expected {_type_name(hint)}, got {value!r}") from None
    if choices is not None and converted not in choices:
        raise ConfigError(f"{method}.{name} must be one of {', '.join(map(repr, choices))}, got {converted!r}")
    return converted


def _convert(value: Any, hint: Any) -> Any:
    """Convert one value to a (possibly optional / generic) type hint; raise on mismatch."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        spelled_none = isinstance(value, str) and value.lower() in ("none", "null") and str not in options
        if type(None) in options and (value is None or spelled_none):
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(value) from None
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise TypeError(value)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(value)
        return float(value)
    container = origin or hint
    if container in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return container(_convert(v, item) for v in value)
    if container is dict:
        if not isinstance(value, dict):
            raise TypeError(value)
        return dict(value)
    return value


def all_values(instance: Any) -> dict[str, Any]:
    """Every hyperparameter of a configured method, JSON-normalised (what its state records)."""
    return json.loads(json.dumps({f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)},
                                 sort_keys=True, default=str))


def result_values(instance: Any) -> dict[str, Any]:
    """The hyperparameters that can change results: all but the execution settings."""
    execution = {f.name for f in dataclasses.fields(instance) if f.metadata.get("execution")}
    return {k: v for k, v in all_values(instance).items() if k not in execution}
