"""The report's figures (matplotlib, no pyplot state): DE bars, DE heatmap, reliability, published.

Each builder returns a `Figure`; `save_figure` writes it as PNG and SVG for papers and returns
the SVG text the HTML page inlines, so the page and the files always show the same plot.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from genies._io import write_atomic
from genies.metrics import expected_calibration_error
from genies.report.load import Run
from genies.report.published import PublishedComparison, PublishedComparisons

STYLE = {
    "svg.fonttype": "none",  # keep text as text: smaller files, selectable labels
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.7,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "figure.dpi": 100,
}
RUN_COLORS = ("#3b6fb6", "#e0823d", "#4e9a5b", "#b8474d", "#7d62b3", "#8c6d4f", "#d36aa8", "#6c7a89")
REFERENCE_COLORS = ("#c9ced6", "#a9b1bd", "#8894a3", "#67768a")


@dataclass(frozen=True)
class ReliabilityBins:
    """Pairs binned by the model's confidence in the response it ranks first (0.5..1)."""

    confidence: np.ndarray  # mean confidence per non-empty bin
    accuracy: np.ndarray  # fraction of those pairs where the preferred response won
    count: np.ndarray
    ece: float  # the results table's ECE (`metrics.expected_calibration_error`), whatever the diagram's bins


def reliability_bins(p_preferred: Sequence[float] | np.ndarray, n_bins: int = 10) -> ReliabilityBins:
    """Bin pairs by confidence max(p, 1-p); a pair is right when p > 0.5 (a tie counts half).

    Pairwise probabilities have no natural 'positive class', so the diagram uses the confidence
    in the model's own pick, the symmetric form of a binary reliability diagram.
    """
    p = np.asarray(p_preferred, dtype=np.float64)
    p = p[~np.isnan(p)]
    confidence = np.maximum(p, 1 - p)
    correct = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    conf, acc, count = [], [], []
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            conf.append(confidence[mask].mean())
            acc.append(correct[mask].mean())
            count.append(int(mask.sum()))
    ece = expected_calibration_error(p) if p.size else float("nan")
    return ReliabilityBins(np.array(conf), np.array(acc), np.array(count, dtype=np.int64), ece)


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _aggregate(run: Run, intervention: str, scope: str) -> tuple[float, float, float] | None:
    """(mean, ci_low, ci_high) from the run's aggregates; None where no row had a finite DE."""
    agg = run.results.aggregate(intervention, scope)
    return None if agg is None else (agg.mean_de, agg.ci_low, agg.ci_high)


def no_data(title: str) -> Figure:
    """A small figure saying there is nothing to plot (every job of the run failed), so the page
    and the figure files keep their places instead of the report failing."""
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(4.0, 1.2), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.4, "no data", ha="center", va="center", fontsize=11, color="#777")
        ax.set_title(title, loc="left")
    return fig


def _interventions(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(i for run in runs for i in run.interventions))


def categories(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.category for run in runs for r in run.rows))


def de_bars(runs: Sequence[Run]) -> Figure:
    """Mean DE per intervention with its confidence interval: all shifts, then each category."""
    if not any(run.aggregates for run in runs):
        return no_data("mean differential elicitation")
    interventions = _interventions(runs)
    scopes = ["all"] + [f"category:{c}" for c in categories(runs)]
    nrows, ncols = _grid(len(scopes), 5)
    width = max(2.4, 0.3 * len(interventions) * max(1, len(runs)) ** 0.5 + 0.9)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width * ncols, 2.3 * nrows + 0.4), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
        bar = 0.8 / len(runs)
        x = np.arange(len(interventions))
        for ax, scope in zip(axes, scopes, strict=False):
            for k, run in enumerate(runs):
                stats = [_aggregate(run, i, scope) for i in interventions]
                mean = np.array([s[0] if s else np.nan for s in stats])
                lo = np.array([s[1] if s else np.nan for s in stats])
                hi = np.array([s[2] if s else np.nan for s in stats])
                err = np.vstack([np.where(np.isnan(lo), 0, mean - lo), np.where(np.isnan(hi), 0, hi - mean)])
                ax.bar(
                    x + (k - (len(runs) - 1) / 2) * bar,
                    mean,
                    bar * 0.92,
                    yerr=err,
                    capsize=2,
                    color=RUN_COLORS[k % len(RUN_COLORS)],
                    error_kw={"elinewidth": 0.9, "ecolor": "#333"},
                    label=run.label,
                )
            ax.axhline(0, color="#555", linewidth=0.8)
            ax.set_title("all shifts" if scope == "all" else scope.split(":", 1)[1].replace("_", " "))
            ax.set_xticks(x, interventions, rotation=35, ha="right")
        for ax in axes[len(scopes) :]:
            ax.set_visible(False)
        for row in range(nrows):
            axes[row * ncols].set_ylabel("mean differential elicitation")
        if len(runs) > 1:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=min(4, len(runs)))
    return fig


