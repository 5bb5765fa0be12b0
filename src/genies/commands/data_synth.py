"""`genies data synth OUT --size N --seed S`: write the synthetic shifts with exact labels.

The folder is a data root like the GENIES one (one sub-folder per distribution) plus `shifts.json`
in the original schema, so `--shifts OUT/shifts.json` or `--shifts synthetic` select its shifts.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from genies.data.synth import DEFAULT_SIZE, DISTRIBUTIONS, synthetic_shifts, write_synthetic
from genies.errors import ConfigError, GeniesError


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)


def synth_command(
    out: Path = typer.Argument(..., help="Folder to write (created if missing)."),
    size: int = typer.Option(DEFAULT_SIZE, "--size", min=1, help="Prompts per split (train and test each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same bytes."),
) -> None:
    """Generate the synthetic distributions (GENIES layout) and their shift file."""
    try:
        with Console(stderr=True).status(f"Generating {len(DISTRIBUTIONS)} synthetic distributions"):
            folder = write_synthetic(out, size, seed)
    except ValueError as err:  # a --size too large to draw that many distinct prompts
        raise ConfigError(f"--size {size}: {err}") from err
    except OSError as err:  # disk full, permissions, OUT is a file: the OS message names the path
        raise GeniesError(f"cannot write the synthetic data to {out}: {err}") from err
    shifts = synthetic_shifts()
    Console().print(f"wrote {len(DISTRIBUTIONS)} distributions ({size} train + {size} test prompts each) and "
                    f"{len(shifts)} shifts over {len({s.category for s in shifts})} categories to {folder} "
                    f"(shift file: {folder / 'shifts.json'})", soft_wrap=True, highlight=False)
    Console().print(f"use it: genies run --shifts {folder / 'shifts.json'} ... (its distributions are found "
                    f"beside it), or export GENIES_DATA_DIR={folder} to make it the data root",
                    soft_wrap=True, highlight=False)
