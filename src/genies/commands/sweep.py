"""`genies sweep`: tune one intervention's hyperparameters on held-out source data (docs/sweeps.md).

The run options a sweep shares with `genies run` (model, preset, budget, seed, placement,
executor, cache, data root, --set, --hparams) are generated from the same `RunConfig` fields.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from genies.commands.run import parse_overrides, run_options
from genies.pipeline.config import RunConfig

# RunConfig fields that make sense for a sweep (no shifts, target-tuned or mixing: a sweep reads one source).
SHARED = ("model", "preset", "budget", "max_train", "first_n", "seed", "hparams_file", "trust_remote_code",
          "device", "dtype", "quantize", "gpus", "gpu_memory", "executor", "ray_address", "cache_dir", "data_root")


def _parameters() -> list[inspect.Parameter]:
    own = [
        inspect.Parameter("intervention", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                          default=typer.Argument(..., help="Intervention to tune (e.g. lora).")),
        inspect.Parameter("source", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option(..., "--source", help="The distribution whose train split it tunes on.")),
        inspect.Parameter("grid", inspect.Parameter.KEYWORD_ONLY, annotation=list[str],
                          default=typer.Option([], "--grid", help="PARAM=V1,V2,... (repeat for a product grid).")),
        inspect.Parameter("search", inspect.Parameter.KEYWORD_ONLY, annotation=list[str],
                          default=typer.Option([], "--search", help="PARAM=LOW:HIGH[:log], searched by Optuna "
                                                                    "(TPE) in --trials trials.")),
        inspect.Parameter("trials", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=typer.Option(20, "--trials", help="Trials of a --search.")),
        inspect.Parameter("holdout", inspect.Parameter.KEYWORD_ONLY, annotation=float,
                          default=typer.Option(0.33, "--holdout", help="Held-out fraction of the source's train split.")),
        inspect.Parameter("objective", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                          default=typer.Option("loss", "--objective", help="loss (mean Bradley-Terry loss, lower is "
                                                                          "better) | accuracy, on the held-out part.")),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(..., "--out", help="Sweep folder to write (and to resume).")),
    ]
    return own + run_options(SHARED)


def sweep_command(**options: Any) -> None:
    """Tune an intervention on held-out source data only; writes sweep.json and best-hparams.json."""
    from genies.interventions.registry import check_names

    check_names([options["intervention"]] if not Path(options["intervention"]).expanduser().is_dir() else [])
    import transformers
    from rich.console import Console

    from genies.commands._format import stdout_console
    from genies.pipeline.executor import LocalExecutor
    from genies.sweeps import SweepConfig, parse_grid, parse_search, sweep
    from genies.sweeps.output import summary

    transformers.logging.disable_progress_bar()
    plain = options.pop("plain")
    overrides = parse_overrides(options.pop("set_"))
    own = {name: options.pop(name) for name in ("intervention", "source", "grid", "search", "trials", "holdout",
                                                "objective", "out")}
    settings = RunConfig(out=own["out"], interventions=(own["intervention"],), hparams=overrides, **options)
    config = SweepConfig(intervention=own["intervention"], source=own["source"], out=own["out"],
                         grid=parse_grid(own["grid"]), search=parse_search(own["search"]), trials=own["trials"],
                         holdout=own["holdout"], objective=own["objective"], settings=settings)
    result = sweep(config, executor=LocalExecutor(plain=plain, console=Console(stderr=True)))
    console = stdout_console()
    console.print(summary(result), highlight=False, markup=False)
    console.print(f"sweep: {config.out / 'sweep.json'}, report: {config.out / 'report.html'}", highlight=False)
    if any(t.status == "failed" for t in result.trials):
        raise typer.Exit(1)


sweep_command.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
sweep_command.__annotations__ = {p.name: p.annotation for p in _parameters()}


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
