"""`genies run`: the generalization metrics for a model, interventions and a shift list."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--set lora.learning_rate=1e-4` -> {"lora": {"learning_rate": 1e-4}}; values are JSON
    when they parse as JSON, else strings."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        method, dot, param = name.partition(".")
        if not sep or not dot or not method or not param:
            raise typer.BadParameter(f"{item!r}: expected INTERVENTION.PARAM=VALUE", param_hint="--set")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[param] = parsed
    return out


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        out: Path = typer.Option(..., "--out", help="Run directory to write (and to resume)."),
        model: str = typer.Option("default", "--model", help="`default`, a local folder, a .gguf file or a cached hub id."),
        intervention: list[str] = typer.Option(["mms"], "--intervention", "-i", help="Repeat for several."),
        shifts: str = typer.Option("genies", "--shifts",
                                   help="genies | all | all-69 | extreme | probing | <category> | synthetic | <file>"),
        preset: str = typer.Option("cpu", "--preset", help="cpu (capped examples, short training) | paper"),
        max_train: int | None = typer.Option(None, "--max-train", help="Train examples per distribution."),
        max_eval: int | None = typer.Option(None, "--max-eval", help="Test examples per distribution."),
        target_tuned: str = typer.Option("default", "--target-tuned",
                                         help="default: LoRA on the target reference | best: max over 5 methods"),
        seed: int = typer.Option(0, "--seed"),
        plain: bool = typer.Option(False, "--plain", help="One line per job, no progress bar (cluster logs)."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
        set_: list[str] = typer.Option([], "--set", help="Hyperparameter override INTERVENTION.PARAM=VALUE."),
        executor: str = typer.Option("local", "--executor", help="local | ray (needs `pip install genies\\[ray]`)"),
    ) -> None:
        """Compute the GENIES metrics; rerunning the same command resumes and reuses finished jobs."""
        from genies.data.home import DataNotFoundError
        from genies.data.schema import DataError
        from genies.data.shifts import ShiftSelectionError
        from genies.models.embedded import ModelNotFoundError
        from genies.pipeline.api import RunConfigError, run

        from genies.commands.results import show

        import transformers

        transformers.logging.disable_progress_bar()  # per-job weight-loading bars would drown the job lines
        err_console = Console(stderr=True)
        try:
            res = run(model, intervention, shifts, out=out, preset=preset, max_train=max_train, max_eval=max_eval,
                      target_tuned=target_tuned, seed=seed, plain=plain, trust_remote_code=trust_remote_code,
                      hparams=parse_overrides(set_), executor=executor, console=err_console,
                      command_line=["genies", *sys.argv[1:]])
        except (RunConfigError, ShiftSelectionError, DataError, LookupError, ModelNotFoundError,
                DataNotFoundError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            err_console.print(f"error: {message}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        console = Console()
        show(res, console, detail=False)
        console.print(f"results: {out / 'results.csv'} (all tables: genies results show {out})", highlight=False)
        if res.failed or res.failed_cells:
            raise typer.Exit(1)
