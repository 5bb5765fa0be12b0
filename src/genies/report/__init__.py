"""The HTML report: per-shift results, plots, calibration, published numbers and a sample browser."""

from genies.report.browse import build_browse
from genies.report.build import build_report

__all__ = ["build_browse", "build_report"]
