"""What a run can support, in plain words (issue 13): how wide its mean-DE intervals are and
whether any intervention beats another beyond noise.

A reader of a benchmark table compares means; these sentences say which of those comparisons the
run's data back. The widths are the run's two-level intervals (shifts, then prompts) and the
verdicts its paired comparisons (`genies.intervals.compare`): a difference is "beyond noise" when
its interval excludes 0. The report's first screen shows them; the numbers are rounded by the one
rule the terminal uses (`genies.rounding.number`).
"""

from __future__ import annotations

from dataclasses import dataclass

from genies.intervals import LEVEL, Comparison
from genies.metrics import Aggregate
from genies.pipeline.run_dir import RunResults
from genies.rounding import number

VERDICTS_NAMED = 5  # beyond-noise comparisons the verdict names; the others are one click away


def signed(x: float) -> str:
    """A DE or a difference with its sign ("+0.04", "-0.02"); a value that rounds to 0 keeps the
    side of 0 it is on ("+0.00", "-0.00"; "0.00" only for 0), so an interval bound just above 0,
    which makes a difference beyond noise, does not read like one at 0."""
    text = number(x)
    if text == "-" or text.startswith("-"):
        return text
    if text.strip("0.") == "":
        return "0.00" if x == 0 else ("+" if x > 0 else "-") + text
    return f"+{text}"


def interval_text(low: float, high: float) -> str:
    return f"[{signed(low)}, {signed(high)}]"


def comparison_sentence(c: Comparison) -> str:
    """`lora vs mms: +0.04 [-0.02, +0.10] over 15 shifts: not beyond noise`; when the interval
    excludes 0, the winner comes first and the sentence says who beats whom and on how many shifts
    (`share_a_better` counts the shifts where a is strictly higher, so the flipped side is "at
    least as high")."""
    n, higher = c.n_shifts, round(c.share_a_better * c.n_shifts)
    if c.beyond_noise and c.mean_difference < 0:
        head = (f"{c.b} vs {c.a}: {signed(-c.mean_difference)} {interval_text(-c.ci_high, -c.ci_low)} "
                f"over {n} shifts")
        return f"{head}: {c.b} beats {c.a} beyond noise ({c.b}'s DE is at least as high on {n - higher} of {n} shifts)"
    head = f"{c.a} vs {c.b}: {signed(c.mean_difference)} {interval_text(c.ci_low, c.ci_high)} over {n} shifts"
    if not c.beyond_noise:
        return f"{head}: not beyond noise"
    return f"{head}: {c.a} beats {c.b} beyond noise ({c.a}'s DE is higher on {higher} of {n} shifts)"


def mean_sentence(a: Aggregate) -> str:
    """`lora +0.06 [-0.06, +0.21] over 6 shifts (width 0.27)`."""
    return (f"{a.intervention} {signed(a.mean_de)} {interval_text(a.ci_low, a.ci_high)} over {a.n_shifts} shifts "
            f"(width {number(a.ci_high - a.ci_low)})")


@dataclass(frozen=True)
class RunSupport:
    """The run's overall mean DE per intervention (the baseline left out: 0 by construction)
    and its paired comparisons, beyond-noise ones first."""

    means: tuple[Aggregate, ...]
    comparisons: tuple[Comparison, ...]

    @property
    def beyond_noise(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.beyond_noise)

    def widths_sentence(self) -> str:
        """How precisely the run knows each mean DE."""
        if not self.means:
            return "No intervention has a mean DE: there is nothing this run can support yet."
        level = f"{LEVEL:.0%}".replace("%", " %")
        return (f"Mean DE with {level} intervals that resample the shifts and the prompts within them: "
                + "; ".join(mean_sentence(a) for a in self.means) + ".")

    def verdict_sentence(self) -> str:
        """Whether any intervention beats another beyond noise, in one sentence."""
        if not self.comparisons:
            return "No two interventions share a shift, so none can be compared."
        if not self.beyond_noise:
            return (f"No intervention beats another beyond noise: each of the {len(self.comparisons)} paired "
                    "differences has an interval that contains 0.")
        named = "; ".join(comparison_sentence(c) for c in self.beyond_noise[:VERDICTS_NAMED])
        more = len(self.beyond_noise) - VERDICTS_NAMED
        return (f"Beyond noise ({len(self.beyond_noise)} of {len(self.comparisons)} paired differences exclude 0): "
                + named + (f"; and {more} more (all comparisons below)." if more > 0 else "."))


def run_support(results: RunResults) -> RunSupport:
    """What `results` can support: its overall mean DEs and every paired comparison."""
    baseline = str(results.run.get("baseline_intervention") or "zero_shot")
    means = tuple(a for a in results.aggregates if a.scope == "all" and a.intervention != baseline)
    ordered = sorted(results.comparisons, key=lambda c: not c.beyond_noise)  # stable: beyond-noise first
    return RunSupport(means, tuple(ordered))
