"""The skip policy of tests/conftest.py, run on small suites through pytester (docs/TESTING.md):
the summary line of skips, skips of `data`/`browser` tests failing under CI when the data or
Chromium is there, markers following the fixtures, Chromium and the reference results found
without machine paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

SUITE = """
import pytest

def test_passes():
    pass

def test_needs_ray():
    pytest.skip("ray is not installed")

@pytest.mark.skipif(True, reason="ray is not installed")
def test_needs_ray_too():
    pass

@pytest.mark.data
def test_data(genies_data_dir):
    assert genies_data_dir.is_dir()

@pytest.mark.data
def test_data_whose_file_moved(genies_data_dir):
    pytest.skip("the original distribution_shifts folder is not beside the data")

@pytest.mark.browser
def test_browser(chromium_executable):
    assert chromium_executable.name in ("chromium", "chromium-browser")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    """A suite with our conftest, on a machine with neither data nor Chromium, outside CI."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_suite=SUITE)
    for name in ("CI", "GENIES_DATA_DIR", "GENIES_REFERENCE_DIR"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return pytester


def _data(tmp_path: Path, *, reference: bool = True) -> Path:
    root = tmp_path / "genies"
    (root / "distributions").mkdir(parents=True)
    if reference:
        (root / "reference-results").mkdir()
    return root / "distributions"


def _chromium_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "chromium-browser") -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_the_run_ends_with_one_line_of_skips_and_reasons(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1, skipped=5)
    assert result.outlines[-1] == (
        "skipped: 5 (ray is not installed: 2; GENIES_DATA_DIR is not set to the GENIES distributions folder: 2; "
        "chromium is not on PATH (make browser, or apt-get install -y chromium): 1)"
    )


def test_a_run_without_skips_says_so(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("-k", "passes")
    result.assert_outcomes(passed=1, deselected=5)
    assert result.outlines[-1] == "skipped: 0"


def test_collect_only_prints_no_skip_line(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--collect-only", "-q")
    assert not any(line.startswith("skipped:") for line in result.outlines)


def test_outside_ci_skips_of_data_tests_stay_skips(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENIES_DATA_DIR", str(_data(tmp_path)))
    suite.runpytest_inprocess().assert_outcomes(passed=2, skipped=4)


def test_in_ci_a_data_test_that_skips_although_the_data_is_there_fails(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENIES_DATA_DIR", str(_data(tmp_path)))
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess()
    # ray's skips and the browser test's (no Chromium) stay skips: only the data test fails
    result.assert_outcomes(passed=2, skipped=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*skip policy: this `data` test skipped under CI although GENIES_DATA_DIR=*"
         "the original distribution_shifts folder is not beside the data*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_in_ci_without_the_data_data_tests_may_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("GENIES_DATA_DIR", "/nonexistent/genies/distributions")
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1, skipped=5)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("ci", ["", "0", "false"])
def test_ci_unset_or_false_is_not_ci(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("GENIES_DATA_DIR", str(_data(tmp_path)))
    monkeypatch.setenv("CI", ci)
    suite.runpytest_inprocess().assert_outcomes(passed=2, skipped=4)


def test_in_ci_a_browser_test_that_skips_although_chromium_is_on_path_fails(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_page="""
        import pytest

        @pytest.fixture(scope="module")
        def browser(chromium_executable):
            pytest.importorskip("a_module_that_is_not_there", reason="playwright is not installed")

        pytestmark = pytest.mark.browser

        def test_page(browser):
            pass
        """
    )
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    _chromium_on_path(tmp_path, monkeypatch)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)  # the skip happens in setup: reported as an error
    result.stdout.fnmatch_lines(["*skip policy: this `browser` test skipped under CI although chromium at *"])
    monkeypatch.delenv("CI")
    pytester.runpytest_inprocess().assert_outcomes(skipped=1)


@pytest.mark.parametrize("name", ["chromium", "chromium-browser"])
def test_chromium_is_found_on_path_under_either_name(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # not the machine's own chromium
    exe = _chromium_on_path(tmp_path, monkeypatch, name)
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        f"""
        from pathlib import Path

        def test_found(chromium_executable):
            assert chromium_executable == Path({str(exe)!r})
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_tests_using_the_data_or_chromium_fixtures_carry_their_marker(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        test_unmarked="""
        def test_forgot_the_marker(genies_data_dir):
            pass

        def test_forgot_it_too(genies_reference_dir):
            pass

        def test_and_the_browser_one(chromium_executable):
            pass
        """
    )
    result = suite.runpytest_inprocess("test_unmarked.py", "-m", "not data and not browser")
    result.assert_outcomes(deselected=3)
    # and under CI with the data there, a skip of one of them fails like a marked test's
    monkeypatch.setenv("GENIES_DATA_DIR", str(_data(tmp_path, reference=False)))
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess("test_unmarked.py", "-k", "forgot_it_too")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no published GENIES results at *reference-results (set GENIES_REFERENCE_DIR)*"])


def test_reference_results_sit_beside_the_distributions_or_where_the_override_says(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        import os
        from pathlib import Path

        def test_reference(genies_reference_dir):
            assert genies_reference_dir == Path(os.environ["EXPECTED"])
        """
    )
    monkeypatch.delenv("GENIES_REFERENCE_DIR", raising=False)
    distributions = _data(tmp_path)
    monkeypatch.setenv("GENIES_DATA_DIR", str(distributions))
    monkeypatch.setenv("EXPECTED", str(distributions.parent / "reference-results"))
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
    elsewhere = tmp_path / "published"
    elsewhere.mkdir()
    monkeypatch.setenv("GENIES_REFERENCE_DIR", str(elsewhere))
    monkeypatch.setenv("EXPECTED", str(elsewhere))
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_every_test_of_the_suite_that_needs_data_or_chromium_is_marked() -> None:
    """Markers by hand where the need is not a fixture: the real-data tests and the browser tests."""
    tests = Path(__file__).parent
    for path in sorted(tests.glob("test_*.py")):
        text = path.read_text()
        if path.name == Path(__file__).name:
            continue
        for fixture, marker in (("genies_data_dir", "data"), ("genies_reference_dir", "data")):
            if f"({fixture}" in text or f" {fixture}:" in text:
                assert f"@pytest.mark.{marker}" in text or f"pytest.mark.{marker}" in text, path.name
        if "chromium_executable" in text or "playwright" in text:
            assert "pytestmark = pytest.mark.browser" in text, path.name
