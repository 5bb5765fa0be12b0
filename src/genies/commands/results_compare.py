"""`genies results compare RUN_DIR --published MODEL`: a run's mean DE beside one published
model's, like for like, in the terminal.

The pairs, the A_tt matching and the caveats are `genies.report.published`'s, the logic the
report's "Published GENIES numbers" section uses, so the two never disagree. The table fits 80
columns (a caveat is a numbered note under it); `--format csv` gives one line per comparison,
`--format json` also the per-shift pairs and the interventions with nothing comparable.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
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
from genies.rounding import count, number

if TYPE_CHECKING:
    from genies.report.published import PublishedComparison, PublishedComparisons

REFERENCE_FOLDER = "reference-results"  # beside the distributions in the GENIES data layout


def default_reference_dir() -> Path:
    """`reference-results` beside the GENIES distributions folder, where the shared data layout
    keeps the published tables."""
    from genies.data.home import DataNotFoundError, find_data_root
    from genies.errors import ConfigError

    try:
        path = find_data_root().parent / REFERENCE_FOLDER
    except DataNotFoundError as err:
        raise ConfigError("no published tables: pass --reference DIR (no GENIES data either, whose "
                          f"sibling {REFERENCE_FOLDER} holds them by default)") from err
    if not path.is_dir():
        raise ConfigError(f"no published tables at {path}: pass --reference DIR")
    return path


def _columns() -> list[Column]:
    """Columns of the comparison table; a record is (its caveat's note number or None, the comparison)."""
    att = {"same definition": "same", "mixes definitions": "mixed"}

    def ours(record: tuple[int | None, PublishedComparison]) -> str:
        note, c = record
        return escape(c.intervention + (f" [{note}]" if note else ""))

    return [
        Column("ours", ours),
        Column("published", lambda r: escape(r[1].published), kind="prose"),  # the ccs label wraps
        Column("shifts", lambda r: count(r[1].n_shifts), kind="number"),
        Column("our DE", lambda r: number(r[1].ours_mean_de), kind="number"),
        Column("pub. DE", lambda r: number(r[1].published_mean_de), kind="number"),
        Column("diff.", lambda r: number(r[1].ours_mean_de - r[1].published_mean_de), kind="number", drop=2),
        Column("A_tt", lambda r: escape(att.get(r[1].att_text) or f"LoRA {r[1].n_recomputed}/{r[1].n_shifts}"),
               drop=1),
    ]


def print_comparison(done: PublishedComparisons, model: str, run_label: str) -> None:
    """The table, then its legend, each caveat as a numbered note and what was not compared."""
    console = stdout_console()
    records, caveats = [], []
    for c in done.comparisons:
        if c.caveat:
            caveats.append(c.caveat)
        records.append((len(caveats) if c.caveat else None, c))
    lines = ["mean DE over the shifts both sides have (pub.: published); A_tt: how the published target-tuned "
             "capability was "
             "matched (same: best-of, as this run; LoRA k/n: recomputed with LoRA's on k of n shifts; "
             "mixed: not matched)"]
    lines += [f"[{k}] {escape(text)}" for k, text in enumerate(caveats, start=1)]
    lines += [f"not compared: {escape(n.intervention)}: {escape(n.reason)}" for n in done.not_compared]
    if records:
        print_table(console, f"{escape(run_label)} beside published {escape(model)}", _columns(), records, lines)
        return
    console.print(f"nothing in {escape(run_label)} is comparable with published {escape(model)}", highlight=False)
    for line in lines[1:]:
        console.print(line, highlight=False, style="dim")


def compare(
    run_dir: Path = typer.Argument(..., help="A folder written by `genies run --out`."),
    published: str = typer.Option(..., "--published", help="The published model (llama-7b, llama-13b, "
                                                            "llama-30b, openllama-3b)."),
    reference: Path | None = typer.Option(
        None, "--reference",
        help="The folder of published tables, one <model>/<intervention> folder each, as the original "
             "released them (default: reference-results beside the GENIES distributions)."),
    fmt: OutputFormat = format_option(),
) -> None:
    """Compare a run's mean DE with a published model's, like for like.

    lat meets lat_stim_1/2 by its stimulus, ccs only as legacy_oracle, A_tt the run's where the tables allow.
    """
    from genies.pipeline.run_dir import load_run
    from genies.report.published import compare_with_published
    from genies.report.reference import load_reference

    results = load_run(run_dir)
    rows = load_reference(reference or default_reference_dir())
    done = compare_with_published(results, rows, models=[published])
    if fmt is OutputFormat.table:
        label = " · ".join(str(x) for x in (results.run.get("model"), results.run.get("preset")) if x)
        print_comparison(done, published, label or run_dir.name)
    elif fmt is OutputFormat.csv:
        write_records(fmt, [c.record() for c in done.comparisons])
    else:
        typer.echo(to_json({
            "run": str(run_dir), "published_model": published,
            "comparisons": [{**c.record(), "shifts": [asdict(s) for s in c.shifts]} for c in done.comparisons],
            "not_compared": [{"intervention": n.intervention, "model": n.model, "reason": n.reason}
                             for n in done.not_compared],
        }))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
