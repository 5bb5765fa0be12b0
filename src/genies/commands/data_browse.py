"""`genies data browse [NAME ...] --out datasets.html [--shifts SELECTOR]`: browse the data offline.

The same sample browser as the report, over the datasets themselves: pick a distribution, or a
shift to see its source and target examples side by side. Without names or --shifts it covers
the 56 built-in shifts.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from genies.data.loading import load_distribution
from genies.data.schema import SPLITS, Distribution
from genies.errors import GeniesError, UnknownNameError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def browse(
    names: list[str] | None = typer.Argument(None, help="Distribution names or folders to include."),
    out: Path = typer.Option(Path("datasets.html"), "--out", "-o", help="The HTML file to write."),
    shifts: str | None = typer.Option(
        None,
        "--shifts",
        help="Shifts to browse side by side: genies | all | <category> | synthetic | <file> (its distributions "
        "beside it are read, as by genies run). Default: all, unless names are given.",
    ),
    split: list[str] = typer.Option(["test"], "--split", help="Split(s) to include: test, train (repeatable)."),
    max_examples: int | None = typer.Option(
        None, "--max-examples", min=1, help="Keep the first N examples of each split."
    ),
) -> None:
    """Write an offline HTML page for browsing source and target examples."""
    for s in split:
        if s not in SPLITS:
            raise UnknownNameError("split", s, SPLITS)
    if shifts or not names:  # where `genies run` reads them: the synthetic suite, a shift file's own folder
        from genies.pipeline.api import resolve_data

        data = resolve_data(shifts or "all")
        chosen, load = data.shifts, data.load
    else:
        chosen, load = [], load_distribution
    wanted = list(dict.fromkeys([*(names or []), *(n for s in chosen for n in (s.source, s.target))]))
    dists: list[Distribution] = []
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("loading distributions", total=len(wanted))
        for name in wanted:
            dist = load(name)
            for s in split:
                dist.split(s)  # read now, so a broken file fails here with its name
            dists.append(dist)
            progress.advance(task)
    from genies.report.browse import build_browse  # matplotlib: only when used

    try:
        path = build_browse(dists, out, shifts=chosen, splits=split, max_examples=max_examples)
    except OSError as err:  # reading the data raised DataError already; this is writing --out
        raise GeniesError(f"cannot write the dataset browser to {out}: {err}") from err
    console.print(f"dataset browser: {escape(str(path.resolve()))} ({len(dists)} distributions, {len(chosen)} shifts)")


def register(app: typer.Typer) -> None:
    app.command("browse")(browse)
