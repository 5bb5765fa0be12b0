"""`genies w2s`: a weak-to-strong run (docs/w2s.md). Thin: the options become a `W2SConfig`,
`genies.w2s` runs it, and the summary table is printed; w2s.json holds every number."""

from __future__ import annotations

from pathlib import Path

import typer


def w2s_command(
    weak: str = typer.Option("default:layers=4", "--weak", help="Weak model: any --model spec, or NAME:layers=K "
                             "(its first K decoder layers)."),
    strong: str = typer.Option("default", "--strong", help="Strong model (student and ceiling)."),
    method: str = typer.Option("lora", "--method", help="Student's and ceiling's intervention."),
    weak_method: str = typer.Option(None, "--weak-method", help="Weak supervisor's intervention (default: --method; "
                                    "tfidf and zero_shot need no training of a language model)."),
    loss: list[str] = typer.Option(["xent"], "--loss", help="Student's loss: xent | aux_conf (reward-model "
                                   "students); give it twice for one student each, sharing weak labels and ceiling."),
    aux_max: float = typer.Option(0.75, "--aux-max", help="Largest weight of the auxiliary confidence loss."),
    labels: str = typer.Option("soft", "--labels", help="What the student trains on: soft | hard weak labels."),
    target_tuned: str = typer.Option("default", "--target-tuned", help="DE's target-tuned reference, as on `genies "
                                     "run`: default | best | none (none: no DE, no zero-shot or reference jobs)."),
    shifts: str = typer.Option("genies", "--shifts", help="Shift list or file; each source is one experiment, "
                               "each target a generalization column."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (and to resume)."),
    preset: str = typer.Option("cpu", "--preset", help="Each method's hyperparameter preset: cpu | paper."),
    budget: str = typer.Option(None, "--budget", help="Examples per distribution: cpu | paper (default: the preset's)."),
    max_train: int = typer.Option(None, "--max-train", help="Train examples per source (split in two halves)."),
    max_eval: int = typer.Option(None, "--max-eval", help="Test examples per distribution."),
    seed: int = typer.Option(0, "--seed", help="Seed of the halves, the jobs and the intervals."),
    set_: list[str] = typer.Option([], "--set", help="Hyperparameter override METHOD.PARAM=VALUE."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16"),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Job cache (default: GENIES_HOME/jobs)."),
    data_root: Path = typer.Option(None, "--data-root", help="GENIES distributions folder (default: the "
                                   "configured data)."),
    plain: bool = typer.Option(False, "--plain", help="One line per job instead of a progress bar."),
) -> None:
    """Train a weak supervisor, a strong student on its labels and a strong ceiling; print PGR."""
    from rich.console import Console
    from rich.markup import escape

    from genies.commands._format import stdout_console
    from genies.commands.run import parse_overrides
    from genies.pipeline.executor import LocalExecutor
    from genies.weak_to_strong import W2SConfig, w2s
    from genies.weak_to_strong.files import RESULTS_FILE
    from genies.weak_to_strong.run import print_summary

    config = W2SConfig(out=out, weak=weak, strong=strong, method=method, weak_method=weak_method, losses=tuple(loss),
                       aux_max=aux_max, labels=labels, target_tuned=target_tuned, shifts=shifts, preset=preset,
                       budget=budget, max_train=max_train, max_eval=max_eval, seed=seed, hparams=parse_overrides(set_),
                       device=device, dtype=dtype, cache_dir=cache_dir, data_root=data_root)
    results = w2s(config, executor=LocalExecutor(plain=plain, console=Console(stderr=True)))
    console = stdout_console()
    print_summary(results, console)
    console.print(f"written: {escape(str(out / RESULTS_FILE))}", highlight=False)
    if results.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("w2s")(w2s_command)
