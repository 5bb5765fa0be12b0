"""The intervention interface: hyperparameters in, a saved state out, per-pair probabilities back.

Reads like a scikit-learn estimator: an intervention is a dataclass of hyperparameters,
`fit(lm, source, ctx)` learns a `State` (a self-describing directory: `state.json` plus
`tensors.safetensors`, plus any extra files such as a LoRA adapter), and `predict(lm, state,
dist, split, ctx)` is pure. Methods register by name with `@register`; third-party packages add
theirs through the `genies.interventions` entry-point group.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genies.data.schema import Distribution
from genies.models.base import LoadedModel

FAMILIES = ("baseline", "prompting", "fine-tuning", "representation")
ENTRY_POINT_GROUP = "genies.interventions"


@dataclass(frozen=True)
class Predictions:
    """What an intervention says about every evaluation pair of one split.

    Arrays are aligned per pair (the order of `Distribution.eval_pairs`); `response_scores`
    holds, per example, the method's raw score of each response (None where it has none).
    """

    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.p_preferred)
        for name in ("example_index", "preferred_index", "dispreferred_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Predictions.{name} has {len(getattr(self, name))} entries, expected {n}")
        if n and (np.nanmin(self.p_preferred) < 0 or np.nanmax(self.p_preferred) > 1):
            raise ValueError("Predictions.p_preferred must lie in [0, 1]")


@dataclass
class FitContext:
    """What the pipeline lends an intervention: the seed, the shared activation store, progress."""

    seed: int = 0
    activation_store: Any = None  # genies.models.activations.ActivationStore
    progress: Any = None  # callable(message: str) or None
    device: str | None = None


@dataclass
class State:
    """A fitted intervention. Saved as `state.json` + `tensors.safetensors` in `directory`."""

    intervention: str
    hparams: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    directory: Path | None = None

    def save(self, directory: Path) -> None:
        """Write atomically: files go to a temporary name first, then are renamed into place."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        _atomic_write(directory / "tensors.safetensors", lambda p: save_file(tensors, str(p)))
        doc = {"intervention": self.intervention, "hparams": self.hparams, "info": self.info}
        _atomic_write(directory / "state.json", lambda p: p.write_text(json.dumps(doc, indent=2, sort_keys=True)))

    @classmethod
    def load(cls, directory: Path) -> State:
        directory = Path(directory)
        doc = json.loads((directory / "state.json").read_text())
        tensors_file = directory / "tensors.safetensors"
        tensors = load_file(str(tensors_file)) if tensors_file.exists() else {}
        return cls(doc["intervention"], doc["hparams"], doc.get("info", {}), tensors, directory)

    def predict(self, lm: LoadedModel, dist: Distribution, split: str = "test",
                ctx: FitContext | None = None) -> Predictions:
        method = get_intervention(self.intervention)(**self.hparams)
        return method.predict(lm, self, dist, split, ctx or FitContext())


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Intervention(ABC):
    """Base class. Subclasses are dataclasses whose fields are the hyperparameters."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    needs_training_data: ClassVar[bool] = True

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> Intervention:
        """Hyperparameters from a named preset (`paper`, `cpu`, ...) with explicit overrides on top."""
        values: dict[str, Any] = {}
        if preset:
            if preset not in cls.presets and cls.presets:
                raise ValueError(f"intervention {cls.name!r} has no preset {preset!r}; "
                                 f"choose from {', '.join(sorted(cls.presets))}")
            values.update(cls.presets.get(preset, {}))
        values.update(overrides)
        return cls(**values)

    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    @abstractmethod
    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        """Learn from the source's train split. Must never read any other distribution's labels."""

    @abstractmethod
    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        """Score every evaluation pair of `dist`'s `split`. Must not read the labels' values
        except to lay out pairs (use `Distribution.eval_pairs`)."""


_T = TypeVar("_T", bound=type[Intervention])
_REGISTRY: dict[str, type[Intervention]] = {}
# Modules of this package that hold shared machinery rather than one method each.
_NOT_METHODS = {"base"}


def register(name: str, *, family: str, description: str) -> Any:
    """Class decorator: `@register("mms", family="representation", description="...")`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")

    def decorate(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"intervention {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name, cls.family, cls.description = name, family, description
        _REGISTRY[name] = cls
        return cls

    return decorate


def _builtin_modules() -> list[str]:
    """Built-in methods are the modules of this package (one file each), imported on first use
    so that `genies --help` stays fast and adding a method touches no central list."""
    package = importlib.import_module("genies.interventions")
    return [m.name for m in pkgutil.iter_modules(package.__path__)
            if m.name not in _NOT_METHODS and not m.name.startswith("_")]


def _load_all() -> None:
    for module in _builtin_modules():
        importlib.import_module(f"genies.interventions.{module}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            ep.load()


def available() -> dict[str, type[Intervention]]:
    """Every registered intervention: built-ins, plugins, and classes registered at run time."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_intervention(name: str) -> type[Intervention]:
    if name not in _REGISTRY and name in _builtin_modules():
        importlib.import_module(f"genies.interventions.{name}")
    if name not in _REGISTRY:
        _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown intervention {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]
