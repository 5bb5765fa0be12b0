"""The shift registry: the 56 unique GENIES shifts, GENIES-15, the original 69 rows, custom files.

The lists ship as package data (`resources/shifts.json`, metadata only, no examples), built from
the original repository's `distribution_shifts/` folder (its `provenance` field says how):

- `all`: the 56 unique (source, target) shifts, each with its category (from
  `extreme/<category>.json` / `probing/<category>.json`) and family (extreme or probing);
- `all-69`: the 69 rows of the original `all.json`, in which the 13 unwanted_personas shifts
  appear twice; it exists only to reproduce the original 69-row means (SPEC §3.3);
- `genies`: the 15 GENIES shifts, with target references (SPEC §2.3).

GENIES.json labels alpaca_short->alpaca_long "extreme" while all.json lists it among the probing
shifts (SPEC §3.4); the family here comes from all.json, so it is "probing" everywhere, and
categories and families never depend on which list a shift was selected from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from genies.data.loading import closest_names, list_distributions
from genies.data.schema import DataError
from genies.data.shift import CATEGORIES, FAMILIES, Shift
from genies.data.synth import synthetic_shifts
from genies.data.validation import raise_first_error, read_records
from genies.errors import GeniesError

BUILT_IN = ("genies", "all", "all-69", *FAMILIES, *CATEGORIES, "synthetic")


class ShiftSelectionError(GeniesError, ValueError):
    """A selector that names no built-in list and no readable file."""


@dataclass(frozen=True)
class _Registry:
    unique: tuple[Shift, ...]
    all_69: tuple[Shift, ...]
    genies: tuple[Shift, ...]


@cache
def _registry() -> _Registry:
    data = json.loads(resources.files("genies.data").joinpath("resources/shifts.json").read_text("utf-8"))
    unique = tuple(Shift(**row) for row in data["shifts"])
    by_pair = {(s.source, s.target): s for s in unique}
    return _Registry(
        unique,
        tuple(by_pair[tuple(pair)] for pair in data["all_69"]),
        tuple(by_pair[tuple(pair)] for pair in data["genies"]),
    )


def known_shift(source: str, target: str) -> Shift | None:
    """The registry's entry for a (source, target) pair, if it is one of the 56."""
    return next((s for s in _registry().unique if (s.source, s.target) == (source, target)), None)


def get_shifts(selector: str) -> list[Shift]:
    """Shifts for "genies" | "all" | "all-69" | "extreme" | "probing" | <category> | "synthetic" | <file>."""
    reg = _registry()
    if selector == "genies":
        return list(reg.genies)
    if selector == "all":
        return list(reg.unique)
    if selector == "all-69":
        return list(reg.all_69)
    if selector in FAMILIES:
        return [s for s in reg.unique if s.family == selector]
    if selector in CATEGORIES:
        return [s for s in reg.unique if s.category == selector]
    if selector == "synthetic":
        return synthetic_shifts()
    path = Path(selector).expanduser()
    if path.is_file():
        return read_shift_file(path)
    hint = closest_names(selector, list(BUILT_IN))
    raise ShiftSelectionError(
        f"unknown shift list {selector!r}: not a built-in list and not a file"
        + (f"; did you mean {', '.join(hint)}?" if hint else f"; built-in lists: {', '.join(BUILT_IN)}")
    )


def read_shift_file(path: str | Path) -> list[Shift]:
    """A custom shift list in the original schema: [{source, target, target_reference?, category?, label?}].

    A missing category comes from the registry for known shifts ("uncategorized" for new ones).
    The family is an explicit "family" field if present, else the registry's for known shifts
    (so GENIES.json's "extreme" label on alpaca_short->alpaca_long does not override all.json),
    else the row's "label", else "unknown". The original all.json (no category, no label) reads
    as is.
    """
    path = Path(path)
    rows, findings = read_records(path, items="{source, target, ...} shift objects")
    raise_first_error(findings)
    if not rows:
        raise DataError(path, "an empty shift list")
    return [_row_to_shift(row, path, i) for i, row in enumerate(rows)]


def _row_to_shift(row: Any, path: Path, index: int) -> Shift:
    if not isinstance(row, dict):
        raise DataError(path, "not an object: each shift is {source, target, ...}", index)
    for key in ("source", "target"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise DataError(path, f"missing {key}: each shift needs a non-empty string {key!r}", index)
    for key in ("target_reference", "category", "label", "family"):
        if key in row and not isinstance(row[key], str):
            raise DataError(path, f"{key!r} must be a string", index)
    known = known_shift(row["source"], row["target"])
    return Shift(
        source=row["source"],
        target=row["target"],
        target_reference=row.get("target_reference") or (known.target_reference if known else row["target"]),
        category=row.get("category") or (known.category if known else "uncategorized"),
        family=row.get("family") or (known.family if known else row.get("label") or "unknown"),
    )


def check_shifts(shifts: list[Shift], data_root: Path) -> list[str]:
    """One message per distribution a shift names that the data root lacks, with the closest names."""
    available = list_distributions(data_root)
    present = set(available)
    problems = []
    for i, shift in enumerate(shifts):
        for role in ("source", "target", "target_reference"):
            name = getattr(shift, role)
            if name in present or (role == "target_reference" and name == shift.target):
                continue
            hint = closest_names(name, available)
            problems.append(
                f"shift {i} ({shift.name}): unknown {role} distribution {name!r}"
                + (f"; did you mean {', '.join(hint)}?" if hint else "")
            )
    return problems
