"""`genies bench rm` and `genies bench train`: the reward-model methods' scoring and training
passes against their naive references, on real data, one process each (docs/PERFORMANCE.md)."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genies.errors import ConfigError

console = Console(stderr=True)
REWARD_METHODS = ("lora", "prompt_tuning", "full_fine_tune")


def _genies_targets() -> list[str]:
    from genies.data.shifts import get_shifts

    return list(dict.fromkeys(s.target for s in get_shifts("genies")))


def _genies_sources() -> list[str]:
    from genies.data.shifts import get_shifts

    return list(dict.fromkeys(s.source for s in get_shifts("genies")))


def _method(name: str, preset: str | None, overrides: dict):
    """The reward-model method `name` at `preset`, with `overrides` (None values left out)."""
    from genies.interventions.registry import get_intervention

    if name not in REWARD_METHODS:
        raise ConfigError(f"--intervention must be one of {', '.join(REWARD_METHODS)}; got {name!r}")
    cls = get_intervention(name)
    return cls.configure(preset, **{k: v for k, v in overrides.items() if v is not None})


def rm(
    model: str = typer.Option("default", "--model", "-m", help="Base model name (see `genies models list`)."),
    dist: list[str] = typer.Option(None, "--dist", "-d", help="Distribution name or path; repeatable. "
                                   "Default: the 15 targets of the GENIES shifts."),
    n: int = typer.Option(4, "-n", help="Test examples per distribution (the first N)."),
    intervention: str = typer.Option("lora", "--intervention", "-i", help="lora or prompt_tuning."),
    preset: str = typer.Option("cpu", "--preset", help="The method's preset."),
    max_length: int = typer.Option(None, "--max-length", help="Keep the last N tokens of each input (default: "
                                   "all; the cpu preset's 256 cuts a long prompt's responses apart)."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Prefix-tree nodes per pass (default: the "
                                     "method's)."),
    train_steps: int = typer.Option(2, "--train-steps", help="Steps trained on the first distribution to build "
                                    "the scored state."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """Score the same responses with a fitted reward model: shared prompts vs one sequence per response."""
    from genies.bench.rm import run_rm_bench
    from genies.data.loading import load_distribution
    from genies.models.loading import load_model

    method = dataclasses.replace(_method(intervention, preset, {"batch_tokens": batch_tokens}), max_length=max_length)
    lm = load_model(model)
    datasets = [(name, load_distribution(name)) for name in dist or _genies_targets()]
    with console.status("scoring") as status:
        result = run_rm_bench(lm, method, datasets, n=n, train_steps=train_steps,
                              on_step=lambda name, path: status.update(f"{path} {name}"))
    table = Table(title=f"reward-model scoring: {escape(result.model)}, {escape(result.method)}, "
                        f"{result.examples} examples, {result.responses} responses")
    table.add_column("")
    table.add_column(f"shared prompts ({result.forward})", justify="right")
    table.add_column("one per response", justify="right")
    table.add_row("seconds", f"{result.packed_seconds:.1f}", f"{result.naive_seconds:.1f}")
    table.add_row("responses/s", f"{result.packed_responses_per_s:.2f}", f"{result.naive_responses_per_s:.2f}")
    table.add_row("tokens computed", f"{result.packed_tokens:,}", f"{result.naive_tokens:,}")
    Console().print(table)
    Console().print(f"speedup vs naive {result.speedup_vs_naive:.2f}x; {result.packed_tokens_per_s:.0f} tokens/s = "
                    f"{result.fraction_of_limit:.2f} of the matmul limit ({result.limit_tokens_per_s:.0f} tokens/s at "
                    f"{result.matmul_gflops:.0f} GFLOP/s); max |packed - naive| {result.max_abs_diff:.1e}; "
                    f"state: {escape(result.state)}; peak RSS {result.peak_rss_mib:,.0f} MiB\n"
                    f"{escape(result.machine)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def train(
    model: str = typer.Option("default", "--model", "-m", help="Base model name (see `genies models list`)."),
    dist: list[str] = typer.Option(None, "--dist", "-d", help="Distribution name or path; repeatable. "
                                   "Default: the sources of the GENIES shifts."),
    pairs: int = typer.Option(16, "--pairs", help="Training pairs per distribution (its first N prompts)."),
    intervention: str = typer.Option("lora", "--intervention", "-i", help="lora, prompt_tuning or "
                                     "full_fine_tune."),
    preset: str = typer.Option("cpu", "--preset", help="The method's preset."),
    steps: int = typer.Option(8, "--steps", help="Optimizer steps per distribution."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """Train the same steps on the same pairs: the fit's shared-prompt pass vs two sequences per pair."""
    from genies.bench.train import run_train_bench
    from genies.data.loading import load_distribution
    from genies.models.loading import load_model

    extra = {"allow_cpu": True} if intervention == "full_fine_tune" else {}
    method = _method(intervention, preset, {"steps": steps, **extra})
    lm = load_model(model)
    datasets = [(name, load_distribution(name).limited(max_train=pairs)) for name in dist or _genies_sources()]
    with console.status("training") as status:
        result = run_train_bench(lm, method, datasets, on_step=lambda name, side: status.update(f"{side} {name}"))
    table = Table(title=f"reward-model training: {escape(result.model)}, {escape(result.method)}, "
                        f"{result.pairs} pairs, {result.steps} steps per distribution")
    table.add_column("")
    table.add_column(f"fit ({result.forward})", justify="right")
    table.add_column("two sequences per pair", justify="right")
    table.add_row("seconds", f"{result.new_seconds:.1f}", f"{result.naive_seconds:.1f}")
    table.add_row("pair tokens/s", f"{result.new_pair_tokens_per_s:.0f}", f"{result.naive_pair_tokens_per_s:.0f}")
    table.add_row("TFLOPs computed", f"{result.new_tflops:.2f}", f"{result.naive_tflops:.2f}")
    table.add_row("fraction of the matmul limit", f"{result.fraction_of_limit:.2f}",
                  f"{result.naive_fraction_of_limit:.2f}")
    Console().print(table)
    Console().print(f"speedup vs naive {result.speedup_vs_naive:.2f}x; matmul {result.matmul_gflops:.0f} GFLOP/s; "
                    f"max |new - naive| trained tensor {result.max_abs_diff:.1e}, loss {result.max_loss_diff:.1e}; "
                    f"peak RSS {result.peak_rss_mib:,.0f} MiB\n{escape(result.machine)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def register(app: typer.Typer) -> None:
    app.command("rm")(rm)
    app.command("train")(train)
