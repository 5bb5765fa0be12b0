"""The intervention contract: hyperparameters in, a typed fitted state out, label-free scores back.

Reads like a scikit-learn estimator. A method is a dataclass of hyperparameters (`hparam`
fields). `fit(lm, train, ctx)` learns from the source's train split (the only split it is
handed) and returns a frozen dataclass of what it learned; shared code saves it
(`genies.interventions.fitted`). `scorer(lm, fitted, ctx)` prepares the fitted state once per
worker (an adapter attached, a model in eval mode) and returns a function that scores any
number of `EvalSet`s - queries without labels - as `Scores`. The pipeline pairs those scores
with the labels, so "no method reads target labels" holds by construction.

`version` names the method's results: bump it when a change alters what the method computes
(tests/test_method_versions.py fails when a method's code changes and its version does not).
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from genies.data.schema import Distribution, EvalSet
from genies.interventions import hparams as H
from genies.interventions.context import FitContext
from genies.interventions.scores import Scores

if TYPE_CHECKING:
    from typing import Self

    from genies.models.base import LoadedModel
    from genies.models.placement import Placement

FAMILIES = ("baseline", "prompting", "fine-tuning", "representation", "external")
F = TypeVar("F")
Scorer = Callable[[EvalSet], Scores]


@dataclass(frozen=True)
class Unfitted:
    """The fitted state of methods that learn nothing (zero-shot, random)."""


class Intervention(ABC, Generic[F]):
    """Base class. Subclasses are dataclasses whose fields are the hyperparameters."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[int] = 1
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    needs_training_data: ClassVar[bool] = True
    listed: ClassVar[bool] = True  # False for adapters that mean something only with an argument
    # False for methods that bring their own models (external judges): `fit` and `scorer` then get
    # lm=None, the run's model is never loaded for them and their job keys do not name it.
    uses_run_model: ClassVar[bool] = True

    # -- configuration ------------------------------------------------------------------------
    @classmethod
    def configure(cls, preset: str | None = None, **overrides: Any) -> Self:
        """The method with a named preset's hyperparameters (`paper`, `cpu`, ...) and explicit
        overrides on top, values parsed and checked (strings from the command line included)."""
        return cls(**H.configure(cls, cls.name, cls.presets, preset, overrides))

    @classmethod
    def describe(cls) -> list[H.HParamInfo]:
        """Every hyperparameter with its default, help text, choices and per-preset values."""
        return H.describe(cls, cls.presets)

    def __post_init__(self) -> None:
        """Check every field against its type and `choices`, so a bad value fails when the
        method is configured, not halfway through a run. Subclasses with checks of their own
        call `super().__post_init__()` first."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = H.check_value(self.name or type(self).__name__, f.name, getattr(self, f.name),
                                  hints.get(f.name, Any), f.metadata.get("choices"))
            object.__setattr__(self, f.name, value)

    def hparams(self) -> dict[str, Any]:
        """Every hyperparameter, JSON-normalised: enough to rebuild the method in any process."""
        return H.all_values(self)

    def key_hparams(self) -> dict[str, Any]:
        """The hyperparameters that enter cache keys (execution settings left out)."""
        return H.result_values(self)

    def code_version(self) -> str:
        """What names this method's code in cache keys; adapters that run outside code add a
        digest of that code."""
        return str(self.version)

    @property
    def label(self) -> str:
        """The method's name in tables and reports."""
        return self.name

    def check_placement(self, placement: Placement) -> None:
        """Refuse, before a run starts, a placement this method cannot work with (raise a
        `ConfigError` naming the fix); most methods work with any."""

    @property
    def reads_eval_labels(self) -> bool:
        """True only for methods that cannot score without labels (they say why in their docs);
        their `EvalSet`s then carry `labels`."""
        return False

    @classmethod
    def fitted_type(cls) -> type:
        """The dataclass `fit` returns, read from its return annotation."""
        hint = cls.fit.__annotations__.get("return")
        if isinstance(hint, str):  # postponed annotations: evaluate the return type alone
            hint = eval(hint, cls.fit.__globals__)  # noqa: S307 - the method's own source
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            raise TypeError(f"{cls.__qualname__}.fit must be annotated to return a dataclass, got {hint!r}")
        return hint

    # -- the two steps ------------------------------------------------------------------------
    @abstractmethod
    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> F:
        """Learn from `train` (the source's train split; its test split is empty)."""

    @abstractmethod
    def scorer(self, lm: LoadedModel, fitted: F, ctx: FitContext) -> Scorer:
        """Prepare `fitted` once and return a function scoring any `EvalSet` of this worker."""
