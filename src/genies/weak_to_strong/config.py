"""The weak-to-strong configuration: one validated dataclass for `genies w2s` and `genies.w2s`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genies.data.shift import Shift
from genies.errors import ConfigError, UnknownNameError
from genies.interventions._soft_loss import LOSSES
from genies.models.placement import Placement
from genies.pipeline.config import BUDGETS, TARGET_TUNED_MODES, Budget

LABELS = ("soft", "hard")


@dataclass(frozen=True)
class W2SConfig:
    """What a weak-to-strong run computes and where it writes (docs/w2s.md).

    `weak` and `strong` are model specs as `genies run --model` takes them, plus `NAME:layers=K`
    (the first K decoder layers); `method` trains the student and the ceiling, `weak_method` (default
    `method`) the weak supervisor. `labels` says what the student is handed: `soft` (the weak
    supervisor's probabilities, which reward-model losses read) or `hard` (its choices). `losses`
    (one student each, sharing the weak labels and the ceiling) and `aux_max` are the students'
    losses (reward-model methods; a single name is one loss); the ceiling always trains with
    `xent`, so runs with any losses share it. `target_tuned` picks the target-tuned reference of
    each target's DE as `genies run --target-tuned` does (`none`: no DE, and no zero-shot or
    reference jobs)."""

    out: Path
    weak: str = "default:layers=4"
    strong: str = "default"
    method: str = "lora"
    weak_method: str | None = None
    losses: str | tuple[str, ...] = ("xent",)
    aux_max: float = 0.75
    labels: str = "soft"
    target_tuned: str = "default"
    shifts: str | tuple[Shift, ...] = "genies"
    preset: str = "cpu"
    budget: str | None = None
    max_train: int | None = None
    max_eval: int | None = None
    seed: int = 0
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path | None = None
    data_root: Path | None = None

    def __post_init__(self) -> None:
        if self.out is None:
            raise ConfigError("a weak-to-strong run needs an output folder (--out)")
        object.__setattr__(self, "out", Path(self.out))
        if not isinstance(self.shifts, str):
            object.__setattr__(self, "shifts", tuple(self.shifts))
        losses = (self.losses,) if isinstance(self.losses, str) else tuple(dict.fromkeys(self.losses))
        object.__setattr__(self, "losses", losses)
        if not losses:
            raise ConfigError("a weak-to-strong run needs at least one student loss (--loss)")
        for loss in losses:
            if loss not in LOSSES:
                raise UnknownNameError("loss", loss, LOSSES)
        if self.labels not in LABELS:
            raise UnknownNameError("label kind", self.labels, LABELS)
        if self.target_tuned not in TARGET_TUNED_MODES:
            raise UnknownNameError("target-tuned mode", self.target_tuned, TARGET_TUNED_MODES)
        if not 0.0 <= self.aux_max <= 1.0:
            raise ConfigError(f"--aux-max must be in [0, 1], got {self.aux_max}")
        if self.budget is not None and self.budget not in BUDGETS:
            raise UnknownNameError("budget", self.budget, BUDGETS)
        for name in ("max_train", "max_eval"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 2 (two halves), got {value}")
        self.placement  # noqa: B018 - checks device and dtype now

    @property
    def weak_spec(self) -> str:
        return self.weak_method or self.method

    @property
    def placement(self) -> Placement:
        return Placement(device=self.device, dtype=self.dtype)

    @property
    def example_budget(self) -> Budget:
        """The budget's caps with --max-train / --max-eval on top (as `genies run`'s)."""
        caps = BUDGETS[self.budget or (self.preset if self.preset in BUDGETS else "paper")]
        return Budget(self.max_train if self.max_train is not None else caps.max_train,
                      self.max_eval if self.max_eval is not None else caps.max_eval, caps.synthetic_size)