def _shift_order(run: Run) -> list[tuple[str, str, str]]:
    """(category, source, target) grouped by category in first-seen order, rows in run order."""
    cats = list(dict.fromkeys(r.category for r in run.rows))
    seen = dict.fromkeys((r.category, r.source, r.target) for r in run.rows)
    return [s for c in cats for s in seen if s[0] == c]


def de_heatmap(run: Run) -> Figure:
    """DE for every shift (rows, grouped by category) x intervention (columns) of one run, each
    cell with its prompt-level interval under the value, so a colour is read with its noise."""
    if not run.rows:
        return no_data(run.label)
    shifts = _shift_order(run)
    interventions = run.interventions
    values = np.full((len(shifts), len(interventions)), np.nan)
    low, high = values.copy(), values.copy()
    index = {s[1:]: i for i, s in enumerate(shifts)}
    for r in run.rows:
        cell = index[(r.source, r.target)], interventions.index(r.intervention)
        values[cell], low[cell], high[cell] = r.differential_elicitation, r.de_ci_low, r.de_ci_high
    bound = max(0.05, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.05)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(4.6 + 0.85 * len(interventions), max(3.0, 1.6 + 0.3 * len(shifts))), layout="constrained")
        ax = fig.subplots()
        image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest")
        ax.set_xticks(np.arange(len(interventions)), interventions, rotation=35, ha="right")
        ax.set_yticks(np.arange(len(shifts)), [f"{s} → {t}" for _, s, t in shifts], fontsize=7)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        for i in range(len(shifts)):
            for j in range(len(interventions)):
                v = values[i, j]
                if np.isfinite(v):
                    color = "white" if abs(v) > 0.6 * bound else "#222"
                    ax.text(j, i - 0.14, f"{v:+.2f}", ha="center", va="center", fontsize=6, color=color)
                    if np.isfinite(low[i, j]):
                        ax.text(j, i + 0.22, f"[{low[i, j]:+.2f}, {high[i, j]:+.2f}]", ha="center", va="center",
                                fontsize=4.5, color=color)
        # Category names on a right-hand axis, so the layout engine makes room for them before the colorbar.
        start, centers, names = 0, [], []
        for k, (cat, _, _) in enumerate(shifts + [("", "", "")]):
            if k == len(shifts) or (k and cat != shifts[k - 1][0]):
                ax.axhline(k - 0.5, color="white", linewidth=2)
                centers.append((start + k - 1) / 2)
                names.append(shifts[start][0].replace("_", " "))
                start = k
        side = ax.secondary_yaxis("right")
        side.set_yticks(centers, names, fontsize=7, color="#555")
        side.tick_params(length=0)
        side.spines["right"].set_visible(False)
        fig.colorbar(image, ax=ax, location="bottom", shrink=0.6, aspect=35, label="differential elicitation")
        ax.set_title(run.label, loc="left")
    return fig


def pooled_target_probabilities(run: Run, intervention: str) -> np.ndarray:
    """Every target pair probability of one intervention, each evaluation file counted once."""
    files = dict.fromkeys(r.target_evaluation for r in run.rows if r.intervention == intervention)
    parts = [run.evaluation(f).p_preferred for f in files]
    return np.concatenate(parts) if parts else np.zeros(0)


