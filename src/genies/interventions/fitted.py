"""Saving and loading a method's fitted state: a frozen dataclass in, the same dataclass out.

Each method declares what it learned as a frozen dataclass (directions, calibrators, adapter
weights, chosen shots...). Array fields (`numpy.ndarray`, `torch.Tensor`, or a
`dict[str, torch.Tensor]` such as a PEFT state dict) go to `tensors.safetensors`; everything else
goes to `fitted.json` with a schema version; nested frozen dataclasses are saved field by field
the same way. Loading reads the dataclass's type hints, so it comes back typed: no method
converts to or from an untyped bag, and no pickle is ever read.

A fit may also leave files beside these two (a legacy script's trained model folder): the job
store keeps the folder whole.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genies._io import atomic_path, write_atomic
from genies.errors import GeniesError

FITTED_SCHEMA = 1
FITTED_JSON = "fitted.json"
TENSORS = "tensors.safetensors"
F = TypeVar("F")


class FittedStateError(GeniesError, ValueError):
    """A stored fitted state cannot be read back as the method's dataclass."""


def save_fitted(fitted: Any, directory: Path, *, intervention: str) -> None:
    """Write `fitted` (a dataclass instance) into `directory`, each file atomically."""
    if not dataclasses.is_dataclass(fitted) or isinstance(fitted, type):
        raise TypeError(f"{intervention}: fit must return a dataclass instance, got {type(fitted).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    fields = _split(fitted, "", tensors)
    with atomic_path(directory / TENSORS) as tmp:
        save_file(_own_storage(tensors), str(tmp))
    doc = {"schema": FITTED_SCHEMA, "intervention": intervention, "type": type(fitted).__qualname__,
           "fields": fields}
    write_atomic(directory / FITTED_JSON, json.dumps(doc, indent=1, sort_keys=True))


def load_fitted(cls: type[F], directory: Path) -> F:
    """The dataclass `cls` saved in `directory` by `save_fitted`."""
    directory = Path(directory)
    doc_file = directory / FITTED_JSON
    if not doc_file.is_file():
        raise FittedStateError(f"{directory}: not a fitted state (no {FITTED_JSON})")
    doc = json.loads(doc_file.read_text(encoding="utf-8"))
    if doc.get("schema") != FITTED_SCHEMA:
        raise FittedStateError(f"{doc_file}: fitted-state schema {doc.get('schema')!r}, this genies reads "
                               f"{FITTED_SCHEMA}; rerun the fit")
    tensors = load_file(str(directory / TENSORS)) if (directory / TENSORS).is_file() else {}
    return _join(cls, doc["fields"], tensors, "")


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The JSON fields of a dataclass; its array fields go into `tensors` under `prefix+name`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), prefix + f.name
        if isinstance(value, np.ndarray):
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
            out[f.name] = {"tensor": name, "numpy": True}
        elif isinstance(value, torch.Tensor):
            tensors[name] = value
            out[f.name] = {"tensor": name}
        elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            for key, tensor in value.items():
                tensors[f"{name}/{key}"] = tensor
            out[f.name] = {"tensors": f"{name}/", "keys": sorted(value)}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = {"dataclass": _split(value, name + ".", tensors)}
        else:
            out[f.name] = {"json": _plain(value, name)}
    return out


def _own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with memory of its own: safetensors refuses tensors that share
    storage (tied weights in a state dict, one tensor stored in two fields), so the second and
    later users of a storage are copied."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if storage in seen else tensor
        seen.add(storage)
    return out


def _plain(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError as err:
        raise TypeError(f"fitted field {name!r}: {err}; use arrays, tensors, dataclasses or JSON values") from None


def _join(cls: type[F], fields: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str) -> F:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in fields:
            raise FittedStateError(f"{cls.__qualname__}: the stored state has no field {f.name!r}; rerun the fit")
        stored = fields[f.name]
        if "tensor" in stored:
            tensor = tensors[stored["tensor"]]
            values[f.name] = tensor.numpy() if stored.get("numpy") else tensor
        elif "tensors" in stored:
            values[f.name] = {key: tensors[stored["tensors"] + key] for key in stored["keys"]}
        elif "dataclass" in stored:
            values[f.name] = _join(_dataclass_type(hints[f.name]), stored["dataclass"], tensors, prefix + f.name + ".")
        else:
            values[f.name] = _typed(stored["json"], hints.get(f.name))
    return cls(**values)


def _dataclass_type(hint: Any) -> type:
    for option in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(option):
            return option
    raise FittedStateError(f"{hint} is not a dataclass type")


def _typed(value: Any, hint: Any) -> Any:
    """JSON lists come back as tuples where the field says tuple (frozen dataclasses use them)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        return value if value is None or len(options) != 1 else _typed(value, options[0])
    if (origin or hint) is tuple and isinstance(value, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = args[0] if len(args) == 1 else None
        return tuple(_typed(v, inner) for v in value)
    return value
