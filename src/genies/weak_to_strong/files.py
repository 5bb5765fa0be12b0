"""A weak-to-strong run folder: `w2s.json` (every number, `W2SResults`) and `w2s-examples.json`
(the half-B examples whose weak label is wrong, `SourceExamples`), written atomically and read
back into the same typed dataclasses, so the report never reads a number by a string key."""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from genies._io import write_atomic
from genies._typed_json import decode, read_json
from genies.errors import FileError
from genies.pipeline.run_dir import plain_json
from genies.weak_to_strong.metrics import SourceExamples, W2SResults

RESULTS_FILE = "w2s.json"
EXAMPLES_FILE = "w2s-examples.json"
FORMAT = 2  # 2: a student per loss (`students`), partial results, the examples file


def write_results(out: Path, results: W2SResults, examples: tuple[SourceExamples, ...]) -> None:
    write_atomic(out / EXAMPLES_FILE, json.dumps({"format": FORMAT, "sources": plain_json(
        [asdict(e) for e in examples])}, ensure_ascii=False) + "\n")
    write_atomic(out / RESULTS_FILE, json.dumps({"format": FORMAT, **plain_json(asdict(results))}, indent=1) + "\n")


def is_w2s_folder(folder: Path) -> bool:
    return (Path(folder) / RESULTS_FILE).is_file()


def load_results(folder: str | Path) -> W2SResults:
    """`folder/w2s.json` as `W2SResults`; a missing, unreadable or older file is one line naming it."""
    path = Path(folder) / RESULTS_FILE
    return decode(W2SResults, _read(path), partial(FileError, path))


def load_examples(folder: str | Path) -> tuple[SourceExamples, ...] | None:
    """`folder/w2s-examples.json`, or None when the run wrote none (it stopped before the end)."""
    path = Path(folder) / EXAMPLES_FILE
    if not path.is_file():
        return None
    sources = decode(tuple[SourceExamples, ...], _read(path).get("sources"), partial(FileError, path), "sources")
    for i, source in enumerate(sources):  # the page shows one choice per student and loss
        for j, example in enumerate(source.wrong_weak_labels):
            losses = [choice.loss for choice in example.students]
            if twice := sorted({loss for loss in losses if losses.count(loss) > 1}):
                raise FileError(path, f"sources[{i}].wrong_weak_labels[{j}]: student {twice[0]} twice")
    return sources


def _read(path: Path) -> dict[str, Any]:
    doc = read_json(path, partial(FileError, path), "file not found: is this a `genies w2s --out` folder?")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format", "none") if isinstance(doc, dict) else "not an object"
        raise FileError(path, f"format {found}, this genies reads format {FORMAT}: rerun `genies w2s` (its jobs are "
                        "cached) to rewrite it")
    return doc
