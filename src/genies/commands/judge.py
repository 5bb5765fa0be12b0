"""`genies judge MODEL_SPEC`: an external judge's accuracy on every chosen distribution.

Thin: the options become a `genies.judging.run_judge` call, the tables are printed with the
listing commands' formatting (`--format csv|json` for machines), and the results are written to
`--out` (judge.json, judge.csv, judge-outcomes.json; docs/judges.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from genies.commands._format import (
    Column,
    OutputFormat,
    format_option,
    print_table,
    stdout_console,
    to_json,
    write_records,
)
from genies.rounding import count, interval, number

if TYPE_CHECKING:
    from genies.judging import JudgeResults

CUE_MARK = "*"


def _dists(values: list[str]) -> list[str]:
    """Repeated and comma-separated --dists values, in order."""
    return [part for value in values for part in value.split(",") if part]


def judge_command(
    spec: str = typer.Argument(..., metavar="MODEL_SPEC",
                               help="rm:MODEL (a reward model), dpo:POLICY[,REF] (a DPO pair) or judge:MODEL "
                                    "(an instruct model as judge; judge:default is the embedded one)."),
    out: Path = typer.Option(..., "--out", help="Folder to write judge.json, judge.csv and judge-outcomes.json to."),
    dists: list[str] = typer.Option(["genies"], "--dists", "-d",
                                    help="genies, all, extreme, probing, a category, or distribution names or "
                                         "folders; repeatable, or comma-separated."),
    max_eval: int = typer.Option(None, "--max-eval", help="Test examples per distribution (a seeded random "
                                 "subset; default: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the example subset, the tie coin and the intervals."),
    set_: list[str] = typer.Option([], "--set", help="Judge setting NAME.PARAM=VALUE, e.g. rm.template=raw "
                                   "(see docs/judges.md)."),
    data_root: Path = typer.Option(None, "--data-root", help="GENIES distributions folder (default: the "
                                   "configured data)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: auto)."),
    dtype: str = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16 (default: auto)."),
    quantize: str = typer.Option(None, "--quantize", help="none, 8bit or 4bit (default: none)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the "
                                           "checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Job store for the predictions (default: "
                                   "GENIES_HOME/jobs); a rerun reuses them."),
    fmt: OutputFormat = format_option(),
) -> None:
    """Judge the test split of every chosen distribution with a reward model, a DPO pair or an LLM judge."""
    from genies.commands.run import parse_overrides
    from genies.errors import ConfigError
    from genies.judging import OUTCOMES_FILE, csv_rows, run_judge, write_results

    name = spec.partition(":")[0]
    overrides = parse_overrides(set_)
    unused = sorted(set(overrides) - {name})
    if unused:
        raise ConfigError(f"--set names {', '.join(map(repr, unused))}, but the judge is {name!r}")
    settings: dict[str, Any] = dict(overrides.get(name, {}))
    for key, value in (("device", device), ("dtype", dtype), ("quantize", quantize)):
        if value is not None:
            settings[key] = value
    if trust_remote_code:
        settings["trust_remote_code"] = True
    if allow_pickle:
        settings["allow_pickle"] = True

    err = Console(stderr=True)

    def progress(distribution: str, status: str) -> None:
        if status in ("scoring", "failed"):
            err.print(f"{status} {escape(distribution)}", highlight=False)

    results = run_judge(spec, _dists(dists), data_root=data_root, max_eval=max_eval, seed=seed, overrides=settings,
                        cache_dir=cache_dir, on_distribution=progress)
    write_results(results, out)
    if fmt is OutputFormat.json:
        typer.echo(to_json(results.to_json()))
    elif fmt is OutputFormat.csv:
        write_records(fmt, csv_rows(results))
    else:
        show(results, stdout_console())
        stdout_console().print(f"written: {escape(str(out / 'judge.json'))}, {escape(str(out / 'judge.csv'))}, "
                               f"{escape(str(out / OUTCOMES_FILE))}",
                               highlight=False)
    if results.failed:
        raise typer.Exit(1)


def show(results: JudgeResults, console: Console) -> None:
    """The per-distribution, per-scope and per-shift tables of a `JudgeResults`."""
    has_bias = any(r.position_bias is not None for r in results.distributions)
    columns = [
        Column("distribution", lambda r: escape(r.distribution) + (f" [yellow]{CUE_MARK}[/]"
                                                                    if r.length_cue_flag else "")),
        Column("accuracy", lambda r: number(r.accuracy), kind="number"),
        Column("95% CI", lambda r: interval(r.ci_low, r.ci_high), kind="number", drop=2),
        Column("pairs", lambda r: count(r.pairs), kind="number", drop=4),
        Column("len L/S", lambda r: f"{number(r.length_longer_accuracy)}/{number(r.length_shorter_accuracy)}",
               kind="number", drop=3),
    ]
    if has_bias:
        columns.append(Column("pos. bias", lambda r: number(r.position_bias), kind="number", drop=1))
    columns.append(Column("categories", lambda r: escape(", ".join(r.categories)), drop=5))
    notes = [f"{CUE_MARK} length alone solves much of this distribution: a longer- or shorter-response rule beats "
             "0.5 by more than 0.2"]
    if has_bias:
        notes.append(f"position bias: P(the first response shown wins) - 0.5, averaged over both orders of every "
                     f"pair; over all distributions {number(results.position_bias)}")
    print_table(console, f"{escape(results.judge)} on each distribution's test split", columns,
                results.distributions, notes)
    print_table(console, "mean accuracy by scope (interval over distributions)", [
        Column("scope", lambda s: escape(s.scope)),
        Column("distributions", lambda s: count(s.distributions), kind="number", drop=2),
        Column("mean accuracy", lambda s: number(s.mean_accuracy), kind="number"),
        Column("95% CI", lambda s: interval(s.ci_low, s.ci_high), kind="number", drop=1),
        Column("len L/S", lambda s: f"{number(s.mean_length_longer_accuracy)}/"
                                    f"{number(s.mean_length_shorter_accuracy)}", kind="number", drop=3),
    ], results.scopes)
    if results.shifts:
        print_table(console, "across shifts: accuracy on the source and on the target", [
            Column("shift", lambda s: f"{escape(s.source)} -> {escape(s.target)}"),
            Column("source", lambda s: number(s.source_accuracy), kind="number"),
            Column("target", lambda s: number(s.target_accuracy), kind="number"),
            Column("change", lambda s: number(s.change), kind="number"),
            Column("category", lambda s: escape(s.category), drop=1),
        ], results.shifts)
    for failure in results.failed:
        console.print(f"failed: {escape(failure.distribution)}: {escape(failure.error)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_command)
