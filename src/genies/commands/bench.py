"""`genies bench scoring` and `genies bench extraction`: an engine against its naive reference, one process."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genies.errors import ConfigError

console = Console(stderr=True)


def _default_distributions() -> list[str]:
    """The targets of the GENIES-15 shifts, in registry order, each once."""
    from genies.data.shifts import get_shifts

    return list(dict.fromkeys(s.target for s in get_shifts("genies")))


def scoring(
    model: str = typer.Option("default", "--model", "-m", help="Model name (see `genies models list`)."),
    dist: list[str] = typer.Option(None, "--dist", "-d", help="Distribution name or path; repeatable. "
                                   "Default: the 15 targets of the GENIES shifts."),
    n: int = typer.Option(4, "-n", help="Test examples per distribution (the first N)."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Padded tokens per batch (default: engine's)."),
    attention: str = typer.Option("auto", "--attention", help="Engine attention path: auto, tree or dense "
                                  "(docs/PERFORMANCE.md)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """Score the same examples with the engine and the naive reference; report speed against the machine."""
    from genies.bench.scoring import run_scoring_bench
    from genies.data.loading import load_distribution
    from genies.models.loading import load_model
    from genies.models.prefix_tree import check_attention

    try:
        check_attention(attention)  # before the model loads
    except ValueError as err:  # the engine's own check; here it is the user's --attention
        raise ConfigError(str(err)) from err
    lm = load_model(model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    names = dist or _default_distributions()
    datasets = [(name, load_distribution(name).test[:n]) for name in names]
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("scoring", total=2 * len(datasets))

        done = [0]

        def step(name: str, method: str) -> None:
            progress.update(task, description=f"{method} {name}", completed=done[0])
            done[0] += 1

        result = run_scoring_bench(lm, datasets, batch_tokens=batch_tokens, attention=attention, on_step=step)
    _show_engine_vs_naive(
        result, f"scoring benchmark: {escape(result.model)}, {result.examples} examples, "
                f"{result.response_tokens:,} scored tokens", "scored tokens/s",
        f"max |engine - naive| {result.max_abs_diff:.1e}; {result.truncated_examples} truncated", as_json)


def _show_engine_vs_naive(result: Any, title: str, rate: str, checks: str, as_json: bool) -> None:
    """The table and summary line every engine-against-naive bench prints (and its JSON line)."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("engine", justify="right")
    table.add_column("naive", justify="right")
    table.add_row("seconds", f"{result.engine_seconds:.1f}", f"{result.naive_seconds:.1f}")
    table.add_row(rate, f"{result.engine_tokens_per_s:.1f}", f"{result.naive_tokens_per_s:.1f}")
    table.add_row("tokens processed", f"{result.unique_tokens:,}", f"{result.naive_tokens:,}")
    Console().print(table)
    Console().print(
        f"speedup vs naive {result.speedup_vs_naive:.2f}x ({result.attention} attention); "
        f"engine {result.engine_unique_tokens_per_s:.0f} unique "
        f"tokens/s = {result.fraction_of_limit:.2f} of the matmul limit ({result.limit_tokens_per_s:.0f} tokens/s at "
        f"{result.matmul_gflops:.0f} GFLOP/s); {checks}; peak RSS {result.peak_rss_mib:,.0f} MiB\n"
        f"{escape(result.machine)}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def extraction(
    model: str = typer.Option("default", "--model", "-m", help="Model name (see `genies models list`)."),
    dist: list[str] = typer.Option(None, "--dist", "-d", help="Distribution name or path; repeatable. "
                                   "Default: the 15 targets of the GENIES shifts."),
    n: int = typer.Option(4, "-n", help="Test examples per distribution (the first N)."),
    site: str = typer.Option("heads", "--site", help="Site read: heads (mms, cra) or residual (lat, ccs, logistic)."),
    template: str = typer.Option("plain", "--template", help="Text template (see docs/interventions-representation.md)."),
    position: str = typer.Option("last", "--position", help="Token read: last, or mean over the response."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Tokens per forward (default: the engine's)."),
    attention: str = typer.Option("auto", "--attention", help="Engine attention path: auto, tree or dense "
                                  "(docs/PERFORMANCE.md)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """Extract the same hidden states on the engine's prefix trees and one padded sequence per text."""
    from genies.bench.extraction import run_extraction_bench
    from genies.data.loading import load_distribution
    from genies.models.loading import load_model
    from genies.models.prefix_tree import check_attention
    from genies.models.templates import POSITIONS, SITES, UnknownTemplateError, get_template

    try:  # before the model loads
        check_attention(attention)
        get_template(template)
    except (ValueError, UnknownTemplateError) as err:
        raise ConfigError(str(err)) from err
    if site not in SITES:
        raise ConfigError(f"--site must be one of {', '.join(SITES)}; got {site!r}")
    if position not in POSITIONS:
        raise ConfigError(f"--position must be one of {', '.join(POSITIONS)}; got {position!r}")
    lm = load_model(model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    datasets = [(name, load_distribution(name).test[:n]) for name in dist or _default_distributions()]
    with console.status("extracting") as status:
        result = run_extraction_bench(lm, datasets, site=site, template=template, position=position,
                                      batch_tokens=batch_tokens, attention=attention,
                                      on_step=lambda name, method: status.update(f"{method} {name}"))
    _show_engine_vs_naive(
        result, f"extraction benchmark: {escape(result.model)}, {result.examples} examples, {result.texts} texts, "
                f"{result.site} at {result.position} ({escape(result.template)})", "text tokens/s",
        f"max |engine - naive| {result.max_abs_diff:.1e} (values up to {result.max_abs_value:.1e}); "
        f"{result.truncated_texts} truncated", as_json)


def executor(
    model: str = typer.Option("default", "--model", "-m", help="Model name (see `genies models list`)."),
    intervention: list[str] = typer.Option(None, "--intervention", "-i", help="Intervention; repeatable "
                                           "(default: mms). They are the target-tuned candidates too."),
    max_train: int = typer.Option(8, "--max-train", help="Train examples per distribution."),
    max_eval: int = typer.Option(8, "--max-eval", help="Test examples per distribution."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """The synthetic suite run locally and on Ray (two single-CPU workers on a loopback-only cluster)."""
    from genies.bench.executor import run_executor_bench
    from genies.models.loading import resolve_model_folder

    result = run_executor_bench(resolve_model_folder(model), intervention or ["mms"], max_train, max_eval)
    table = Table(title=f"executor benchmark: synthetic suite, {', '.join(result.interventions)}, "
                        f"{result.jobs} jobs, {escape(model)}")
    table.add_column("")
    table.add_column("local", justify="right")
    table.add_column("ray (2 workers)", justify="right")
    table.add_row("seconds", f"{result.local_seconds:.1f}", f"{result.ray_seconds:.1f}")
    table.add_row("job seconds, summed", f"{result.local_job_seconds:.1f}", f"{result.ray_job_seconds:.1f}")
    Console().print(table)
    Console().print(f"ray / local {result.ratio:.3f} ({result.overhead_percent:+.1f} %); ray beyond its jobs "
                    f"{result.ray_beyond_jobs_seconds:.1f} s; cluster start "
                    f"{result.cluster_start_seconds:.1f} s (not counted); results.csv identical: "
                    f"{result.identical_results}\n{escape(result.machine)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def judge(
    model: str = typer.Argument(..., help="The reward model: a folder or a cached hub id (an rm: prefix is allowed)."),
    dist: list[str] = typer.Option(None, "--dist", "-d", help="Distribution name or path; repeatable. "
                                   "Default: the 15 targets of the GENIES shifts."),
    n: int = typer.Option(8, "-n", help="Test examples per distribution (the first N)."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Tokens per forward pass (default: rm:'s)."),
    random_head: bool = typer.Option(False, "--random-head", help="Bench a causal LM as a reward model with a "
                                     "seeded random head (speed only: its rewards mean nothing)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of all numbers."),
) -> None:
    """Score the same responses with rm:'s packed rows and one sequence per response (reward-bench's way)."""
    from genies.bench.judge import run_judge_bench
    from genies.data.loading import load_distribution
    from genies.interventions._external import resolve
    from genies.interventions._rm_judge import RewardModelJudge, load_reward_model

    method = RewardModelJudge.configure(None, **RewardModelJudge.spec_overrides(model.removeprefix("rm:")),
                                        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                        batch_tokens=batch_tokens)
    rm = load_reward_model(resolve(method.model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle),
                           method.placement(), template=method.template, trust_remote_code=trust_remote_code,
                           allow_pickle=allow_pickle, random_head=random_head)
    datasets = [(name, load_distribution(name).test[:n]) for name in dist or _default_distributions()]
    with console.status("scoring") as status:
        result = run_judge_bench(rm, datasets, budget=method.budget(),
                                 on_step=lambda name, path: status.update(f"{path} {name}"))
    table = Table(title=f"reward-model benchmark: {escape(result.model)}, {result.examples} examples, "
                        f"{result.responses} responses")
    table.add_column("")
    table.add_column(f"rm: ({result.forward})", justify="right")
    table.add_column("one per response", justify="right")
    table.add_row("seconds", f"{result.packed_seconds:.1f}", f"{result.naive_seconds:.1f}")
    table.add_row("responses/s", f"{result.packed_responses_per_s:.2f}", f"{result.naive_responses_per_s:.2f}")
    table.add_row("tokens computed", f"{result.packed_tokens:,}", f"{result.naive_tokens:,}")
    Console().print(table)
    Console().print(f"speedup vs one sequence per response {result.speedup_vs_naive:.2f}x; max |packed - naive| "
                    f"{result.max_abs_diff:.1e}; fast path: {result.forward}; {result.batch_tokens} tokens per pass; "
                    f"peak RSS {result.peak_rss_mib:,.0f} MiB\n{escape(result.machine)}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def register(app: typer.Typer) -> None:
    app.command("scoring")(scoring)
    app.command("extraction")(extraction)
    app.command("executor")(executor)
    app.command("judge")(judge)
