"""`genies results show RUN_DIR`: the tables of a finished run.

The per-shift table is the widest genies prints (twelve numbers a row), so it is built from
`_format` columns with drop priorities: the intervention, the shift, GA and DE always stay,
then the zero-shot and target-tuned accuracies and the intervals as the width allows, and a
footnote names what was left out; `--format csv` and `--format json` give every field of
results.csv / results.json unrounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from genies.commands._format import Column, OutputFormat, format_option, print_table, stdout_console, to_json
from genies.report.support import run_support
from genies.rounding import count, interval, number

if TYPE_CHECKING:
    from genies.pipeline.run_dir import ResultRow, RunResults

CUE_MARK = "*"
CUE_NOTE = (f"{CUE_MARK} length alone solves much of this target: a longer- or shorter-response rule "
            "beats 0.5 by more than 0.2")
LEGEND = "GA: accuracy on the target of the model trained on the source; DE: differential elicitation"


def _order(res: RunResults) -> dict[str, int]:
    """Interventions in the order the run named them (then any other in order of appearance),
    so every table lists them alike."""
    names = [*res.run.get("interventions", ()), *(r.intervention for r in res.rows),
             *(a.intervention for a in res.aggregates)]
    return {name: i for i, name in enumerate(dict.fromkeys(names))}


def _shift(r: ResultRow) -> str:
    cue = f" [yellow]{CUE_MARK}[/]" if r.length_cue_flag else ""
    mix = f" +{r.target_mix:.0%} target" if r.target_mix else ""  # a --mix-target row
    return f"{escape(r.source)} -> {escape(r.target)}{mix}{cue}"


def shift_columns(rows: tuple[ResultRow, ...]) -> list[Column]:
    """The per-shift columns; who trained A_tt gets its own column only when it varies by row
    (`--target-tuned best`), otherwise the footnote names it."""
    columns = [
        Column("intervention", lambda r: escape(r.intervention)),
        Column("shift", _shift),
        Column("GA", lambda r: number(r.generalization_accuracy), kind="number"),
        Column("GA 95% CI", lambda r: interval(r.accuracy_ci_low, r.accuracy_ci_high), kind="number", drop=4),
        Column("zero-shot", lambda r: number(r.baseline_accuracy), kind="number", drop=1),
        Column("A_tt", lambda r: number(r.target_tuned_capability), kind="number", drop=2),
        Column("DE", lambda r: number(r.differential_elicitation), kind="number"),
        Column("DE 95% CI", lambda r: interval(r.de_ci_low, r.de_ci_high), kind="number", drop=3),
        Column("src ID", lambda r: number(r.source_ID_accuracy), kind="number", drop=6),
        Column("elicit.", lambda r: number(r.elicitation), kind="number", drop=5),
        Column("RMS-CE", lambda r: number(r.RMS_calibration_error), kind="number", drop=7),
        Column("len L/S", lambda r: f"{number(r.length_longer_accuracy)}/{number(r.length_shorter_accuracy)}",
               kind="number", drop=8),
    ]
    if len({r.target_tuned_capability_intervention for r in rows}) > 1:
        columns.append(Column("A_tt by", lambda r: escape(r.target_tuned_capability_intervention), drop=9))
    return columns


def print_shift_table(res: RunResults, console: Console) -> None:
    """The per-shift table, one row per (intervention, shift), in the run's intervention order."""
    order = _order(res)
    rows = sorted(res.rows, key=lambda r: order[r.intervention])  # stable: shifts keep their order
    tuned_by = sorted({r.target_tuned_capability_intervention for r in rows})
    notes = [LEGEND + (f"; A_tt: target-tuned accuracy ({escape(tuned_by[0])})" if len(tuned_by) == 1 else
                       "; A_tt: target-tuned accuracy")]
    if any(r.length_cue_flag for r in rows):
        notes.append(escape(CUE_NOTE))
    print_table(console, "Per shift", shift_columns(res.rows), rows, notes)


