"""`genies run`: the generalization metrics for a model, interventions and a shift list.

The options are generated from `RunConfig`'s fields (their help, flags and defaults), so the
command line and `genies.run(RunConfig(...))` cannot drift apart. Only what is about the screen
(`--plain`) and the `--set` syntax live here.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from genies.errors import ConfigError
from genies.pipeline.config import RunConfig


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """`--set lora.learning_rate=1e-4` -> {"lora": {"learning_rate": "1e-4"}}. Values stay text:
    each method parses them against its hyperparameter's type before the run starts."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        method, dot, param = name.partition(".")
        if not sep or not dot or not method or not param:
            raise ConfigError(f"--set {item!r}: expected INTERVENTION.PARAM=VALUE, e.g. --set mms.k=8")
        out.setdefault(method, {})[param] = value
    return out


def _option_type(field: dataclasses.Field) -> Any:
    """The type typer sees: the field's, with tuples as lists (repeatable options)."""
    hint = field.metadata.get("cli_type") or typing.get_type_hints(RunConfig)[field.name]
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    return hint


def run_options(names: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    """The options of RunConfig's fields (all, or those `names`), then --set and --plain: `genies
    run`'s and, for the fields it shares, `genies sweep`'s."""
    params = []
    for f in RunConfig.options():
        if names is not None and f.name not in names:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = list(default)
        required = f.name == "out"
        option = typer.Option(... if required else default, *f.metadata["flags"], help=escape(f.metadata["help"]))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=_option_type(f)))
    params.append(inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=list[str],
                                    default=typer.Option([], "--set", help="Hyperparameter override "
                                                         "INTERVENTION.PARAM=VALUE, checked before the run starts; "
                                                         "wins over --hparams.")))
    params.append(inspect.Parameter("plain", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--plain",
                                                         help="One line per job, no progress bar (cluster logs).")))
    return params


def run_command(**options: Any) -> None:
    """Compute the GENIES metrics; rerunning the same command resumes and reuses finished jobs."""
    from genies.interventions.registry import check_names

    # a misspelt name is refused before torch and transformers load (seconds); folders written for
    # the original GENIES are resolved later
    check_names([name for name in options["interventions"] if not Path(name).expanduser().is_dir()])
    import transformers
    from rich.console import Console

    from genies.commands._format import stdout_console
    from genies.commands.results import show
    from genies.pipeline.api import run
    from genies.pipeline.executor import LocalExecutor

    transformers.logging.disable_progress_bar()  # per-job weight-loading bars would drown the job lines
    plain = options.pop("plain")
    overrides = parse_overrides(options.pop("set_"))
    config = RunConfig(**options, hparams=overrides)
    res = run(config, executor=LocalExecutor(plain=plain, console=Console(stderr=True)))
    console = stdout_console()  # piped output is not cut to 80 columns
    show(res, console, detail=False)
    out = Path(config.out)
    console.print(f"results: {out / 'results.csv'} (all tables: genies results show {out})", highlight=False)
    if res.failed or res.failed_cells:
        raise typer.Exit(1)


run_command.__signature__ = inspect.Signature(run_options())  # type: ignore[attr-defined]
run_command.__annotations__ = {p.name: p.annotation for p in run_options()}


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
