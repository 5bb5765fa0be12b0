"""`genies data download` and `genies data import PATH`: get the GENIES data into the data home.

Failures (offline, a bad archive, a manifest mismatch) are `StoreError`s whose message says what
to do; the CLI prints it as one line and exits 2, since a traceback would only hide the advice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from genies.data.manifest import load_manifest
from genies.data.store import DEFAULT_URLS, ImportResult, StoreError, download, import_data


_DEST_HELP = "Install here instead of the data home (GENIES_HOME/distributions)."


def register(app: typer.Typer) -> None:
    app.command("download")(download_command)
    app.command("import")(import_command)


def download_command(
    dest: Path = typer.Option(None, "--dest", help=_DEST_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Download the GENIES datasets archive (resumable), verify every file and install it."""
    _report(lambda: download(dest, urls=DEFAULT_URLS, progress=progress, manifest=load_manifest()))


def import_command(
    path: Path = typer.Argument(..., help="A distributions folder, a folder above it, or a .tar/.tar.gz archive."),
    dest: Path = typer.Option(None, "--dest", help=_DEST_HELP),
) -> None:
    """Import the GENIES data from a local folder or archive, verifying every file against the manifest."""
    _report(lambda: import_data(path, dest, manifest=load_manifest()))


def _report(action: Callable[[], ImportResult]) -> None:
    out = Console()
    try:
        result = action()
    except OSError as err:  # disk full, permissions: the OS message names the file
        raise StoreError(f"installing the GENIES data failed: {err}") from err
    if result.source == "already installed":
        out.print(f"GENIES data already installed and verified ({result.files} files) in {result.path}",
                  soft_wrap=True, highlight=False)
        return
    out.print(f"{result.files} files verified against the GENIES manifest and installed in {result.path} "
              f"(from {result.source})", soft_wrap=True, highlight=False)
    if result.ignored:
        out.print(f"left out {len(result.ignored)} file(s) the manifest does not list: "
                  + ", ".join(result.ignored[:5]) + (", ..." if len(result.ignored) > 5 else ""),
                  soft_wrap=True, highlight=False)
