"""`genies shifts list | check`: see which shifts a benchmark runs and check a custom shift file.

`check` catches a misspelled distribution name before a long run starts, and suggests the name
that was probably meant.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genies.data.home import find_data_root
from genies.data.shift import Shift
from genies.data.shifts import check_shifts, get_shifts, read_shift_file

console = Console()
if not console.is_terminal:
    console.width = max(console.width, 160)  # piped output: print whole names, not an 80-column fold
err_console = Console(stderr=True, soft_wrap=True)


def list_(
    benchmark: str = typer.Option(
        "genies", "--benchmark", "-b",
        help="genies | all | all-69 | extreme | probing | <category> | synthetic | a shift JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Print the shifts of a benchmark: source, target, target reference, category and family."""
    shifts = get_shifts(benchmark)
    if as_json:
        typer.echo(json.dumps([asdict(s) for s in shifts], indent=2))
        return
    console.print(_table(shifts, f"{benchmark}: {len(shifts)} shifts"))


def _table(shifts: list[Shift], title: str) -> Table:
    table = Table(title=title)
    for col in ("#", "source", "target", "reference", "category", "family"):
        table.add_column(col, justify="right" if col == "#" else "left", no_wrap=True)
    for i, s in enumerate(shifts, start=1):
        ref = s.target_reference if s.target_reference != s.target else "[dim]= target[/dim]"
        table.add_row(str(i), s.source, s.target, ref, s.category, s.family)
    return table


def check(file: Path = typer.Argument(..., help="A shift list in the original GENIES JSON schema.")) -> None:
    """Validate a custom shift file against the available data; exit 1 on any unknown name."""
    shifts = read_shift_file(file)
    root = find_data_root()
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
