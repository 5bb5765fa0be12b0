"""Hyperparameter sweeps on source data only (docs/sweeps.md)."""

from genies.sweeps.space import Range, parse_grid, parse_search
from genies.sweeps.sweep import SweepConfig, SweepResult, Trial, load_sweep, sweep

__all__ = ["Range", "SweepConfig", "SweepResult", "Trial", "load_sweep", "parse_grid", "parse_search", "sweep"]
