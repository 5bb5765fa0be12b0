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

import importlib

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


console = Console()
if not console.is_terminal:
    console.width = max(console.width, 160)  # piped output: keep rows on one line


def list_interventions() -> None:
    """List every registered intervention: name, family, description."""
    from genies.interventions.registry import available  # torch: imported only when used

    methods = available()
    table = Table(title=f"{len(methods)} interventions")
    for col in ("name", "family", "description"):
        table.add_column(col, no_wrap=col != "description")
    for name, cls in methods.items():
        table.add_row(name, cls.family, escape(cls.description))
    console.print(table)
    console.print("A folder written for the original GENIES (train.py / eval.py) also works wherever a name "
                  "does; see `genies interventions show legacy`.")


def show(name: str = typer.Argument(..., help="intervention name, e.g. lora")) -> None:
    """Show an intervention's hyperparameters: type, default, choices, presets, and whether each
    affects results."""
    from genies.interventions.registry import get_intervention

    cls = get_intervention(name)
    presets = list(cls.presets)
    console.print(f"[bold]{escape(cls.name)}[/] ({cls.family}, version {cls.version}): {escape(cls.description)}")
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    if doc:
        console.print(escape(doc.strip().split("\n\n")[0]))
    rows = cls.describe()
    if not rows:
        console.print("no hyperparameters")
    else:
        table = Table(title=f"hyperparameters (presets: {', '.join(presets) or 'none'})")
        for col in ("name", "type", "default", "choices", *(f"preset {p}" for p in presets), "affects results",
                    "help"):
            table.add_column(col, no_wrap=col != "help")
        for row in rows:
            choices = ", ".join(map(repr, row.choices)) if row.choices else ""
            values = [escape(repr(row.presets[p])) if p in row.presets else "" for p in presets]
            table.add_row(row.name, escape(row.type), escape(repr(row.default)), escape(choices), *values,
                          "no" if row.execution else "yes", escape(row.help))
        console.print(table)
        console.print("An empty preset cell keeps the default. affects results: no = an execution setting (speed, "
                      "memory, where files go); it is left out of cache keys, so changing it reruns nothing.")
    console.print("training data: " + ("the source train split" if cls.needs_training_data else "not needed"))


def register(app: typer.Typer) -> None:
    app.command("list")(list_interventions)
    app.command("show")(show)
