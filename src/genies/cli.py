"""The `genies` command: a thin typer app. Each command group lives in `genies.commands.<group>`
and exposes `register(app)`, so groups are added without touching each other's code.

Errors are handled once, here: a `GeniesError` from any command is one line on stderr and exit
status 2, Ctrl-C is `interrupted` and 130, and anything else keeps its traceback because it is a bug.
"""

from __future__ import annotations

import importlib
import os
import sys
import typing
from pathlib import PurePath
from typing import Any

import click
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from genies import __version__
from genies.errors import GeniesError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


# click's names for values, which is what a user of any click tool reads in help
_VALUE_NAMES: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}


def _value_name(param: TyperOption | TyperArgument, ctx: click.Context) -> str:
    """What a parameter's value is, the click way: TEXT, INTEGER, PATH, or a|b for choices."""
    desc = param.type_descriptor
    if desc.is_choice:
        return param.display_type(ctx)[1:-1].removeprefix("list[").removesuffix("]")  # typer's <a|b>
    value = typing.get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    if isinstance(value, type) and issubclass(value, PurePath):
        return "PATH"
    return _VALUE_NAMES.get(value, getattr(value, "__name__", str(value)).upper())


class _Option(TyperOption):
    """An option that names its value TEXT, INTEGER, PATH or a|b, and TEXT... when it may be
    repeated; a flag names none (typer would print `<bool>`, `<list[str]>`)."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        name = _value_name(self, ctx)
        return f"{name}..." if self.multiple or self.nargs != 1 else name


class _Argument(TyperArgument):
    """An argument named in capitals (RUN_DIR), its value named like an option's, and in the
    usage line as click writes it: NAME when required, [NAME] when not (typer writes {name})."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return _value_name(self, ctx)

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name


def _readable(params: list[click.Parameter]) -> list[click.Parameter]:
    """The same parameters, each typer option and argument turned into its readable subclass."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class _Command(TyperCommand):
    """A typer command whose help names values readably. typer has no setting for this (its
    parameter classes decide), so the parameters, the help option included, which click makes
    only when asked, become `_Option` / `_Argument` whenever the command lists them."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _readable(super().get_params(ctx))


class _Group(TyperGroup):
    """A typer group whose help names values readably (see `_Command`)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _readable(super().get_params(ctx))


def _readable_help(command: click.Command) -> None:
    """Give `command` and every command under it readable help; the modules register plain
    typer commands, and typer builds them, so their class is changed here, once."""
    if type(command) is TyperCommand:
        command.__class__ = _Command
    elif type(command) is TyperGroup:
        command.__class__ = _Group
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)


class GeniesGroup(_Group):
    """The root group. Every command runs inside its `invoke`, so catching here covers them all,
    in `genies` and under `CliRunner` alike; commands just raise and never print their own errors.
    Its whole tree names values readably in help (`_Command`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # typer builds every subcommand before the group
        for command in self.commands.values():
            _readable_help(command)

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
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)

# (sub-app name or "" for top-level commands, help text, modules whose register(app) fill it)
COMMAND_GROUPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("data", "Download, import, validate, browse and generate preference data.",
     ("data_inspect", "data_store", "data_synth", "data_browse")),
    ("shifts", "List and check distribution shifts.", ("shifts",)),
    ("models", "List and inspect models.", ("models",)),
    ("cache", "Inspect and clear the activation and model caches.", ("cache",)),
    ("bench", "Benchmarks against naive references.", ("bench", "bench_models")),
    ("interventions", "List and inspect interventions.", ("interventions",)),
    ("results", "Show the tables of a finished run.", ("results", "results_compare")),
    ("", "", ("run", "report", "plan", "sweep")),
    ("", "", ("doctor",)),
    ("", "", ("judge", "w2s")),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genies {__version__}")
        raise typer.Exit()


def quiet_third_party(verbose: bool) -> None:
    """Hide transformers' and huggingface_hub's own progress bars and advisory warnings ("Loading
    weights", "Converting and de-quantizing GGUF tensors"), which drown genies' job lines and break
    `--format json` output, unless `--verbose`. Set through the environment before those libraries
    load (commands import them lazily), and directly when they already have (tests, notebooks)."""
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion uses tqdm directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", help="Show third-party progress bars and warnings "
                                 "(transformers, huggingface_hub)."),
) -> None:
    """genies: a testbed for reward-model generalization."""
    quiet_third_party(verbose)


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
