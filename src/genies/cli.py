"""The `genies` command: a thin typer app. Each command group lives in `genies.commands.<group>`
and exposes `register(app)`, so groups are added without touching each other's code."""

from __future__ import annotations

import importlib

import typer

from genies import __version__

app = typer.Typer(
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
