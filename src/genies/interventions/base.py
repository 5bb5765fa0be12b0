"""The intervention interface: hyperparameters in, a saved state out, per-pair probabilities back.

Reads like a scikit-learn estimator: an intervention is a dataclass of hyperparameters,
`fit(lm, source, ctx)` learns a `State` (a self-describing directory: `state.json` plus
`tensors.safetensors`, plus any extra files such as a legacy model folder), and
`predict(lm, state, dist, split, ctx)` is pure. Methods register by name with `@register`;
third-party packages add theirs through the `genies.interventions` entry-point group, and a
folder written for the original GENIES (`train.py` / `eval.py`) loads through
`load_intervention(path)`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genies._io import atomic_path, write_atomic
from genies.data.schema import Distribution, Example, eval_pairs
from genies.models.base import LoadedModel

FAMILIES = ("baseline", "prompting", "fine-tuning", "representation", "external")
ENTRY_POINT_GROUP = "genies.interventions"
STATE_FILES = ("state.json", "tensors.safetensors")


def hparam(default: Any, help: str, **metadata: Any) -> Any:
    """A hyperparameter field whose `help` text feeds `genies interventions show` and the docs."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class Predictions:
    """What an intervention says about every evaluation pair of one split.

    Arrays are aligned per pair (the order of `Distribution.eval_pairs`); `response_scores`
    holds, per example, the method's raw score of each response (None where it has none).
    `info` carries anything else the method reports (an adapter's own accuracy, warnings).
    """

    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: list[np.ndarray] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.p_preferred)
        for name in ("example_index", "preferred_index", "dispreferred_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Predictions.{name} has {len(getattr(self, name))} entries, expected {n}")
        finite = np.asarray(self.p_preferred, dtype=float)
        finite = finite[~np.isnan(finite)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError("Predictions.p_preferred must lie in [0, 1]")

    @classmethod
    def from_scores(cls, examples: Sequence[Example], scores: Sequence[np.ndarray],
                    info: Mapping[str, Any] | None = None) -> Predictions:
        """Pairwise probabilities from one scalar score per response (Bradley-Terry).

        P(preferred beats dispreferred) = sigmoid(s_pref - s_disp), which is also the softmax
        over a prompt's responses restricted to the pair. Only the pair layout reads labels.
        """
        if len(scores) != len(examples):
            raise ValueError(f"{len(scores)} score arrays for {len(examples)} examples")
        scores = [np.asarray(s, dtype=np.float64) for s in scores]
        for i, (ex, s) in enumerate(zip(examples, scores)):
            if s.shape != (len(ex.responses),):
                raise ValueError(f"example {i}: {s.shape} scores for {len(ex.responses)} responses")
        pairs = eval_pairs(examples)
        diff = np.array([scores[p.example_index][p.preferred_index] - scores[p.example_index][p.dispreferred_index]
                         for p in pairs], dtype=np.float64)
        return cls(
            example_index=np.array([p.example_index for p in pairs], dtype=np.int64),
            preferred_index=np.array([p.preferred_index for p in pairs], dtype=np.int64),
            dispreferred_index=np.array([p.dispreferred_index for p in pairs], dtype=np.int64),
            p_preferred=_sigmoid(diff),
            response_scores=scores,
            info=dict(info or {}),
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """A sigmoid that neither overflows nor loses the tails (exp only of non-positive values)."""
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass
class FitContext:
    """What the pipeline lends an intervention: the seed, the shared activation store, progress.

    `state_dir` is where the state will be saved. Methods that leave files beside the tensors
    (a legacy model folder) write them there; when it is None they use a temporary folder and
    `State.save` copies the files over.
    """

    seed: int = 0
    activation_store: Any = None  # genies.models.activations.ActivationStore
    progress: Any = None  # callable(message: str) or None
    state_dir: Path | None = None

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def artifact_dir(self) -> Path:
        """The folder for a state's extra files: `state_dir` when given, else a fresh temporary one."""
        if self.state_dir is not None:
            Path(self.state_dir).mkdir(parents=True, exist_ok=True)
            return Path(self.state_dir)
        return Path(tempfile.mkdtemp(prefix="genies-state-"))

    @contextlib.contextmanager
    def progress_bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Progress of a long step; yields `advance(n)`. With a `progress` callback (a pipeline
        that owns the screen) the callback gets "description done/total" messages; otherwise a
        rich bar is drawn on stderr when stderr is a terminal (never in tests or logs)."""
        if self.progress is not None:
            done = 0

            def report(n: int = 1) -> None:
                nonlocal done
                done += n
                self.progress(f"{description} {done}/{total}")

            self.progress(f"{description} 0/{total}")
            yield report
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)


@dataclass
class State:
    """A fitted intervention. Saved as `state.json` + `tensors.safetensors` in `directory`,
    plus any extra files the method left in `directory` before saving."""

    intervention: str
    hparams: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    directory: Path | None = None

    def save(self, directory: Path) -> None:
        """Write atomically: files go to a temporary name first, then are renamed into place.
        Extra files in the current `directory` (if different) are copied to the new one."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.directory is not None and Path(self.directory).resolve() != directory.resolve():
            _copy_extras(Path(self.directory), directory)
        self.directory = directory
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        with atomic_path(directory / "tensors.safetensors") as tmp:
            save_file(tensors, str(tmp))
        doc = {"intervention": self.intervention, "hparams": self.hparams, "info": self.info}
        write_atomic(directory / "state.json", json.dumps(doc, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> State:
        directory = Path(directory)
        state_file = directory / "state.json"
        if not state_file.exists():
            raise FileNotFoundError(f"{state_file}: not an intervention state (no state.json)")
        doc = json.loads(state_file.read_text())
        tensors_file = directory / "tensors.safetensors"
        tensors = load_file(str(tensors_file)) if tensors_file.exists() else {}
        return cls(doc["intervention"], doc["hparams"], doc.get("info", {}), tensors, directory)

    def predict(self, lm: LoadedModel, dist: Distribution, split: str = "test",
                ctx: FitContext | None = None) -> Predictions:
        method = get_intervention(self.intervention)(**self.hparams)
        return method.predict(lm, self, dist, split, ctx or FitContext())

    predict_proba = predict


def _copy_extras(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    for item in source.iterdir():
        if item.name in STATE_FILES:
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target / item.name)


@dataclass(frozen=True)
class HParamInfo:
    """One hyperparameter as `genies interventions show` prints it."""

    name: str
    type: str
    default: Any
    help: str
    presets: dict[str, Any]


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
        known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
        if known is not None:
            unknown = sorted(set(values) - known)
            if unknown:
                raise TypeError(f"intervention {cls.name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                                f"valid: {', '.join(sorted(known)) or '(none)'}")
        return cls(**values)

    @classmethod
    def describe(cls) -> list[HParamInfo]:
        """Every hyperparameter with its default, help text and per-preset values."""
        if not dataclasses.is_dataclass(cls):
            return []
        rows = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            presets = {p: values[f.name] for p, values in cls.presets.items() if f.name in values}
            rows.append(HParamInfo(f.name, type_name, default, f.metadata.get("help", ""), presets))
        return rows

    def __post_init__(self) -> None:
        """Enforce each hyperparameter's `choices` (declared with `hparam(..., choices=...)`), so
        a bad value fails when the method is configured, not halfway through a run. Subclasses
        with checks of their own call `super().__post_init__()` first."""
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"{self.name or type(self).__name__}: {f.name} must be one of "
                                 f"{', '.join(map(repr, choices))}, got {getattr(self, f.name)!r}")

    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    @classmethod
    def code_fingerprint(cls) -> bytes:
        """The code whose change must invalidate this method's cached jobs: the file defining
        the class (a user's own file too), its genies base classes, and every genies module
        those import, directly or not, at module level or inside functions (the scoring engine
        for zero_shot, lora's helpers for prompt_tuning). Nothing else, so that editing one
        method reruns its jobs and nobody else's. Adapters that run outside code add that code."""
        roots = [k.__module__ for k in cls.__mro__ if k.__module__.startswith("genies.")]
        own = inspect.getsourcefile(cls)
        files = set(_genies_sources(tuple(roots))) | ({own} if own else set())
        return b"".join(Path(f).read_bytes() for f in sorted(files))

    @abstractmethod
    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        """Learn from the source's train split. Must never read any other distribution's labels."""

    @abstractmethod
    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        """Score every evaluation pair of `dist`'s `split`. Must not read the labels' values
        except to lay out pairs (use `Distribution.eval_pairs`)."""


@functools.lru_cache(maxsize=None)
def _genies_sources(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Source files of the given genies modules and of every genies module they import, found
    by reading each file's import statements (so imports inside functions count too)."""
    todo, seen, files = list(modules), set(), set()
    while todo:
        name = todo.pop()
        if name in seen or not (name == "genies" or name.startswith("genies.")):
            continue
        seen.add(name)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # `from genies.x import function`: not a module
            continue
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue
        files.add(spec.origin)
        package = name if spec.submodule_search_locations else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                todo.append(base)
                todo.extend(f"{base}.{alias.name}" for alias in node.names)  # submodules, if they are
    return tuple(sorted(files))


_T = TypeVar("_T", bound=type[Intervention])
_REGISTRY: dict[str, type[Intervention]] = {}
# Modules of this package that hold shared machinery rather than one method each.
_NOT_METHODS = {"base"}
# Interventions that are resolvable by name but not listed among the methods: adapters that
# need a folder to mean anything. name -> module that registers it.
_ADAPTERS = {"legacy": "genies.interventions._legacy"}


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
            try:
                ep.load()
            except Exception as err:  # a broken plugin must not hide the built-in methods
                print(f"genies: could not load intervention plugin {ep.name!r} ({ep.value}): {err}",
                      file=sys.stderr)


def available() -> dict[str, type[Intervention]]:
    """Every registered method: built-ins, plugins, and classes registered at run time
    (adapters such as `legacy` are resolvable by name but not listed)."""
    _load_all()
    return {k: v for k, v in sorted(_REGISTRY.items()) if k not in _ADAPTERS}


def get_intervention(name: str) -> type[Intervention]:
    if name in _ADAPTERS and name not in _REGISTRY:
        importlib.import_module(_ADAPTERS[name])
    if name not in _REGISTRY and name in _builtin_modules():
        importlib.import_module(f"genies.interventions.{name}")
    if name not in _REGISTRY:
        _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown intervention {name!r}; available: {', '.join(available())} "
                       "(or a folder with the original GENIES train.py/eval.py)")
    return _REGISTRY[name]


def load_intervention(name_or_path: str | Path, preset: str | None = None, **overrides: Any) -> Intervention:
    """A configured intervention from a registered name, or from a folder written for the
    original GENIES (it holds `eval.py`, optionally `train.py`), which runs through the
    `legacy` adapter."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "eval.py").exists():
        return get_intervention("legacy").from_preset(preset, folder=str(path.resolve()), **overrides)
    if path.is_dir() or os.sep in str(name_or_path):
        raise FileNotFoundError(f"{path}: not an intervention folder (no eval.py), and not a registered name")
    return get_intervention(str(name_or_path)).from_preset(preset, **overrides)
