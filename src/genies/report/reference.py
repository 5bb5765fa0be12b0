"""The published GENIES numbers (`generalization_metrics` layout) read for comparison with ours.

Layout: DIR/<model>/<intervention>/{GENIES,all}.csv with the original columns. all.csv lists the
13 unwanted-persona shifts twice (docs/methods.md#56-unique-shifts-and-69-rows); rows are de-duplicated by (source, target) so a
reference mean is over unique shifts, like ours. The original names LoRA differently (its folder
`lora_fine_tuning`, its target-tuned winner `classify_lora`), so both are read as genies' `lora`;
the other folders keep their names (`lat_stim_1`, `ccs`): which of ours they are comparable with
is `genies.report.published`'s decision, not a renaming.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from genies.report.load import ReportError

# Original result-folder name -> genies intervention name (identity for the others).
INTERVENTION_ALIASES = {"lora_fine_tuning": "lora", "classify_lora": "lora"}
LISTS = ("GENIES", "all")


@dataclass(frozen=True)
class ReferenceRow:
    """One published (model, intervention, shift) result: what its DE was computed from, so a
    comparison can recompute it with another target-tuned definition."""

    model: str
    intervention: str
    lists: tuple[str, ...]  # which of GENIES / all the shift appears in
    source: str
    target: str
    target_reference: str
    differential_elicitation: float
    generalization_accuracy: float
    baseline_accuracy: float
    target_tuned_capability: float
    target_tuned_capability_intervention: str  # the best-of winner on the reference (`lora` for classify_lora)
    source_ID_accuracy: float  # the intervention trained on the source, evaluated on the source's test split


def canonical_intervention(name: str) -> str:
    """genies' name for an original folder or winner name (only LoRA's differ)."""
    return INTERVENTION_ALIASES.get(name, name)


def _float(path: Path, line: int, row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError, TypeError) as err:
        raise ReportError(path, f"line {line}: column {key!r} is not a number ({row.get(key)!r})") from err


def _text(path: Path, line: int, row: dict[str, str], key: str) -> str:
    value = row.get(key)
    if not value:
        raise ReportError(path, f"line {line}: column {key!r} is missing or empty")
    return value


def load_reference(directory: str | Path) -> list[ReferenceRow]:
    """Every published row under DIR, one per (model, intervention, unique shift)."""
    root = Path(directory)
    if not root.is_dir():
        raise ReportError(root, "reference folder not found")
    found: dict[tuple[str, str, str, str], ReferenceRow] = {}
    for csv_path in sorted(root.glob("*/*/*.csv")):
        if csv_path.stem not in LISTS:
            continue
        model, intervention = csv_path.parent.parent.name, canonical_intervention(csv_path.parent.name)
        with csv_path.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                key = (model, intervention, row.get("source", ""), row.get("target", ""))
                if not key[2] or not key[3]:
                    raise ReportError(csv_path, f"line {line}: missing source or target")
                previous = found.get(key)
                lists = (previous.lists if previous else ()) + (
                    (csv_path.stem,) if not previous or csv_path.stem not in previous.lists else ()
                )
                found[key] = ReferenceRow(
                    model=model,
                    intervention=intervention,
                    lists=lists,
                    source=key[2],
                    target=key[3],
                    target_reference=_text(csv_path, line, row, "target_reference"),
                    differential_elicitation=_float(csv_path, line, row, "differential_elicitation"),
                    generalization_accuracy=_float(csv_path, line, row, "generalization_accuracy"),
                    baseline_accuracy=_float(csv_path, line, row, "baseline_accuracy"),
                    target_tuned_capability=_float(csv_path, line, row, "target_tuned_capability"),
                    target_tuned_capability_intervention=canonical_intervention(
                        _text(csv_path, line, row, "target_tuned_capability_intervention")),
                    source_ID_accuracy=_float(csv_path, line, row, "source_ID_accuracy"),
                )
    if not found:
        raise ReportError(root, "no <model>/<intervention>/{GENIES,all}.csv files found")
    return list(found.values())