def print_aggregate_table(res: RunResults, kind: str, console: Console) -> None:
    """`kind` is "all", "category" or "family"; the "all" table has no scope column."""
    titles = {"all": "Mean differential elicitation over the shift list",
              "category": "Per category", "family": "Per family"}
    order = _order(res)
    aggregates = sorted((a for a in res.aggregates if a.scope.split(":")[0] == kind),
                        key=lambda a: order[a.intervention])
    columns = [Column("intervention", lambda a: escape(a.intervention))]
    if kind != "all":
        columns.append(Column(kind, lambda a: escape(a.scope.split(":", 1)[-1])))
    columns += [
        Column("mean DE", lambda a: number(a.mean_de), kind="number"),
        Column("95% CI", lambda a: interval(a.ci_low, a.ci_high), kind="number", drop=1),
        Column("shifts", lambda a: count(a.n_shifts), kind="number"),
        Column("mean GA", lambda a: number(a.mean_generalization_accuracy), kind="number", drop=2),
    ]
    print_table(console, titles[kind], columns, aggregates)


def print_comparisons(res: RunResults, console: Console) -> None:
    """Every two interventions' paired difference of mean DE, and in plain words what the run can
    support: whether any one beats another beyond noise (its interval excludes 0)."""
    if not res.comparisons:
        return
    columns = [
        Column("A vs B", lambda c: f"{escape(c.a)} vs {escape(c.b)}"),
        Column("DE(A) - DE(B)", lambda c: number(c.mean_difference), kind="number"),
        Column("95% CI", lambda c: interval(c.ci_low, c.ci_high), kind="number"),
        Column("shifts", lambda c: count(c.n_shifts), kind="number", drop=1),
        Column("A better on", lambda c: number(c.share_a_better), kind="number", drop=2),
    ]
    print_table(console, "Paired comparisons (the same shifts and prompts)", columns, list(res.comparisons))
    console.print(escape(run_support(res).verdict_sentence()), highlight=False)  # the report's words


def print_failures(res: RunResults, console: Console) -> None:
    if res.failed_cells:
        console.print(f"[red]{len(res.failed_cells)} cells could not be computed:[/] "
                      + escape("; ".join(res.failed_cells)))
    for f in res.failed:
        console.print(f"[red]failed[/] {escape(f.job)}: {escape(f.error)}", highlight=False)
    if res.failed and res.run_dir is not None:
        console.print(f"tracebacks: {res.run_dir / 'log.txt'}; rerun the same command to retry only these jobs")


def show(res: RunResults, console: Console, detail: bool = True) -> None:
    """The run's header line and tables; `detail=False` (what `genies run` ends with) prints only
    the mean DE per intervention."""
    run = res.run
    console.print(f"[bold]{escape(str(run.get('model')))}[/] ({run.get('model_fingerprint')}), "
                  f"shifts {escape(str(run.get('shifts')))}, preset {run.get('preset')}, seed {run.get('seed')}, "
                  f"target-tuned {run.get('target_tuned')}", highlight=False)
    if detail:
        print_shift_table(res, console)
    for kind in ("all", "category", "family") if detail else ("all",):
        print_aggregate_table(res, kind, console)
    print_comparisons(res, console)
    print_failures(res, console)


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show_command(
        run_dir: Path = typer.Argument(..., help="A folder written by `genies run --out`."),
        fmt: OutputFormat = format_option(),
    ) -> None:
        """Print the per-shift table and the mean DE per intervention, category and family
        (--format csv: the rows of results.csv; json: all of results.json)."""
        from genies.pipeline.run_dir import load_run  # a folder that is not a finished run: RunDirError

        res = load_run(run_dir)
        if fmt is OutputFormat.csv:
            typer.echo(res.to_csv(), nl=False)
        elif fmt is OutputFormat.json:
            typer.echo(to_json(res.to_json()))
        else:
            show(res, stdout_console())
