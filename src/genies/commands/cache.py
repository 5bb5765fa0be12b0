"""`genies cache ls | du | clear`: see and free the disk space the activation store uses.

Entries are content-addressed, so clearing never changes results: a cleared entry is recomputed
the next time a method needs it.
"""

from __future__ import annotations

import re
import time

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


console = Console()
if not console.is_terminal:
    console.width = max(console.width, 160)  # piped output: keep rows on one line
err_console = Console(stderr=True, soft_wrap=True)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in an age like '7d', '12h', '30m', '2w' or '90s'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not an age like 7d, 12h, 30m, 2w or 90s", param_hint="--older-than")
    return float(match.group(1)) * UNITS[match.group(2)]


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _age(created: float) -> str:
    days = (time.time() - created) / 86400
    return f"{days:.1f} d" if days >= 1 else f"{days * 24:.1f} h"


def ls() -> None:
    """List the stored activation entries: model, data, template, position, texts, size, age."""
    from genies.models.activations import ActivationStore  # torch: imported only when used

    store = ActivationStore()
    entries = store.entries()
    table = Table(title=f"activations in {store.root}: {len(entries)} entries")
    for col in ("key", "model", "distribution", "split", "template", "position", "dtype", "texts", "size", "age"):
        table.add_column(col, justify="right" if col in ("texts", "size", "age") else "left", no_wrap=True)
    for e in entries:
        m = e.meta
        table.add_row(e.key[:12], escape(str(m.get("model_name", m.get("model")))), escape(str(m.get("distribution"))),
                      str(m.get("split")), str(m.get("template")), str(m.get("position")), str(m.get("dtype")),
                      str(m.get("n_texts")), human_size(e.size_bytes), _age(e.created))
    console.print(table)


def du() -> None:
    """Print the total disk use of the activation store, and per model."""
    from genies.models.activations import ActivationStore  # torch: imported only when used

    store = ActivationStore()
    entries = store.entries()
    per_model: dict[str, int] = {}
    for e in entries:
        name = str(e.meta.get("model_name", e.meta.get("model")))
        per_model[name] = per_model.get(name, 0) + e.size_bytes
    for name, size in sorted(per_model.items(), key=lambda kv: -kv[1]):
        console.print(f"  {human_size(size):>10}  {escape(name)}")
    console.print(f"{human_size(store.total_size())} in {len(entries)} entries under {store.root}")


def clear(
    older_than: str | None = typer.Option(None, "--older-than", help="Only entries older than this age (7d, 12h, 2w)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete stored activations (all, or only old ones); they are recomputed when next needed."""
    seconds = parse_age(older_than) if older_than is not None else None
    from genies.models.activations import ActivationStore  # torch: imported only when used

    store = ActivationStore()
    what = "all stored activations" if seconds is None else f"activations older than {older_than}"
    if not yes and not typer.confirm(f"Delete {what} under {store.root}?"):
        raise typer.Exit(1)
    removed = store.clear(seconds)
    freed = sum(e.size_bytes for e in removed)
    console.print(f"removed {len(removed)} entries, freed {human_size(freed)}")


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("du")(du)
    app.command("clear")(clear)