def reliability(runs: Sequence[Run], n_bins: int = 10) -> Figure:
    """A reliability diagram per intervention, pooled over the run's target evaluations."""
    interventions = [i for i in _interventions(runs) if any(r.intervention == i for run in runs for r in run.rows)]
    if not interventions:
        return no_data("calibration")
    nrows, ncols = _grid(len(interventions), 5)
    with matplotlib.rc_context({**STYLE, "axes.grid.axis": "both"}):
        fig = Figure(figsize=(2.6 * ncols, 2.7 * nrows + 0.3), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, intervention in zip(axes, interventions, strict=False):
            ax.plot([0.5, 1], [0.5, 1], linestyle="--", color="#888", linewidth=0.8)
            for k, run in enumerate(runs):
                bins = reliability_bins(pooled_target_probabilities(run, intervention), n_bins)
                if not bins.count.size:
                    continue
                sizes = 12 + 120 * bins.count / bins.count.max()
                color = RUN_COLORS[k % len(RUN_COLORS)]
                ax.plot(
                    bins.confidence,
                    bins.accuracy,
                    color=color,
                    linewidth=1.2,
                    label=f"{run.label}: ECE {bins.ece:.3f}" if len(runs) > 1 else f"ECE {bins.ece:.3f}",
                )
                ax.scatter(
                    bins.confidence,
                    bins.accuracy,
                    s=sizes,
                    color=color,
                    alpha=0.8,
                    zorder=3,
                    edgecolors="white",
                    linewidths=0.5,
                )
            ax.set_xlim(0.48, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(intervention)
            ax.set_xlabel("confidence in its pick")
            ax.legend(loc="lower right", fontsize=7)
        for ax in axes[len(interventions) :]:
            ax.set_visible(False)
        for row in range(nrows):
            axes[row * ncols].set_ylabel("accuracy")
    return fig


def reference_bars(runs: Sequence[Run], compared: Sequence[PublishedComparisons]) -> Figure | None:
    """Our mean DE beside each published model's, one panel per (run, published model), drawn only
    for the like-for-like pairs of `genies.report.published` (`compared[k]` belongs to `runs[k]`);
    a published bar with a caveat is hatched and its label starred. None when nothing is comparable."""
    panels = [
        (k, model, [c for c in done.comparisons if c.model == model])
        for k, done in enumerate(compared)
        for model in dict.fromkeys(c.model for c in done.comparisons)
    ]
    if not panels:
        return None
    widths = [max(2.0, 0.75 * len(group) + 0.5) for _, _, group in panels]
    published = {"facecolor": REFERENCE_COLORS[1], "edgecolor": "#555", "linewidth": 0.5}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(sum(widths) + 0.8, 5.5), 3.8), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True, width_ratios=widths).ravel()
        for ax, (k, model, group) in zip(axes, panels, strict=True):
            x = np.arange(len(group))
            ax.bar(x - 0.2, [c.ours_mean_de for c in group], 0.38, color=RUN_COLORS[k % len(RUN_COLORS)])
            for i, c in enumerate(group):
                ax.bar(i + 0.2, c.published_mean_de, 0.38, hatch="///" if c.caveat else None, **published)
            ax.axhline(0, color="#555", linewidth=0.8)
            ax.set_xticks(x, [_reference_tick(c) for c in group], fontsize=7)
            ax.set_xlim(-0.6, len(group) - 0.4)  # the same bar width in every panel
            ax.set_title(model + (f" · {runs[k].label}" if len(runs) > 1 else ""), loc="left")
        axes[0].set_ylabel("mean differential elicitation")
        shown = dict.fromkeys(k for k, _, _ in panels)
        handles = [Patch(color=RUN_COLORS[k % len(RUN_COLORS)]) for k in shown]
        labels = [f"ours ({runs[k].label})" for k in shown]
        handles.append(Patch(**published))
        labels.append("published (panel title: the model)")
        if any(c.caveat for _, _, group in panels for c in group):
            handles.append(Patch(hatch="///", **published))
            labels.append("* with a caveat (listed beside the figure)")
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return fig


def _reference_tick(c: PublishedComparison) -> str:
    """`lat` / `as lat_stim_2` / `15 shifts`, starred when the comparison has a caveat."""
    lines = [c.intervention + (" *" if c.caveat else "")]
    if c.published != c.intervention:
        lines += textwrap.wrap(f"as {c.published}", 16)
    return "\n".join([*lines, f"{c.n_shifts} shifts"])


