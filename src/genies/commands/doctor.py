"""`genies doctor [--gpu [--shape S] [--dry-run]]`: self-checks of an installation and of a GPU."""

from __future__ import annotations

import json

import typer

from genies.errors import ConfigError


def doctor(
    gpu: bool = typer.Option(False, "--gpu", help="Check the GPU instead of the installation: bf16 against fp32, "
                             "tree against dense attention (and speed), LoRA steps and peak memory, on random "
                             "weights in --shape."),
    shape: str = typer.Option("default", "--shape", help="With --gpu: default (the embedded model's shape), 7b or "
                              "13b (LLaMA shapes); tiny for a quick look."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --gpu: print the checks, shape, dtypes and memory "
                                 "estimates, and run nothing (works without a GPU)."),
    model: str = typer.Option("default", "--model", "-m", help="Without --gpu: the model to check (see `genies models "
                              "list`), or random:default / random:tiny for random weights. Without the embedded "
                              "model installed, `default` checks random weights in its shape."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of every result."),
) -> None:
    """Check that this installation (or, with --gpu, this GPU) computes what genies' tests expect.

    One line per check (ok, fail or skipped, why, seconds); exit 0 when no check failed, else 1."""
    import transformers

    from genies.bench.machine import describe_machine
    from genies.provenance import package_versions

    if not gpu and (dry_run or shape != "default"):
        raise ConfigError("--shape and --dry-run go with --gpu: `genies doctor --gpu --shape 7b --dry-run`")
    if gpu and model != "default":
        raise ConfigError("--model is for the installation checks; --gpu builds random weights in --shape")
    transformers.logging.disable_progress_bar()  # weight-loading bars would split the one-line results
    if gpu and dry_run:
        from genies.doctor.gpu import plan_gpu_checks

        plan = plan_gpu_checks(shape)
        for line in plan.lines():
            typer.echo(line)
        if as_json:
            typer.echo(json.dumps(plan.to_dict()))
        return

    def show(result) -> None:
        typer.echo(result.line())

    if gpu:
        from genies.doctor.gpu import run_gpu_checks

        report = run_gpu_checks(shape, on_result=show)
    else:
        from genies.doctor.install import run_install_checks

        report = run_install_checks(model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                    on_result=show)
    report.subject.update(machine=describe_machine(), versions=package_versions(
        ("torch", "transformers", "peft", "accelerate", "bitsandbytes")))
    typer.echo(report.summary())
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
