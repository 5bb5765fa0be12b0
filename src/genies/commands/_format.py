"""How the listing commands print: the one rounding rule (`genies.rounding`), tables that fit
the terminal, and `--format table|csv|json` for machines. csv and json are never rounded: they
carry every field at full precision.

Fitting: a table is measured before it is printed. While its rows do not fit the terminal on one
line each, the column of lowest priority is left out and a footnote names it, so a number is
never cut to `0.8…` and a row stays one line. Only when the columns that are always shown are
still too wide do names wrap inside their column, and numbers keep their full width even then.
Output that is not a terminal (a pipe, a file) gets no width limit, so whole rows reach `grep`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# The width piped output is laid out in: wider than any row genies prints, so nothing folds.
UNLIMITED_WIDTH = 100_000
# How much of a prose column (a description) counts when deciding which columns fit; it wraps.
PROSE_WIDTH = 30


class OutputFormat(str, Enum):
    """What a listing command writes to stdout."""

    table = "table"
    csv = "csv"
    json = "json"


def format_option() -> Any:
    """The `--format` option every listing command takes (a fresh OptionInfo per command)."""
    return typer.Option(OutputFormat.table, "--format", "-f",
                        help="table (fits the terminal) | csv | json (every field, full precision).")


def human_size(n_bytes: float) -> str:
    """A size in binary units: whole bytes, else one decimal of KiB, MiB or GiB."""
    n = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass(frozen=True)
class Column:
    """One table column. `cell` turns a record into the cell's markup (escape plain text with
    `rich.markup.escape`). `kind` says how the column gives way when the terminal is narrow:

    - "number": right-aligned, never wrapped or cut; left out whole if it must go;
    - "text" (names, values): kept on one line while any droppable column is left to drop;
    - "prose" (a description, a help text): wraps freely, so only `PROSE_WIDTH` of it counts
      when deciding which columns fit.

    When the table is too wide, the column with the highest `drop` is left out first; 0 means
    always shown."""

    header: str
    cell: Callable[[Any], str]
    kind: Literal["number", "text", "prose"] = "text"
    drop: int = 0


def stdout_console() -> Console:
    """The console a command prints its result on: the terminal's width on a terminal, no
    width limit otherwise (made per call, so it sees the current stdout and COLUMNS)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=UNLIMITED_WIDTH)
    return console


def _fit(title: str, columns: Sequence[Column], records: Sequence[Any], width: int) -> tuple[Table, list[str]]:
    """The table of `records` with as many columns as fit `width`, and the headers left out."""
    cells = [[column.cell(r) for column in columns] for r in records]
    shown = list(range(len(columns)))
    while True:
        droppable = [i for i in shown if columns[i].drop > 0]
        if not droppable or _natural_width(_table(title, columns, cells, shown, prose_cap=True)) <= width:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    return _table(title, columns, cells, shown), [c.header for i, c in enumerate(columns) if i not in shown]


def print_table(console: Console, title: str, columns: Sequence[Column], records: Sequence[Any],
                notes: Iterable[str] = (), shown_in: str = "--format csv") -> None:
    """Print the fitted table, then its notes and, when columns were left out, which ones and
    where else to read them (`shown_in`: the command's `--format csv`, or a file it writes)."""
    table, dropped = _fit(title, columns, records, console.width)
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, style="dim")
    if dropped:
        console.print(f"not shown at this width: {escape(', '.join(dropped))} "
                      f"(a wider terminal or {escape(shown_in)} shows them)", highlight=False, style="dim")


def write_records(fmt: OutputFormat, records: Sequence[Mapping[str, Any]]) -> None:
    """Write `records` as csv or json, unrounded."""
    typer.echo(to_csv(records) if fmt is OutputFormat.csv else to_json(records), nl=fmt is OutputFormat.json)


def to_json(value: Any) -> str:
    """Strict JSON (NaN and inf as null; a value JSON has no type for, as its str), indented
    for people who read it too."""
    return json.dumps(_strict(value), indent=2, default=str)


def to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV with floats by repr (full precision), NaN as an empty cell and a list as JSON. The
    columns are every key of any record (records need not share all: older cache entries lack
    newer fields), in order of first appearance."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if records:
        keys = list(dict.fromkeys(k for record in records for k in record))
        writer.writerow(keys)
        for record in records:
            writer.writerow([_csv_cell(record.get(k)) for k in keys])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_strict(value), default=str)
    return str(value)


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _table(title: str, columns: Sequence[Column], cells: list[list[str]], shown: list[int],
           prose_cap: bool = False) -> Table:
    """The table of the `shown` columns; `prose_cap` caps prose at `PROSE_WIDTH` (for measuring).
    A rule under the header and two spaces between columns, no box: at 80 columns every
    character of border is one a number cannot use."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for i in shown:
        column = columns[i]
        if column.kind == "number":
            # never narrower than its widest cell: a number is left out whole or shown whole
            widest = max([Text.from_markup(row[i]).cell_len for row in cells] + [cell_len(column.header)])
            table.add_column(column.header, justify="right", no_wrap=True, min_width=widest)
        else:
            cap = PROSE_WIDTH if prose_cap and column.kind == "prose" else None
            table.add_column(column.header, overflow="fold", max_width=cap)
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    return table


def _natural_width(table: Table) -> int:
    """The table's width with every row on one line."""
    return Console(width=UNLIMITED_WIDTH).measure(table).maximum
