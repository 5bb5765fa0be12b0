"""The judge pages' figures, in the report's style (`genies.report.plots`): one judge's accuracy
per distribution beside the length-only rules, and the judges' mean accuracies side by side.

Accuracy is drawn against the 0.5 of a coin, with each value's 95 % interval as a whisker; a
missing interval (NaN) draws no whisker rather than failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from genies.report.leaderboard import JudgeRun
from genies.report.plots import RUN_COLORS, STYLE, no_data

HORIZONTAL = {**STYLE, "axes.grid.axis": "x"}
LENGTH_COLORS = ("#9aa3ad", "#c9ced6")  # prefer the longer / the shorter response


def _whiskers(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """matplotlib's [2, n] error lengths; 0 (no whisker) where a bound is missing."""
    return np.vstack([np.where(np.isfinite(low), mean - low, 0.0), np.where(np.isfinite(high), high - mean, 0.0)])


def _chance(ax: object) -> None:
    ax.axvline(0.5, color="#555", linewidth=0.8, linestyle="--")  # type: ignore[attr-defined]
    ax.set_xlim(-0.02, 1.02)  # type: ignore[attr-defined]


def accuracy_by_distribution(judge: JudgeRun) -> Figure:
    """The judge's accuracy on each distribution (interval as a whisker) and the accuracy of
    preferring the longer / the shorter response, one row per distribution, in judge.json's order."""
    rows = judge.results.distributions
    if not rows:
        return no_data(judge.label)
    acc = np.array([r.accuracy for r in rows])
    low, high = np.array([r.ci_low for r in rows]), np.array([r.ci_high for r in rows])
    y = np.arange(len(rows))[::-1]
    with rc_context(HORIZONTAL):
        fig = Figure(figsize=(6.4, 1.1 + 0.22 * len(rows)), layout="constrained")
        ax = fig.subplots()
        ax.scatter([r.length_longer_accuracy for r in rows], y, marker="|", s=60, color=LENGTH_COLORS[0],
                   label="prefer the longer response", zorder=2)
        ax.scatter([r.length_shorter_accuracy for r in rows], y, marker="|", s=60, color=LENGTH_COLORS[1],
                   label="prefer the shorter response", zorder=2)
        ax.errorbar(acc, y, xerr=_whiskers(acc, low, high), fmt="o", markersize=4, color=RUN_COLORS[0],
                    ecolor=RUN_COLORS[0], elinewidth=1, capsize=2, label=judge.label, zorder=3)
        _chance(ax)
        ax.set_yticks(y, [r.distribution for r in rows], fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("pair accuracy on the test split (95 % interval over prompts)")
        ax.set_title(judge.label, loc="left")
        fig.legend(loc="outside lower center", ncols=3, fontsize=7)
    return fig


def leaderboard(judges: Sequence[JudgeRun], scopes: Sequence[str]) -> Figure:
    """Each judge's mean accuracy with its interval over distributions, best at the top: one panel
    for all distributions, then one per scope in `scopes` (categories)."""
    if not any(math.isfinite(j.accuracy) for j in judges):
        return no_data("mean accuracy")
    panels = ["all", *scopes]
    cols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / cols)
    y = np.arange(len(judges))[::-1]
    with rc_context(HORIZONTAL):
        fig = Figure(figsize=(2.2 + 2.3 * cols, nrows * (0.9 + 0.28 * len(judges)) + 0.3), layout="constrained")
        axes = fig.subplots(nrows, cols, squeeze=False, sharey=True).ravel()
        for ax, scope in zip(axes, panels, strict=False):
            found = [j.scope(scope) for j in judges]
            mean = np.array([s.mean_accuracy if s else np.nan for s in found])
            low = np.array([s.ci_low if s else np.nan for s in found])
            high = np.array([s.ci_high if s else np.nan for s in found])
            colors = [RUN_COLORS[k % len(RUN_COLORS)] for k in range(len(judges))]
            ax.barh(y, np.nan_to_num(mean), 0.7, xerr=_whiskers(mean, low, high), color=colors, capsize=2,
                    error_kw={"elinewidth": 0.9, "ecolor": "#333"})
            _chance(ax)
            ax.set_title("all distributions" if scope == "all" else scope.split(":", 1)[1].replace("_", " "))
            ax.set_yticks(y, [j.label for j in judges], fontsize=8)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes[(nrows - 1) * cols:]:
            ax.set_xlabel("mean accuracy")
    return fig
