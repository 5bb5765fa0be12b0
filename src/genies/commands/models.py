"""`genies models list | info`: which models load offline, and what a loaded model looks like."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genies.commands._format import (
    Column,
    OutputFormat,
    format_option,
    human_size,
    print_table,
    stdout_console,
    write_records,
)

if TYPE_CHECKING:
    from genies.models.catalog import ModelEntry

console = Console()
if not console.is_terminal:
    console.width = max(console.width, 160)  # piped output: keep paths on one line

LIST_COLUMNS = (
    Column("name", lambda e: escape(e.name)),
    Column("kind", lambda e: escape(e.kind)),
    Column("size", lambda e: "-" if e.size_mib is None else human_size(e.size_mib * 2**20), kind="number"),
    Column("location / note", lambda e: _where(e), kind="prose"),
)


def _where(entry: ModelEntry) -> str:
    """The location when the name does not already say it (a converted model is named by its
    folder), then the note."""
    lines = [entry.location] if entry.location != entry.name else []
    return escape("\n".join(lines + ([entry.note] if entry.note else [])))


def list_(
    fmt: OutputFormat = format_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as --format json (kept for scripts)."),
) -> None:
    """List the default model, converted GGUF models and models in the local Hugging Face cache."""
    from dataclasses import asdict

    from genies.models.catalog import list_models

    entries = list_models()
    if as_json or fmt is not OutputFormat.table:
        write_records(OutputFormat.json if as_json else fmt, [asdict(e) for e in entries])
        return
    print_table(stdout_console(), "models available offline", LIST_COLUMNS, entries)


def model_info(lm, load_seconds: float) -> dict:
    """The facts `models info` shows, as plain values."""
    from genies.models.base import context_length

    config = lm.model.config
    heads = getattr(config, "num_attention_heads", None)
    try:
        context = context_length(lm)
    except ValueError:
        context = None
    return {
        "name": lm.name, "path": str(lm.path), "architecture": (config.architectures or [type(lm.model).__name__])[0],
        "model_type": config.model_type, "parameters": sum(p.numel() for p in lm.model.parameters()),
        "layers": lm.num_layers, "heads": heads, "kv_heads": getattr(config, "num_key_value_heads", heads),
        "hidden_size": config.hidden_size, "vocab_size": config.vocab_size, "dtype": str(lm.dtype).removeprefix("torch."),
        "device": str(lm.device), "context_length": context, "fingerprint": lm.fingerprint,
        "pad_token": lm.tokenizer.pad_token, "eos_token": lm.tokenizer.eos_token,
        "load_seconds": round(load_seconds, 2),
    }


def info(
    name: str = typer.Argument("default", help="default | local folder | .gguf file | Hugging Face id in the local cache"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also load pickled (.bin) weights."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Load a model and show its path, architecture, size, layers, heads, dtype, context and fingerprint."""
    from genies.models.loading import load_model

    start = time.perf_counter()
    with console.status(f"loading {escape(name)} (a GGUF model is converted once, ~30 s)"):
        lm = load_model(name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    facts = model_info(lm, time.perf_counter() - start)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    table = Table(show_header=False, title=f"model {escape(name)}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in facts.items():
        table.add_row(key, escape(f"{value:,}" if isinstance(value, int) else str(value)))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_)
    app.command("info")(info)
