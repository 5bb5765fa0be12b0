"""`build_browse`: the sample browser over the datasets themselves, without a run.

Readers pick one distribution, or a shift to see its source and target examples side by side,
the way the original project's website let them browse samples. Same page machinery as the
report: one offline HTML file, each split's examples parsed only when shown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genies.data.schema import Distribution, Example
from genies.data.shift import Shift
from genies._io import write_atomic
from genies.report.page import render_page


def _compact(examples: Sequence[Example]) -> list[list[Any]]:
    return [[ex.prompt, list(ex.responses), ex.preferred] for ex in examples]


def build_browse(
    distributions: Sequence[Distribution],
    out: str | Path,
    shifts: Sequence[Shift] = (),
    splits: Sequence[str] = ("test",),
    max_examples: int | None = None,
) -> Path:
    """Write the dataset browser; shifts need their source and target among `distributions`."""
    out = Path(out)
    by_name = {d.id: d for d in distributions}
    missing = sorted({name for s in shifts for name in (s.source, s.target) if name not in by_name})
    if missing:
        raise ValueError(f"shifts name distributions that were not loaded: {', '.join(missing)}")
    blobs: dict[str, Any] = {}
    dists = []
    for dist in distributions:
        keys = {}
        for split in splits:
            examples = dist.split(split)
            key = f"{len(blobs)}"
            blobs[f"ex-{key}"] = _compact(examples[:max_examples] if max_examples else examples)
            keys[split] = key
        dists.append({"name": dist.id, "blobs": keys})
    data = {
        "mode": "browse",
        "splits": list(splits),
        "dists": dists,
        "shifts": [
            {
                "name": f"{s.source} → {s.target}",
                "source": s.source,
                "target": s.target,
                "target_reference": s.target_reference,
                "category": s.category,
                "family": s.family,
            }
            for s in shifts
        ],
    }
    title = "genies datasets"
    limit = f", first {max_examples} examples of each split" if max_examples else ""
    body = (
        f'<header class="top"><h1>{html.escape(title)}</h1><div class="sub">{len(distributions)} distribution(s), '
        f"{len(shifts)} shift(s), split(s): {html.escape(', '.join(splits))}{limit}</div></header>"
        '<main><section id="samples"><h2>Sample browser</h2><p class="note">Pick a shift to see its source and '
        "target examples side by side, or one distribution. The preferred response of each example is green. "
        'Search matches prompts and responses.</p><div id="browser"></div></section></main>'
    )
    write_atomic(out, render_page(title, body, data, blobs))
    return out
