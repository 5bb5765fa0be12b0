"""What a sweep varies: a grid of values or ranges for a model-based search, parsed from the command line."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from genies.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A search range [low, high] of one hyperparameter; `log` samples it on a log scale (a
    learning rate). An integer hyperparameter is searched over the integers of the range."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ConfigError(f"a search range needs LOW < HIGH, got {self.low:g}:{self.high:g}")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log search range needs LOW > 0, got {self.low:g}")


def parse_grid(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`learning_rate=1e-5,1e-4` (one item per parameter) -> {"learning_rate": ("1e-5", "1e-4")}.
    Values stay text: the method parses them against its hyperparameter's type."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        listed = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name or not listed:
            raise ConfigError(f"--grid {item!r}: expected PARAM=V1,V2,..., e.g. --grid learning_rate=1e-5,1e-4")
        if name in grid:
            raise ConfigError(f"--grid names {name!r} twice")
        grid[name] = listed
    return grid


def parse_search(items: Sequence[str]) -> dict[str, Range]:
    """`learning_rate=1e-5:1e-3:log` -> {"learning_rate": Range(1e-5, 1e-3, log=True)}."""
    space: dict[str, Range] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        parts = spec.split(":")
        scale = parts.pop() if len(parts) == 3 else "linear"
        try:
            low, high = (float(v) for v in parts)
        except ValueError:
            low = high = math.nan
        if not sep or not name or math.isnan(low) or scale not in ("log", "linear"):
            raise ConfigError(f"--search {item!r}: expected PARAM=LOW:HIGH or PARAM=LOW:HIGH:log, "
                              "e.g. --search learning_rate=1e-5:1e-3:log")
        space[name] = Range(low, high, scale == "log")
    return space


def grid_points(grid: Mapping[str, Sequence[str]]) -> Iterator[dict[str, str]]:
    """Every combination of the grid's values, the first parameter varying slowest."""
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        yield dict(zip(names, values, strict=True))
