"""The one rounding rule for every number genies shows, in the terminal and in the HTML report.

A fraction (an accuracy, DE, elicitation, a calibration error, a confidence bound, a share of
prompts) is shown with `DECIMALS` decimals, rounded half away from zero on the exact value of the
float. That is what JavaScript's `toFixed` does, so the terminal and the HTML report never round
one value in opposite directions (Python's own `f"{x:.3f}"` rounds half to even: A_tt 0.8125
printed 0.812 here and 0.813 in the report). A count is an integer. Its own module, without
typer or rich, because the report and the weak-to-strong tables round as the commands do.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

DECIMALS = 2


def number(x: float | None, decimals: int = DECIMALS) -> str:
    """`x` by the one rounding rule; "-" for a missing or undefined (NaN, inf) value."""
    if x is None or not math.isfinite(x):
        return "-"
    rounded = Decimal(x).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return str(abs(rounded) if rounded == 0 else rounded)  # "0.00", never "-0.00"


def interval(low: float | None, high: float | None) -> str:
    """A confidence interval as `low..high` (`..`, not `-`, so a negative bound reads clearly)."""
    return f"{number(low)}..{number(high)}"


def count(n: int | None) -> str:
    """A count, as a plain integer ("-" when unknown)."""
    return "-" if n is None else str(int(n))
