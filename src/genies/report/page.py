"""Assemble one self-contained HTML page: inline CSS and JS from report/assets, data as JSON.

Large data (the examples of each distribution, the probabilities of each evaluation) goes into
separate `<script type="application/json">` blocks that the page parses only when the sample
browser shows them, so a report with tens of thousands of examples still opens quickly.
"""

from __future__ import annotations

import html
import json
import re
from importlib.resources import files
from typing import Any


def asset(name: str) -> str:
    """The text of one file in genies/report/assets (package data)."""
    return files("genies.report").joinpath("assets", name).read_text(encoding="utf-8")


def json_script(element_id: str, value: Any) -> str:
    """A JSON data block that cannot end the script early: every '<' is written as \\u003c."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c")
    return f'<script type="application/json" id="{html.escape(element_id)}">{text}</script>'


def render_page(title: str, body: str, data: Any, blobs: dict[str, Any], script: str = "report.js") -> str:
    """The whole document; `blobs` are the lazily parsed JSON blocks, keyed by element id, and
    `script` the asset that brings the page to life (the judge pages have their own)."""
    parts = {
        "TITLE": html.escape(title),
        "CSS": asset("report.css"),
        "BODY": body,
        "DATA": "\n".join([json_script("genies-data", data), *(json_script(k, v) for k, v in blobs.items())]),
        "JS": asset(script).replace("</", "<\\/"),
    }
    # One pass, so text inside the data can never be mistaken for a later placeholder.
    return re.sub(r"__(TITLE|CSS|BODY|DATA|JS)__", lambda m: parts[m.group(1)], asset("page.html"))


def round_probabilities(values: Any, digits: int = 4) -> list[float | None]:
    """Probabilities as short JSON numbers; NaN (no prediction) becomes null."""
    return [None if v != v else round(float(v), digits) for v in values]
