"""`genies cache ls | du | clear`: see the disk space genies' caches use, and free the activation store's.

Entries are content-addressed, so clearing never changes results: a cleared entry is recomputed
the next time a method needs it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from genies.commands._format import (
    Column,
    OutputFormat,
    format_option,
    human_size,
    print_table,
    stdout_console,
    write_records,
)
from genies.rounding import count

if TYPE_CHECKING:
    from genies.models.activations import CacheEntry


console = Console(soft_wrap=True)  # du's lines and messages: one line each, whatever the width
err_console = Console(stderr=True, soft_wrap=True)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in an age like '7d', '12h', '30m', '2w' or '90s'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not an age like 7d, 12h, 30m, 2w or 90s", param_hint="--older-than")
    return float(match.group(1)) * UNITS[match.group(2)]


def _age(created: float) -> str:
    days = (time.time() - created) / 86400
    return f"{days:.1f} d" if days >= 1 else f"{days * 24:.1f} h"


def _model(entry: CacheEntry) -> str:
    """The name the model was loaded by (older entries have only its fingerprint)."""
    return str(entry.meta.get("model_name", entry.meta.get("model")))


LS_COLUMNS = (
    Column("key", lambda e: e.key[:12], drop=4),
    Column("model", lambda e: escape(_model(e))),
    Column("distribution", lambda e: escape(str(e.meta.get("distribution")))),
    Column("split", lambda e: escape(str(e.meta.get("split")))),
    Column("template", lambda e: escape(str(e.meta.get("template"))), drop=3),
    Column("position", lambda e: escape(str(e.meta.get("position"))), drop=3),
    Column("dtype", lambda e: escape(str(e.meta.get("dtype"))), drop=2),
    Column("texts", lambda e: count(e.meta.get("n_texts")), kind="number"),
    Column("size", lambda e: human_size(e.size_bytes), kind="number"),
    Column("age", lambda e: _age(e.created), kind="number", drop=1),
)


def _record(entry: CacheEntry) -> dict[str, Any]:
    """Everything known about an entry, for csv and json."""
    return {"key": entry.key, "path": str(entry.path), "size_bytes": entry.size_bytes, "created": entry.created,
            "model_name": _model(entry), **{k: v for k, v in entry.meta.items() if k not in ("key", "created")}}


def ls(fmt: OutputFormat = format_option()) -> None:
    """List the stored activation entries: model, data, template, position, texts, size, age.

    csv and json add the full key, the folder, the size in bytes, the creation time (Unix
    seconds) and every field of the entry's meta.json."""
    from genies.models.activations import ActivationStore  # torch: imported only when used

    store = ActivationStore()
    entries = store.entries()
    if fmt is not OutputFormat.table:
        write_records(fmt, [_record(e) for e in entries])
        return
    print_table(stdout_console(), f"activations in {escape(str(store.root))}: {len(entries)} entries", LS_COLUMNS,
                entries)


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under `folder`, links not followed; (0, 0) when it does not exist."""
    sizes = [p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()] \
        if folder.is_dir() else []
    return sum(sizes), len(sizes)


def du() -> None:
    """Print the disk use of everything genies caches: the activation store (in total and per
    model), the job store (fitted states and predictions) and the converted models."""
    from genies.models.activations import ActivationStore  # torch: imported only when used
    from genies.models.catalog import models_cache_dir
    from genies.pipeline.store import default_root

    store = ActivationStore()
    entries = store.entries()
    per_model: dict[str, int] = {}
    for e in entries:
        name = str(e.meta.get("model_name", e.meta.get("model")))
        per_model[name] = per_model.get(name, 0) + e.size_bytes
    activations = store.total_size()
    console.print(f"activations: {human_size(activations)} in {len(entries)} entries under {store.root}")
    for name, size in sorted(per_model.items(), key=lambda kv: -kv[1]):
        console.print(f"  {human_size(size):>10}  {escape(name)}")
    total = activations
    for label, folder in (("jobs", default_root()), ("converted models", models_cache_dir())):
        size, files = folder_size(folder)
        total += size
        console.print(f"{label}: {human_size(size)} in {files} files under {folder}")
    console.print(f"total: {human_size(total)}")


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
