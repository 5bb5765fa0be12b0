"""`genies results show RUN_DIR`: the tables of a finished run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from genies.pipeline.run_dir import RunResults


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def shift_table(res: RunResults) -> Table:
    table = Table(title="Per shift", title_justify="left")
    for col, justify in [("intervention", "left"), ("source -> target", "left"), ("GA", "right"),
                         ("95% CI", "right"), ("zero-shot", "right"), ("A_tt (by)", "right"),
                         ("src ID", "right"), ("DE", "right"), ("elicit.", "right"), ("RMS-CE", "right"),
                         ("len L/S", "right")]:
        table.add_column(col, justify=justify)
    for r in res.rows:
        flag = " [yellow]cue[/]" if r.length_cue_flag else ""
        table.add_row(r.intervention, f"{r.source} -> {r.target}", _f(r.generalization_accuracy),
                      f"{_f(r.accuracy_ci_low, 2)}-{_f(r.accuracy_ci_high, 2)}", _f(r.baseline_accuracy),
                      f"{_f(r.target_tuned_capability)} ({r.target_tuned_capability_intervention})",
                      _f(r.source_ID_accuracy), _f(r.differential_elicitation), _f(r.elicitation),
                      _f(r.RMS_calibration_error),
                      f"{_f(r.length_longer_accuracy, 2)}/{_f(r.length_shorter_accuracy, 2)}{flag}")
    return table


def aggregate_table(res: RunResults, kind: str) -> Table:
    """`kind` is "all", "category" or "family"."""
    titles = {"all": "Mean differential elicitation over the shift list",
              "category": "Per category", "family": "Per family"}
    table = Table(title=titles[kind], title_justify="left")
    for col in ("intervention", "scope", "mean DE", "95% CI", "shifts", "mean GA"):
        table.add_column(col, justify="left" if col in ("intervention", "scope") else "right")
    for a in res.aggregates:
        if a.scope.split(":")[0] != kind:
            continue
        table.add_row(a.intervention, a.scope.split(":", 1)[-1], _f(a.mean_de),
                      f"{_f(a.ci_low)} .. {_f(a.ci_high)}", str(a.n_shifts), _f(a.mean_generalization_accuracy))
    return table


def print_failures(res: RunResults, console: Console) -> None:
    if res.failed_cells:
        console.print(f"[red]{len(res.failed_cells)} cells could not be computed:[/] "
                      + escape("; ".join(res.failed_cells)))
    for f in res.failed:
        console.print(f"[red]failed[/] {escape(f.job)}: {escape(f.error)}", highlight=False)
    if res.failed and res.run_dir is not None:
        console.print(f"tracebacks: {res.run_dir / 'log.txt'}; rerun the same command to retry only these jobs")


def show(res: RunResults, console: Console, detail: bool = True) -> None:
    run = res.run
    console.print(f"[bold]{run.get('model')}[/] ({run.get('model_fingerprint')}), shifts {run.get('shifts')}, "
                  f"preset {run.get('preset')}, seed {run.get('seed')}, target-tuned {run.get('target_tuned')}",
                  highlight=False)
    if detail:
        console.print(shift_table(res))
    for kind in ("all", "category", "family") if detail else ("all",):
        console.print(aggregate_table(res, kind))
    print_failures(res, console)


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show_command(
        run_dir: Path = typer.Argument(..., help="A folder written by `genies run --out`."),
    ) -> None:
        """Print the per-shift table and the mean DE per intervention, category and family."""
        from genies.pipeline.run_dir import load_run  # a folder that is not a finished run: RunDirError

        show(load_run(run_dir), Console())
