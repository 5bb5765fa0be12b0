"""The shift registry: the 56 unique GENIES shifts, GENIES-15, the original 69 rows, custom files.

The lists ship as package data (`resources/shifts.json`, metadata only, no examples), built from
the original repository's `distribution_shifts/` folder (its `provenance` field says how):

- `all`: the 56 unique (source, target) shifts, each with its category (from
  `extreme/<category>.json` / `probing/<category>.json`) and family (extreme or probing);
- `all-69`: the 69 rows of the original `all.json`, in which the 13 unwanted_personas shifts
  appear twice; it exists only to reproduce the original 69-row means
  (docs/methods.md#56-unique-shifts-and-69-rows);
- `genies`: the 15 GENIES shifts, with target references (docs/methods.md#the-genies-15-shifts).

GENIES.json labels alpaca_short->alpaca_long "extreme" while all.json lists it among the probing
shifts (docs/methods.md#the-genies-15-shifts); the family here comes from all.json, so it is
"probing" everywhere, and categories and families never depend on which list a shift was selected
from.
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


def shift_file_data_root(path: Path, shifts: list[Shift]) -> Path | None:
    """The shift file's own folder when it holds every distribution the shifts name by name
    (a name that is a path names itself)."""
    folder = Path(path).expanduser().resolve().parent
    names = {n for s in shifts for n in (s.source, s.target, s.target_reference) if not is_distribution_path(n)}
    return folder if names <= set(list_distributions(folder)) else None


def data_root_for(shifts: list[Shift], shift_file: Path | None) -> Path:
    """Where to read `shifts` from: the shift file's own folder when it holds every distribution
    they name, else the configured data root (GENIES_DATA_DIR, the data home). Distributions kept
    beside their shift list are the ones it was written for (`genies data synth` writes its
    shift file there): with GENIES_DATA_DIR pointing at other data, or at an older copy of the
    same names, the file's folder is still what the researcher means. A DataNotFoundError (the
    configured root's) when neither is there."""
    from genies.data.home import find_data_root

    beside = shift_file_data_root(shift_file, shifts) if shift_file is not None else None
    return beside if beside is not None else find_data_root()


def shift_file_of(selector: str | object) -> Path | None:
    """The file a `--shifts` value names, when it names one (not a list name like "genies")."""
    if not isinstance(selector, str):
        return None
    path = Path(selector).expanduser()
    return path if path.is_file() else None


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


SHIFT_KEYS = ("source", "target", "target_reference", "category", "family", "label")
DISTRIBUTION_KEYS = ("source", "target", "target_reference")


def read_shift_file(path: str | Path) -> list[Shift]:
    """A custom shift list in the original schema: [{source, target, target_reference?, category?, label?}].

    A missing category comes from the registry for known shifts ("uncategorized" for new ones).
    The family is an explicit "family" field if present, else the registry's for known shifts
    (so GENIES.json's "extreme" label on alpaca_short->alpaca_long does not override all.json),
    else the row's "label", else "unknown". The original all.json (no category, no label) reads
    as is. A distribution is a name under the data root or, when it contains "/" or starts with
    "." or "~", a distribution folder relative to the shift file (kept as its absolute path), so
    one's own data can be mixed with the GENIES distributions. An unknown key (a misspelt
    "catgory" would silently leave the shift uncategorized) or a shift from a distribution to
    itself is an error naming the file and the row.
    """
    path = Path(path)
    rows, findings = read_records(path, items="{source, target, ...} shift objects")
    raise_first_error(findings)
    if not rows:
        raise DataError(path, "an empty shift list")
    return [_row_to_shift(row, path, i) for i, row in enumerate(rows)]


def is_distribution_path(name: str) -> bool:
    """Whether a shift names a distribution by folder path rather than by name."""
    return "/" in name or name.startswith((".", "~"))


def _row_to_shift(row: Any, path: Path, index: int) -> Shift:
    if not isinstance(row, dict):
        raise DataError(path, "not an object: each shift is {source, target, ...}", index, item="shift")
    for key in row:
        if key not in SHIFT_KEYS:
            hint = closest_names(str(key), list(SHIFT_KEYS))
            raise DataError(path, f"unknown key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else
                                                            f"; a shift has {', '.join(SHIFT_KEYS)}"), index,
                            item="shift")
    for key in ("source", "target"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise DataError(path, f"missing {key}: each shift needs a non-empty string {key!r}", index,
                            item="shift")
    for key in ("target_reference", "category", "label", "family"):
        if key in row and not isinstance(row[key], str):
            raise DataError(path, f"{key!r} must be a string", index, item="shift")
    names = {key: _distribution(row[key], path, index, key) for key in DISTRIBUTION_KEYS if row.get(key)}
    if names["source"] == names["target"]:
        raise DataError(path, f"source and target are the same distribution ({row['source']!r}): a shift "
                              "needs two", index, item="shift")
    known = known_shift(names["source"], names["target"])
    return Shift(
        source=names["source"],
        target=names["target"],
        target_reference=names.get("target_reference") or (known.target_reference if known else names["target"]),
        category=row.get("category") or (known.category if known else "uncategorized"),
        family=row.get("family") or (known.family if known else row.get("label") or "unknown"),
    )


def _distribution(name: str, path: Path, index: int, key: str) -> str:
    """A distribution name as it is, or a folder path resolved against the shift file's folder."""
    if not is_distribution_path(name):
        return name
    folder = (path.parent / Path(name).expanduser()).resolve()
    if not folder.is_dir():
        raise DataError(path, f"{key} {name!r}: no distribution folder at {folder}", index, item="shift")
    return str(folder)


def check_shifts(shifts: list[Shift], data_root: Path) -> list[str]:
    """One message per distribution a shift names that the data root lacks, with the closest names
    (distributions named by folder path were checked when the shift file was read)."""
    available = list_distributions(data_root)
    present = set(available)
    problems = []
    for i, shift in enumerate(shifts):
        for role in ("source", "target", "target_reference"):
            name = getattr(shift, role)
            if name in present or (role == "target_reference" and name == shift.target) or is_distribution_path(name):
                continue
            hint = closest_names(name, available)
            problems.append(
                f"shift {i} ({shift.name}): unknown {role} distribution {name!r}"
                + (f"; did you mean {', '.join(hint)}?" if hint else "")
            )
    return problems
