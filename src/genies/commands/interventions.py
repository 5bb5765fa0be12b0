"""`genies interventions list | show NAME`: what methods exist and how each is configured.

`list` prints name, family and one-line description of every registered method (built-ins and
plugins of the `genies.interventions` entry-point group); `show` prints a method's
hyperparameters with their type, default, choices, the values of its presets (`paper`, `cpu`)
and whether each affects results: execution settings (batch sizes, timeouts, folders) do not,
so changing one reuses every cached job.

An unknown name raises `UnknownNameError` (with its did-you-mean), which the command line prints
as one line like every `GeniesError`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from genies.commands._format import Column, OutputFormat, format_option, print_table, stdout_console, write_records

if TYPE_CHECKING:
    from genies.interventions.hparams import HParamInfo


LIST_COLUMNS = (
    Column("name", lambda m: escape(m.name)),
    Column("family", lambda m: escape(m.family)),
    Column("description", lambda m: escape(m.description), kind="prose"),
)
EXECUTION_NOTE = ("A preset's column holds the values it sets; an empty cell keeps the default. affects results: "
                  "no = an execution setting (speed, memory, where files go); it is left out of cache keys, so "
                  "changing it reruns nothing.")


def list_interventions(fmt: OutputFormat = format_option()) -> None:
    """List every registered intervention: name, family, description."""
    from genies.interventions.registry import available  # torch: imported only when used

    methods = list(available().values())
    if fmt is not OutputFormat.table:
        write_records(fmt, [{"name": m.name, "family": m.family, "description": m.description, "version": m.version,
                             "needs_training_data": m.needs_training_data, "module": m.__module__} for m in methods])
        return
    print_table(stdout_console(), f"{len(methods)} interventions", LIST_COLUMNS, methods,
                ["A folder written for the original GENIES (train.py / eval.py) also works wherever a name does; "
                 "see `genies interventions show legacy`."])


def _hparam_columns(rows: list[HParamInfo], presets: list[str]) -> list[Column]:
    """Name, type, default, choices (when any has them), one column per preset (headed by its
    name), whether the value enters cache keys, and help; a value is shown as Python writes it."""
    columns = [Column("name", lambda r: escape(r.name)),
               Column("type", lambda r: escape(r.type), drop=2),
               Column("default", lambda r: escape(repr(r.default)))]
    if any(r.choices for r in rows):
        columns.append(Column("choices", lambda r: escape(", ".join(map(repr, r.choices or ()))), drop=3))
    columns += [Column(p, lambda r, p=p: escape(repr(r.presets[p])) if p in r.presets else "") for p in presets]
    columns += [Column("affects results", lambda r: "no" if r.execution else "yes", drop=1),
                Column("help", lambda r: escape(r.help), kind="prose")]
    return columns


def show(
    name: str = typer.Argument(..., help="intervention name, e.g. lora"),
    fmt: OutputFormat = format_option(),
) -> None:
    """Show an intervention's hyperparameters: type, default, choices, presets, and whether each
    affects results."""
    from genies.interventions.registry import get_intervention

    cls = get_intervention(name)
    presets = list(cls.presets)
    rows = cls.describe()
    if fmt is not OutputFormat.table:
        write_records(fmt, [dataclasses.asdict(r) for r in rows])
        return
    console = stdout_console()
    console.print(f"[bold]{escape(cls.name)}[/] ({cls.family}, version {cls.version}): {escape(cls.description)}")
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    if doc:
        console.print(escape(doc.strip().split("\n\n")[0]))
    if not rows:
        console.print("no hyperparameters")
    else:
        print_table(console, f"hyperparameters (presets: {', '.join(presets) or 'none'})",
                    _hparam_columns(rows, presets), rows, [EXECUTION_NOTE])
    console.print("training data: " + ("the source train split" if cls.needs_training_data else "not needed"))


def register(app: typer.Typer) -> None:
    app.command("list")(list_interventions)
    app.command("show")(show)
