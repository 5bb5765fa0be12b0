"""A sweep folder's files (sweep.json, best-hparams.json, report.html and its figure) and the
terminal summary: the objective against each swept hyperparameter, as text and as a plot."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from genies._io import write_atomic
from genies.sweeps.sweep import SweepResult, Trial

BAR = 36  # characters of the longest bar: value, bar and number fit 80 columns
MAX_LINES = 16  # a search with more distinct values is shown in this many rank bins


def write_sweep(result: SweepResult) -> None:
    """sweep.json, best-hparams.json (only when a trial finished) and report.html in `result.out`."""
    assert result.out is not None
    out = result.out
    write_atomic(out / "sweep.json", json.dumps(result.to_json(), indent=1) + "\n")
    if result.best_trial is not None:
        write_atomic(out / "best-hparams.json", json.dumps(result.best_hparams(), indent=1) + "\n")
    elif (out / "best-hparams.json").exists():
        (out / "best-hparams.json").unlink()  # a stale best of an earlier sweep would mislead
    write_atomic(out / "report.html", report_html(result))


def _finished(result: SweepResult) -> list[Trial]:
    return [t for t in result.trials if t.status != "failed"]


def _value_text(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def text_plot(result: SweepResult, param: str) -> list[str]:
    """One line per value of `param` (the best objective of the trials with it; a search with many
    values is binned by rank): the value, a bar from the worst to the best objective, the number."""
    rows: list[tuple[str, float]] = []
    finished = sorted(_finished(result), key=lambda t: t.params[param])
    better = max if result.direction == "maximize" else min
    if len({t.params[param] for t in finished}) <= MAX_LINES:
        for value in dict.fromkeys(t.params[param] for t in finished):
            rows.append((_value_text(value), better(t.objective for t in finished if t.params[param] == value)))
    else:
        for chunk in np.array_split(np.arange(len(finished)), MAX_LINES):
            group = [finished[i] for i in chunk]
            label = f"{_value_text(group[0].params[param])}-{_value_text(group[-1].params[param])}"
            rows.append((label, better(t.objective for t in group)))
    if not rows:
        return [f"{param}: no finished trial"]
    values = [v for _, v in rows]
    low, high = min(values), max(values)
    best = better(values)
    width = max(len(label) for label, _ in rows)
    lines = [f"{result.objective} ({'higher' if result.direction == 'maximize' else 'lower'} is better) "
             f"against {param}:"]
    for label, value in rows:
        goodness = 1.0 if high == low else (value - low) / (high - low)
        if result.direction == "minimize":
            goodness = 1.0 - goodness
        bar = "#" * max(1, round(goodness * BAR))
        lines.append(f"  {label:>{width}} |{bar:<{BAR}} {value:.4f}{'  <- best' if value == best else ''}")
    return lines


def summary(result: SweepResult) -> str:
    """The terminal summary: the best trial, its hyperparameters file, and a text plot per parameter."""
    best = result.best_trial
    lines = [f"sweep of {result.intervention} on {result.source}: {result.search}, {len(result.trials)} trials",
             f"each trained on {result.train_examples} and scored on {result.heldout_examples} held-out examples "
             "of its train split"]
    for param in result.space:
        lines += text_plot(result, param)
    failed = [t for t in result.trials if t.status == "failed"]
    if failed:
        lines.append(f"{len(failed)} trial(s) failed: {failed[0].error.splitlines()[-1] if failed[0].error else ''}")
    if best:
        params = ", ".join(f"{k}={_value_text(v)}" for k, v in best.params.items())
        lines.append(f"best: trial {best.number}, {params}")
        lines.append(f"      held-out accuracy {best.accuracy:.3f}, loss {best.loss:.4f}")
        if result.out is not None:
            lines.append(f"next: genies run -i {result.method} --hparams {result.out / 'best-hparams.json'} ...")
    return "\n".join(lines)


def objective_figure(result: SweepResult) -> Figure:
    """One panel per swept hyperparameter: every finished trial's objective, the best circled; a
    log axis for a log search range or a grid spanning two decades or more."""
    from genies.report.plots import RUN_COLORS, STYLE

    params = list(result.space)
    finished = _finished(result)
    best = result.best_trial
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(4.0, 3.6 * len(params)), 3.2), layout="constrained")
        axes = fig.subplots(1, len(params), squeeze=False).ravel()
        for ax, param in zip(axes, params, strict=True):
            xs = [float(t.params[param]) for t in finished]
            ax.plot(*_sorted(xs, [t.objective for t in finished]), "o-", color=RUN_COLORS[0], markersize=4,
                    linewidth=0.8 if len(params) == 1 else 0)
            if best is not None:
                ax.plot([float(best.params[param])], [best.objective], "o", markersize=11, markerfacecolor="none",
                        markeredgecolor=RUN_COLORS[3], label="best")
            if _log_axis(result, param, xs):
                ax.set_xscale("log")
            ax.set_xlabel(param)
            ax.set_ylabel(f"held-out {result.objective}")
        axes[0].set_title(f"{result.intervention} on {result.source}", loc="left")
    return fig


def _sorted(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    return [xs[i] for i in order], [ys[i] for i in order]


def _log_axis(result: SweepResult, param: str, xs: Sequence[float]) -> bool:
    space = result.space[param]
    if isinstance(space, dict):
        return bool(space.get("log"))
    positive = [x for x in xs if x > 0]
    return len(positive) == len(xs) > 1 and math.log10(max(xs) / min(xs)) >= 2


def report_html(result: SweepResult) -> str:
    """A self-contained page: the objective plot (its PNG/SVG also in report-figures/) and the trials."""
    from genies.report.plots import save_figure

    assert result.out is not None
    svg = save_figure(objective_figure(result), result.out / "report-figures", "objective")
    names = list(result.space)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", *names, result.objective, "accuracy", "loss",
                                                          "status"])
    body = "".join(
        f"<tr{' class=best' if t.number == result.best else ''}><td>{t.number}</td>"
        + "".join(f"<td>{html.escape(_value_text(t.params.get(n)))}</td>" for n in names)
        + "".join(f"<td>{'' if math.isnan(v) else f'{v:.4f}'}</td>" for v in (t.objective, t.accuracy, t.loss))
        + f"<td>{html.escape(t.status)}</td></tr>" for t in result.trials)
    best = result.best_hparams()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genies sweep: {html.escape(result.intervention)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:980px}}table{{border-collapse:collapse}}
td,th{{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}}tr.best{{font-weight:bold;background:#eef4ff}}
code{{background:#f4f4f4;padding:1px 4px}}</style></head><body>
<h1>Sweep of {html.escape(result.intervention)} on {html.escape(result.source)}</h1>
<p>{html.escape(result.search)} search; every trial trained on {result.train_examples} examples of
{html.escape(result.source)}'s train split and was scored on the other {result.heldout_examples} (held out, seed
{result.seed}); no target data was read. Objective: held-out {html.escape(result.objective)}
({html.escape(result.direction)}). Model {html.escape(result.model)}, preset {html.escape(result.preset)}.</p>
<figure>{svg}</figure>
<p>Best hyperparameters (<code>best-hparams.json</code>, for <code>genies run --hparams</code>):
<code>{html.escape(json.dumps(best))}</code></p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>
"""
