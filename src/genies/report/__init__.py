"""The HTML report: per-shift results, plots, calibration, published numbers and a sample browser.

`build_report` and `build_browse` are imported on first use: they bring matplotlib, which the
modules the terminal commands use (`genies.report.published`, `genies.report.support`) do not need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_browse", "build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from genies.report.build import build_report

        return build_report
    if name == "build_browse":
        from genies.report.browse import build_browse

        return build_browse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
