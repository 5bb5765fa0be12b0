"""`genies shifts list | check`: see which shifts a benchmark runs and check a custom shift file.

`check` catches a misspelled distribution name before a long run starts, and suggests the name
that was probably meant.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from genies.commands._format import Column, OutputFormat, format_option, print_table, stdout_console, write_records
from genies.data.shift import Shift
from genies.data.shifts import check_shifts, data_root_for, get_shifts, read_shift_file
from genies.rounding import count

console = Console()
err_console = Console(stderr=True, soft_wrap=True)



def _target(shift: Shift) -> str:
    """The target, and below it the target reference for the few shifts where they differ, so
    every other row stays one line."""
    if shift.target_reference == shift.target:
        return escape(shift.target)
    return f"{escape(shift.target)}\n[dim]ref: {escape(shift.target_reference)}[/dim]"


COLUMNS = (
    Column("#", lambda ix: count(ix[0]), kind="number", drop=1),
    Column("source", lambda ix: escape(ix[1].source)),
    Column("target", lambda ix: _target(ix[1])),
    Column("category", lambda ix: escape(ix[1].category)),
    Column("family", lambda ix: escape(ix[1].family)),
)
REFERENCE_NOTE = "ref: the distribution the target-tuned accuracy A_tt is measured on, where it is not the target"


def list_(
    shifts_name: str = typer.Option(
        "genies", "--shifts", "--benchmark", "-b",
        help="genies | all | all-69 | extreme | probing | <category> | synthetic | a shift JSON file "
             "(the same values as `genies run --shifts`; --benchmark is the old name)."),
    fmt: OutputFormat = format_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as --format json (kept for scripts)."),
) -> None:
    """Print the shifts of a shift list: source, target, target reference, category and family."""
    shifts = get_shifts(shifts_name)
    if as_json or fmt is not OutputFormat.table:
        write_records(OutputFormat.json if as_json else fmt, [asdict(s) for s in shifts])
        return
    notes = [REFERENCE_NOTE] if any(s.target_reference != s.target for s in shifts) else []
    print_table(stdout_console(), f"{escape(shifts_name)}: {len(shifts)} shifts", COLUMNS,
                list(enumerate(shifts, start=1)), notes)


def check(file: Path = typer.Argument(..., help="A shift list in the original GENIES JSON schema.")) -> None:
    """Validate a custom shift file against the available data; exit 1 on any unknown name."""
    shifts = read_shift_file(file)
    root = data_root_for(shifts, file)  # distributions kept beside the shift file need no data root
    problems = check_shifts(shifts, root)
    for problem in problems:
        err_console.print(f"[red]error[/red]: {escape(str(file))}: {escape(problem)}")
    if problems:
        err_console.print(f"[red]{escape(str(file))}: {len(problems)} unknown distribution names "
                          f"in {len(shifts)} shifts[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{file}: {len(shifts)} shifts, every distribution found in {root}[/green]")


def register(app: typer.Typer) -> None:
    app.command("list")(list_)
    app.command("check")(check)