def save_figure(fig: Figure, folder: Path, name: str) -> str:
    """Write `name`.png and `name`.svg into folder; return the SVG for inlining (no XML prolog)."""
    folder.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        svg, png = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None, "Type": None, "Format": None})
        fig.set_layout_engine("none")  # keep the positions just computed: the PNG needs no second layout pass
        fig.savefig(png, format="png", dpi=160)
    write_atomic(folder / f"{name}.svg", svg.getvalue())
    write_atomic(folder / f"{name}.png", png.getvalue())
    text = svg.getvalue().decode("utf-8")
    text = re.sub(r"^<\?xml[^>]*>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return text


# The GENIES paper's target-data ablation (30B LoRA, target accuracy by fraction of target data
# mixed into training), keyed by the shift it was run on; drawn where a run has the same shift.
PAPER_TARGET_MIX: dict[tuple[str, str], dict[float, float]] = {
    ("alpaca_short", "alpaca_long"): {0.01: 0.38, 0.05: 0.62, 0.10: 0.67, 0.35: 0.95},
    ("alpaca_mmlu", "wrong_arc"): {0.01: 0.50, 0.05: 0.84, 0.10: 0.89, 0.35: 0.92},
    ("alpaca_mmlu", "truthful_qa"): {0.01: 0.68, 0.05: 0.80, 0.10: 0.90, 0.35: 0.92},
}


MIX_TITLE_CHARS = 36  # a panel title longer than this overruns the next panel's at 3.4 inches a panel


def target_mix(runs: Sequence[Run]) -> Figure | None:
    """Target accuracy against the fraction of target data mixed into training, one panel per
    (run, shift) that has mixing rows: a line per intervention (fraction 0 is its ordinary row),
    the zero-shot baseline and A_tt as reference lines, the paper's 30B LoRA values as points
    where the shift matches. None when no run has a mixing row."""
    panels = [(k, shift) for k, run in enumerate(runs)
              for shift in dict.fromkeys((r.source, r.target) for r in run.rows if r.target_mix)]
    if not panels:
        return None
    nrows, ncols = _grid(len(panels), 3)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(6.0, 3.4 * ncols + 0.4), 2.9 * nrows + 0.9), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
        for ax, (k, (source, target)) in zip(axes, panels):
            rows = [r for r in runs[k].rows if (r.source, r.target) == (source, target)]
            for i, name in enumerate(dict.fromkeys(r.intervention for r in rows)):
                mine = sorted((r.target_mix, r.generalization_accuracy) for r in rows if r.intervention == name)
                ax.plot(*zip(*mine, strict=True), "o-", color=RUN_COLORS[i % len(RUN_COLORS)], markersize=4,
                        label=name)
            ax.axhline(rows[0].baseline_accuracy, color="#888", linestyle="--", linewidth=0.9, label="zero-shot")
            if math.isfinite(rows[0].target_tuned_capability):
                ax.axhline(rows[0].target_tuned_capability, color="#555", linestyle=":", linewidth=1.1,
                           label="A_tt (target-tuned)")
            paper = PAPER_TARGET_MIX.get((source, target))
            if paper:
                ax.plot(list(paper), list(paper.values()), "x", color="#111", markersize=6,
                        label="paper, 30B LoRA")
            arrow = " → " if len(source) + len(target) <= MIX_TITLE_CHARS else " →\n"  # long names: two lines
            ax.set_title(f"{source}{arrow}{target}" + (f" · {runs[k].label}" if len(runs) > 1 else ""), loc="left")
            ax.set_xlabel("fraction of target data in training")
            ax.set_ylim(0, 1.02)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for row in range(nrows):
            axes[row * ncols].set_ylabel("target accuracy")
        handles, labels = {}, []
        for ax in axes[:len(panels)]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in handles:
                    handles[label] = handle
                    labels.append(label)
        fig.legend([handles[x] for x in labels], labels, loc="outside lower center",
                   ncols=min(len(labels), 2 if ncols == 1 else 4), fontsize=8)
    return fig
