"""The report's figures (matplotlib, no pyplot state): DE bars, DE heatmap, reliability, reference.

Each builder returns a `Figure`; `save_figure` writes it as PNG and SVG for papers and returns
the SVG text the HTML page inlines, so the page and the files always show the same plot.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from genies._io import write_atomic
from genies.metrics import expected_calibration_error
from genies.report.load import Run
from genies.report.reference import ReferenceRow

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
    """DE for every shift (rows, grouped by category) x intervention (columns) of one run."""
    if not run.rows:
        return no_data(run.label)
    shifts = _shift_order(run)
    interventions = run.interventions
    values = np.full((len(shifts), len(interventions)), np.nan)
    index = {s[1:]: i for i, s in enumerate(shifts)}
    for r in run.rows:
        values[index[(r.source, r.target)], interventions.index(r.intervention)] = r.differential_elicitation
    bound = max(0.05, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.05)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(4.6 + 0.62 * len(interventions), max(3.0, 1.6 + 0.2 * len(shifts))), layout="constrained")
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
                    ax.text(
                        j,
                        i,
                        f"{v:+.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if abs(v) > 0.6 * bound else "#222",
                    )
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


def reference_means(runs: Sequence[Run], reference: Sequence[ReferenceRow]) -> list[dict[str, object]]:
    """Mean DE per (intervention, source of numbers) over the shifts both our runs and the reference have.

    Reference models are compared on the same shift set as each run, so the bars differ only in
    the model and the code that produced them, not in which shifts were averaged.
    """
    ours = {(r.source, r.target) for run in runs for r in run.rows}
    out: list[dict[str, object]] = []
    for intervention in _interventions(runs):
        for run in runs:
            values = [
                r.differential_elicitation
                for r in run.rows
                if r.intervention == intervention and math.isfinite(r.differential_elicitation)
            ]
            if values:
                out.append(
                    {
                        "intervention": intervention,
                        "source": run.label,
                        "mean_de": float(np.mean(values)),
                        "n": len(values),
                        "reference": False,
                    }
                )
        models = sorted({row.model for row in reference})
        for model in models:
            values = [
                row.differential_elicitation
                for row in reference
                if row.model == model and row.intervention == intervention and (row.source, row.target) in ours
            ]
            if values:
                out.append(
                    {
                        "intervention": intervention,
                        "source": f"published {model}",
                        "mean_de": float(np.mean(values)),
                        "n": len(values),
                        "reference": True,
                    }
                )
    return out


def reference_bars(runs: Sequence[Run], reference: Sequence[ReferenceRow]) -> Figure | None:
    """Our mean DE beside the published models' on the same shifts (None when nothing overlaps)."""
    means = reference_means(runs, reference)
    interventions = [i for i in _interventions(runs) if any(m["intervention"] == i and m["reference"] for m in means)]
    if not interventions:
        return None
    sources = list(dict.fromkeys(str(m["source"]) for m in means if m["intervention"] in interventions))
    colors = {s: RUN_COLORS[k % len(RUN_COLORS)] for k, s in enumerate(r.label for r in runs)}
    refs = [s for s in sources if s not in colors]
    colors.update({s: REFERENCE_COLORS[k % len(REFERENCE_COLORS)] for k, s in enumerate(refs)})
    lookup = {(m["intervention"], m["source"]): m["mean_de"] for m in means}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(1.2 + 0.3 * len(sources) * len(interventions) + 1.5, 3.0), layout="constrained")
        ax = fig.subplots()
        bar = 0.85 / len(sources)
        x = np.arange(len(interventions))
        for k, source in enumerate(sources):
            heights = [lookup.get((i, source), np.nan) for i in interventions]
            ax.bar(x + (k - (len(sources) - 1) / 2) * bar, heights, bar * 0.92, color=colors[source], label=source)
        ax.axhline(0, color="#555", linewidth=0.8)
        ax.set_xticks(x, interventions)
        ax.set_ylabel("mean differential elicitation")
        ax.set_title("ours beside the published numbers (same shifts)", loc="left")
        fig.legend(loc="outside right upper", fontsize=8)
    return fig


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
