"""The `genies` command: a thin typer app. Each command group lives in `genies.commands.<group>`
and exposes `register(app)`, so groups are added without touching each other's code.

Errors are handled once, here: a `GeniesError` from any command is one line on stderr and exit
status 2, Ctrl-C is `interrupted` and 130, and anything else keeps its traceback because it is a bug.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import typer
from typer.core import TyperGroup

from genies import __version__
from genies.errors import GeniesError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class GeniesGroup(TyperGroup):
    """The root group. Every command runs inside its `invoke`, so catching here covers them all,
    in `genies` and under `CliRunner` alike; commands just raise and never print their own errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeniesError as err:
            # click.echo, not rich: a message holding "[...]" (a path, a list) is printed as is
            click.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=GeniesGroup,
    name="genies",
    help="Measure how reward models generalize across distribution shifts (GENIES).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (sub-app name or "" for top-level commands, help text, modules whose register(app) fill it)
COMMAND_GROUPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("data", "Download, import, validate, browse and generate preference data.",
     ("data_inspect", "data_store", "data_synth", "data_browse")),
    ("shifts", "List and check distribution shifts.", ("shifts",)),
    ("models", "List and inspect models.", ("models",)),
    ("cache", "Inspect and clear the activation and model caches.", ("cache",)),
    ("bench", "Benchmarks against naive references.", ("bench",)),
    ("interventions", "List and inspect interventions.", ("interventions",)),
    ("results", "Show the tables of a finished run.", ("results",)),
    ("", "", ("run", "report")),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genies {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """genies: a testbed for reward-model generalization."""


def _build() -> typer.Typer:
    for group, help_text, modules in COMMAND_GROUPS:
        target = app
        if group:
            target = typer.Typer(name=group, help=help_text, no_args_is_help=True)
            app.add_typer(target, name=group)
        for module in modules:
            importlib.import_module(f"genies.commands.{module}").register(target)
    return app


def main() -> None:
    _build()()
