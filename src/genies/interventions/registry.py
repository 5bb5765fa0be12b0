"""Methods by name: the built-in modules, plugins through entry points, and spec strings.

Built-in methods are the public modules of `genies.interventions` (one file each), imported on
first use so that `genies --help` stays fast and adding a method touches no central list.
Packages add methods through the `genies.interventions` entry-point group; genies' own `legacy`
adapter is registered that way too. A spec string `NAME:ARGUMENT` (`legacy:PATH`) names a method
whose class turns the argument into hyperparameters (`spec_overrides`), so any process - a Ray
worker included - resolves it without run-time registration.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from importlib.metadata import entry_points
from typing import Any, TypeVar

from genies.errors import UnknownNameError
from genies.interventions.base import FAMILIES, Intervention

ENTRY_POINT_GROUP = "genies.interventions"
# Modules of the package that hold the contract and shared machinery, not a method each.
INFRASTRUCTURE = {"base", "context", "fitted", "hparams", "registry", "scores", "versions"}

_T = TypeVar("_T", bound=type[Intervention])
_REGISTRY: dict[str, type[Intervention]] = {}


def register(name: str, *, family: str, description: str) -> Any:
    """Class decorator: `@register("mms", family="representation", description="...")`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")

    def decorate(cls: _T) -> _T:
        known = _REGISTRY.get(name)
        # The same class again (its module reloaded) replaces itself; any other class is a clash,
        # even one with the same class name in another module.
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"intervention {name!r} is already registered by {known.__module__}")
        cls.name, cls.family, cls.description = name, family, description
        _REGISTRY[name] = cls
        return cls

    return decorate


# The built-in methods' registered names, so a name can be checked without importing the methods
# (torch, transformers: seconds); tests/test_interventions_base.py keeps it equal to the registry.
BUILTIN_NAMES = ("ccs", "cra", "few_shot", "full_fine_tune", "lat", "logistic", "lora", "mms", "prompt_tuning",
                 "random", "zero_shot")
# genies' own entry points that mean something only as a spec (their classes set `listed = False`;
# tests/test_interventions_base.py keeps the two equal), so a refusal lists the others (tfidf) unimported.
SPEC_ONLY = ("dpo", "judge", "legacy", "rm")
LEGACY_HINT = (" (or a spec: legacy:FOLDER for a folder written for the original GENIES; rm:MODEL, "
               "dpo:POLICY[,REF] or judge:MODEL for an external judge)")


def check_names(specs: list[str]) -> None:
    """Refuse an unknown intervention name in well under a second, before anything heavy is
    imported: built-in names, plugin entry points and classes registered at run time are known
    by name alone (a spec's part before `:`; a legacy folder is given as `legacy:PATH`)."""
    known = {*BUILTIN_NAMES, *_REGISTRY, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}
    for spec in specs:
        name = spec.partition(":")[0]
        if name not in known:
            plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(SPEC_ONLY)
            listed = {*BUILTIN_NAMES, *plugins, *(n for n, cls in _REGISTRY.items() if cls.listed)}
            raise UnknownNameError("intervention", name, listed, LEGACY_HINT)


def builtin_modules() -> list[str]:
    package = importlib.import_module("genies.interventions")
    return [m.name for m in pkgutil.iter_modules(package.__path__)
            if m.name not in INFRASTRUCTURE and not m.name.startswith("_")]


def _load_plugins() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                ep.load()
            except Exception as err:  # a broken plugin must not hide the built-in methods
                print(f"genies: could not load intervention plugin {ep.name!r} ({ep.value}): {err}", file=sys.stderr)


def _load_all() -> None:
    for module in builtin_modules():
        importlib.import_module(f"genies.interventions.{module}")
    _load_plugins()


def available() -> dict[str, type[Intervention]]:
    """Every listed method: built-ins, plugins and classes registered at run time."""
    _load_all()
    return {k: v for k, v in sorted(_REGISTRY.items()) if v.listed}


def get_intervention(name: str) -> type[Intervention]:
    """The class registered as `name` (a spec's part before `:`), importing only what it needs."""
    name = name.partition(":")[0]
    if name not in _REGISTRY and name in builtin_modules():
        importlib.import_module(f"genies.interventions.{name}")
    if name not in _REGISTRY:
        _load_plugins()
    if name not in _REGISTRY:
        _load_all()
    if name not in _REGISTRY:
        raise UnknownNameError("intervention", name, available(), LEGACY_HINT)
    return _REGISTRY[name]


def load_intervention(spec: str, preset: str | None = None, **overrides: Any) -> Intervention:
    """A configured method from a name or a spec string (`mms`, `legacy:/path/to/folder`)."""
    name, colon, argument = spec.partition(":")
    cls = get_intervention(name)
    if colon:
        from_spec = getattr(cls, "spec_overrides", None)
        if from_spec is None:
            raise UnknownNameError("intervention", spec, available(), f" ({name!r} takes no ':' argument)")
        overrides = {**from_spec(argument), **overrides}
    return cls.configure(preset, **overrides)
