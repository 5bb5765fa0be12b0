"""What a doctor run says: one `CheckResult` per check, collected into a `DoctorReport`.

A check is a function that returns an `Outcome` when it passes and raises `CheckFailed` or
`CheckSkipped` otherwise. `Checkup.run` times it and turns any other exception into a failed
check named after the exception: a doctor exists to report what is broken, so a crash inside a
check (an out-of-memory error, a missing kernel) is a finding to print on one line, not a
traceback that hides the checks after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "fail", "skipped"]
Metrics = Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a passing check found: one line for people, numbers for `--json`."""

    detail: str
    metrics: Metrics = field(default_factory=dict)


class CheckFailed(Exception):
    """The check ran and found a problem; `detail` says what, with the numbers that show it."""

    def __init__(self, detail: str, metrics: Metrics | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.metrics = dict(metrics or {})


class CheckSkipped(Exception):
    """The check does not apply here (a missing library, no tree attention for the
    architecture); `reason` says why. A skip is not a failure."""

    def __init__(self, reason: str, metrics: Metrics | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.metrics = dict(metrics or {})


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, ok / fail / skipped, why, how long it took and what it measured."""

    name: str
    status: Status
    detail: str
    seconds: float
    metrics: Metrics = field(default_factory=dict)

    def line(self) -> str:
        """`ok      scoring       engine = naive reference ... (1.2 s)`: one line per check."""
        return f"{self.status:<7} {self.name:<13} {self.detail} ({self.seconds:.1f} s)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "seconds": round(self.seconds, 3), "metrics": {k: _plain(v) for k, v in self.metrics.items()}}


def _plain(value: Any) -> Any:
    """A metric as strict JSON: floats rounded to 6 significant digits, NaN and inf as None."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


@dataclass
class DoctorReport:
    """Every check of one doctor run and what it ran on (`subject`: model, shape, device)."""

    mode: str  # "install" or "gpu"
    subject: dict[str, Any]
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Passed when no check failed (skipped checks do not count against it)."""
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in ("ok", "fail", "skipped")}
        total = sum(c.seconds for c in self.checks)
        return (f"{'passed' if self.ok else 'FAILED'}: {counts['ok']} ok, {counts['fail']} failed, "
                f"{counts['skipped']} skipped in {total:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "ok": self.ok, "subject": {k: _plain(v) for k, v in self.subject.items()},
                "checks": [c.to_dict() for c in self.checks],
                "seconds": round(sum(c.seconds for c in self.checks), 3)}


class Checkup:
    """Runs checks in order, records their results and hands each to `on_result` as it ends,
    so a long GPU run prints its lines as it goes."""

    def __init__(self, report: DoctorReport, on_result: Callable[[CheckResult], None] | None = None) -> None:
        self.report = report
        self.on_result = on_result

    def run(self, name: str, body: Callable[[], Outcome]) -> CheckResult:
        start = time.perf_counter()
        try:
            outcome = body()
            status, detail, metrics = "ok", outcome.detail, outcome.metrics
        except CheckSkipped as skip:
            status, detail, metrics = "skipped", skip.reason, skip.metrics
        except CheckFailed as failure:
            status, detail, metrics = "fail", failure.detail, failure.metrics
        except Exception as err:  # noqa: BLE001 - reported as this check's failure (module docstring)
            status, detail, metrics = "fail", _one_line(err), {}
        return self._record(CheckResult(name, status, detail, time.perf_counter() - start, metrics))

    def skip(self, name: str, reason: str) -> CheckResult:
        """Record a check that cannot run because an earlier one failed."""
        return self._record(CheckResult(name, "skipped", reason, 0.0))

    def _record(self, result: CheckResult) -> CheckResult:
        self.report.checks.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
