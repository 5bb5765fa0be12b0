"""Shared fixtures: tiny random models (no downloads) and the real GENIES data when available.

Also the skip policy (docs/TESTING.md): every run ends with one line saying what was skipped and
why, and under CI a test marked `data` (or `browser`) that skips although GENIES_DATA_DIR points to
a folder (or Chromium is on PATH) fails instead: a skip there means the test no longer finds what
the machine has, and would otherwise hide its work for good.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import genies  # noqa: F401  (first: it sets the OpenMP spin policy before torch is imported)
import pytest
import transformers

from genies.models.base import LoadedModel
from genies.models.testing import tiny_model

transformers.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A 2-layer random Llama-shaped model with a byte tokenizer, shared by the whole session."""
    return tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules of many tiny-model steps: torch's thread hand-off outweighs the work on a
    shared 2-core machine. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def data_dir_present() -> Path | None:
    """GENIES_DATA_DIR when it names an existing folder (the GENIES distributions)."""
    env = os.environ.get("GENIES_DATA_DIR")
    return Path(env) if env and Path(env).is_dir() else None


def find_chromium() -> Path | None:
    """Chromium wherever PATH finds it (Debian: chromium, Ubuntu and others: chromium-browser)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


@pytest.fixture(scope="session")
def genies_data_dir() -> Path:
    """The real GENIES distributions; tests marked `data` are skipped without GENIES_DATA_DIR."""
    found = data_dir_present()
    if found is None:
        pytest.skip("GENIES_DATA_DIR is not set to the GENIES distributions folder")
    return found


@pytest.fixture(scope="session")
def genies_reference_dir() -> Path:
    """The published GENIES results: GENIES_REFERENCE_DIR, else `reference-results` beside the
    distributions folder of GENIES_DATA_DIR (the shared layout: genies/{distributions,
    distribution_shifts,reference-results})."""
    env = os.environ.get("GENIES_REFERENCE_DIR")
    if env:
        if not Path(env).is_dir():
            pytest.skip(f"GENIES_REFERENCE_DIR={env} is not a folder")
        return Path(env)
    data = data_dir_present()
    if data is None:
        pytest.skip("GENIES_DATA_DIR is not set (the published results sit beside the distributions)")
    reference = data.parent / "reference-results"
    if not reference.is_dir():
        pytest.skip(f"no published GENIES results at {reference} (set GENIES_REFERENCE_DIR)")
    return reference


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """The Chromium on PATH; tests marked `browser` are skipped without one."""
    found = find_chromium()
    if found is None:
        pytest.skip("chromium is not on PATH (make browser, or apt-get install -y chromium)")
    return found


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing into the user's cache; the model cache stays shared for speed."""
    if "GENIES_HOME" not in os.environ:
        monkeypatch.setenv("GENIES_HOME", str(tmp_path_factory.getbasetemp() / "genies-home"))


# ---- skip policy -------------------------------------------------------------------------------

# A test that uses one of these fixtures needs that resource, so it carries the marker even if its
# author forgot it: `-m "not data"` then deselects it instead of running it into a skip.
_MARKER_OF_FIXTURE = {"genies_data_dir": "data", "genies_reference_dir": "data", "chromium_executable": "browser"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _present(marker: str) -> str | None:
    """What the machine has for a `data` or `browser` test, or None."""
    if marker == "data":
        found = data_dir_present()
        return f"GENIES_DATA_DIR={found}" if found else None
    found = find_chromium()
    return f"chromium at {found}" if found else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & _MARKER_OF_FIXTURE.keys():
            marker = _MARKER_OF_FIXTURE[fixture]
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and _in_ci():
        for marker in ("data", "browser"):
            present = item.get_closest_marker(marker) and _present(marker)
            if present:
                report.outcome = "failed"
                report.longrepr = (
                    f"skip policy: this `{marker}` test skipped under CI although {present} "
                    f"(docs/TESTING.md): {_skip_reason(report)}"
                )
                break
    return report


class _SkipSummary:
    """Counts skips by reason and prints `skipped: N (reason: n; ...)` as the run's last line."""

    def __init__(self) -> None:
        self.skips: Counter[str] = Counter()
        self.ran = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # A skip is reported once: by setup (skipif, a fixture) or by the call (the test body).
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips[_skip_reason(report)] += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.ran = not session.config.option.collectonly

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # After pytest's own "N passed, M skipped in Ts" line, so that it ends the output.
        if not self.ran:
            return
        line = skip_summary(self.skips)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, yellow=line != "skipped: 0")
        else:
            print(line)


def skip_summary(skips: Counter[str]) -> str:
    """`skipped: 0`, or `skipped: 3 (reason a: 2; reason b: 1)`, most frequent first."""
    total = sum(skips.values())
    if not total:
        return "skipped: 0"
    return f"skipped: {total} (" + "; ".join(f"{reason}: {n}" for reason, n in skips.most_common()) + ")"


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SkipSummary(), "genies-skip-summary")
