"""The report rendered in headless Chromium: no console errors, no network, table, browser, speed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genies.report import build_browse, build_report
from genies.report.testing import fake_examples, write_run_dir

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
INTERVENTIONS = ("zero_shot", "lora", "mms")
N_SHIFTS = 10


@pytest.fixture(scope="module")
def browser(chromium_executable: Path) -> Iterator[object]:
    """Chromium found on PATH (conftest.chromium_executable), driven by playwright."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(chromium_executable), args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A loaded page plus everything it logged or requested, for assertions."""

    def __init__(self, browser: object, path: Path, width: int = 1400, fragment: str = "") -> None:
        self.page = browser.new_page(viewport={"width": width, "height": 1000})  # type: ignore[attr-defined]
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        start = time.perf_counter()
        self.page.goto(path.as_uri() + fragment)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        self.load_seconds = time.perf_counter() - start

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def wait_count(self, selector: str, n: int, timeout: float = 10.0) -> None:
        """Poll from Python: the page's CSP forbids the eval that wait_for_function(str) needs."""
        deadline = time.monotonic() + timeout
        while self.count(selector) != n:
            assert time.monotonic() < deadline, f"{selector}: {self.count(selector)} elements, expected {n}"
            self.page.wait_for_timeout(50)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_dir(
        tmp_path_factory.mktemp("run") / "run", n_shifts=N_SHIFTS, interventions=INTERVENTIONS, n_examples=25
    )


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report([run_dir], tmp_path_factory.mktemp("out") / "report.html")


@pytest.fixture()
def page(browser: object, report: Path) -> Iterator[Page]:
    loaded = Page(browser, report)
    yield loaded
    loaded.page.close()


def _errors_in(run_dir: Path, evaluation: str) -> set[int]:
    """Examples where the model ranked some dispreferred response above the preferred one."""
    doc = json.loads((run_dir / evaluation).read_text())
    return {p["example_index"] for p in doc["pairs"] if p["p_preferred"] <= 0.5}


def _row(run_dir: Path, intervention: str, target: str) -> dict:
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    return next(r for r in rows if r["intervention"] == intervention and r["target"] == target)


def test_loads_offline_without_console_errors(page: Page) -> None:
    assert page.errors == []
    assert all(url.startswith(("file:", "data:", "about:")) for url in page.requests), page.requests


def test_table_has_one_row_per_shift_and_filters(page: Page) -> None:
    rows = "#results-table tbody tr"
    assert page.count(rows) == N_SHIFTS  # one intervention chosen by default
    page.page.select_option("#f-int", "*")
    assert page.count(rows) == N_SHIFTS * len(INTERVENTIONS)
    page.page.select_option("#f-cat", "difficulty")
    assert page.count(rows) == 2 * len(INTERVENTIONS)  # shifts 0 and 8 of the generated run
    page.page.select_option("#f-cat", "*")
    page.page.select_option("#f-fam", "probing")
    assert page.count(rows) == 2 * len(INTERVENTIONS)  # spurious_cues and unwanted_personas shifts


def test_sorting_by_de(page: Page) -> None:
    page.page.click("#results-table th[data-key='de']")  # numbers sort descending first
    cells = page.page.locator("#results-table tbody tr td:nth-child(5)").all_inner_texts()
    values = [float(t.split()[0]) for t in cells]  # the DE, then its interval
    assert values == sorted(values, reverse=True) and len(values) == N_SHIFTS


def test_choosing_a_shift_shows_its_examples(page: Page) -> None:
    page.page.select_option("#b-shift", "source_3 → target_3")
    first = page.page.locator("#ex-list .ex").first.locator(".prompt").inner_text()
    assert "[target_3 #0]" in first
    assert page.count("#ex-list .ex") == 10  # first page


def test_clicking_a_table_row_opens_its_examples(page: Page) -> None:
    page.page.click("#results-table tbody tr:nth-child(5)")
    assert page.page.locator("#b-shift").input_value() == "source_4 → target_4"
    assert "[target_4 #0]" in page.page.locator("#ex-list .ex .prompt").first.inner_text()


def test_error_filter_shows_exactly_the_errors(page: Page, run_dir: Path) -> None:
    page.page.select_option("#b-int", "mms")
    page.page.select_option("#b-shift", "source_2 → target_2")
    page.page.select_option("#b-size", "50")
    page.page.click("#b-filter button[data-v='errors']")
    expected = _errors_in(run_dir, _row(run_dir, "mms", "target_2")["target_evaluation"])
    cards = page.page.locator("#ex-list .ex")
    shown = {int(i) for i in cards.evaluate_all("els => els.map(e => e.dataset.index)")}
    assert shown == expected and expected
    assert page.count("#ex-list .ex.err") == len(expected)
    assert page.count("#ex-list .resp.pick") >= len(expected)  # the wrongly chosen response is marked
    page.page.click("#b-filter button[data-v='correct']")
    shown = {int(i) for i in cards.evaluate_all("els => els.map(e => e.dataset.index)")}
    assert shown and not shown & expected


def test_search_finds_text_and_marks_it(page: Page) -> None:
    page.page.select_option("#b-shift", "source_1 → target_1")
    page.page.fill("#b-q", "target_1 #7]")
    page.wait_count("#ex-list .ex", 1)
    assert page.page.locator("#ex-list .ex").get_attribute("data-index") == "7"
    assert page.page.locator("#ex-list .ex mark").first.inner_text().lower() == "target_1 #7]"
    page.page.fill("#b-q", "no such text anywhere")
    page.page.wait_for_selector("#ex-list .empty")


def test_paging_moves_through_examples(page: Page) -> None:
    page.page.click("#b-next")
    assert page.page.locator("#ex-list .ex").first.get_attribute("data-index") == "10"
    assert page.page.locator("#b-page").inner_text() == "page 2 / 3"


def test_the_sample_browser_state_is_in_the_link(browser: object, report: Path) -> None:
    """Choices in the sample browser are written to the URL fragment, and a page opened at that
    link shows the same examples (a colleague can be sent "this error on this shift")."""
    first = Page(browser, report)
    first.page.select_option("#b-int", "mms")
    first.page.select_option("#b-shift", "source_2 → target_2")
    first.page.click("#b-filter button[data-v='errors']")
    if first.count("#b-next:not([disabled])"):
        first.page.click("#b-next")
    link = first.page.evaluate("location.hash")
    assert link.startswith("#samples/") and "intervention=mms" in link and "filter=errors" in link
    shown = first.page.locator("#ex-list .ex").evaluate_all("els => els.map(e => e.dataset.index)")
    first.page.close()
    second = Page(browser, report, fragment=link)
    assert second.page.locator("#b-int").input_value() == "mms"
    assert second.page.locator("#b-shift").input_value() == "source_2 → target_2"
    assert second.page.locator("#ex-list .ex").evaluate_all("els => els.map(e => e.dataset.index)") == shown
    assert second.errors == []
    second.page.close()
    plain = Page(browser, report, fragment="#results")  # an ordinary anchor is left as it is
    assert plain.page.evaluate("location.hash") == "#results"
    plain.page.close()


def test_screenshots(page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / "report.png"))
    page.page.select_option("#b-int", "mms")
    page.page.click("#b-filter button[data-v='errors']")
    page.page.select_option("#b-sort", "confident")
    page.page.evaluate("document.getElementById('samples').scrollIntoView()")
    page.page.screenshot(path=str(ARTIFACTS / "report-samples.png"))
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_model_pick_follows_scores_and_ties_pick_nothing(browser: object, tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2)
    target = json.loads((run / "results.json").read_text())["rows"][0]["target_evaluation"]
    doc = json.loads((run / target).read_text())
    k = len(doc["examples"][0]["responses"])
    wrong = (doc["examples"][0]["preferred"] + 1) % k
    doc["response_scores"] = [[5.0 if j == wrong else 0.0 for j in range(k)], [1.0] * k]
    for pair in doc["pairs"]:
        pair["p_preferred"] = (
            0.5 if pair["example_index"] == 1 else (0.1 if pair["dispreferred_index"] == wrong else 0.9)
        )
    (run / target).write_text(json.dumps(doc))
    loaded = Page(browser, build_report([run], tmp_path / "r.html"))
    assert loaded.errors == []
    cards = loaded.page.locator("#ex-list .ex")
    assert cards.nth(0).locator(".resp").nth(wrong).get_attribute("class") == "resp beats pick"
    assert cards.nth(1).locator(".resp.pick").count() == 0 and "tie" in cards.nth(1).locator(".badge").inner_text()
    loaded.page.close()


def test_two_runs_side_by_side(browser: object, run_dir: Path, tmp_path: Path) -> None:
    other = write_run_dir(
        tmp_path / "other", n_shifts=N_SHIFTS, interventions=INTERVENTIONS, n_examples=5, seed=3, model="other-model"
    )
    loaded = Page(browser, build_report([run_dir, other], tmp_path / "two.html"))
    assert loaded.errors == []
    loaded.page.select_option("#f-run", "*")
    assert loaded.count("#results-table tbody tr") == 2 * N_SHIFTS
    loaded.page.select_option("#b-run", "1")
    assert loaded.count("#ex-list .ex") == 5
    assert loaded.count("#summary-table th") == 1 + 2 * 2  # intervention, then DE and accuracy per run
    loaded.page.close()


def test_dataset_browser_shows_source_and_target_side_by_side(browser: object, tmp_path: Path) -> None:
    from genies.data.schema import Distribution
    from genies.data.shift import Shift

    def dist(name: str) -> Distribution:
        examples = fake_examples(name, 12, 0)
        return Distribution.from_examples(name, examples, examples)

    out = build_browse(
        [dist("src"), dist("tgt"), dist("other")],
        tmp_path / "d.html",
        shifts=[Shift("src", "tgt", "tgt", "skill", "extreme")],
    )
    loaded = Page(browser, out)
    assert loaded.errors == []
    heads = loaded.page.locator(".colhead").all_inner_texts()
    assert heads == ["source: src (test)", "target: tgt (test)"]
    assert "[src #0]" in loaded.page.locator(".excol").nth(0).locator(".prompt").first.inner_text()
    loaded.page.click("#b-view button[data-v='dist']")
    loaded.page.select_option("#b-dist", "other")
    assert loaded.count(".excol") == 1 and loaded.count("#ex-list .ex") == 10
    loaded.page.fill("#b-q", "[other #11]")
    loaded.wait_count("#ex-list .ex", 1)
    loaded.page.close()


@pytest.fixture(scope="module")
def full_size_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("full")
    interventions = (
        "zero_shot",
        "few_shot",
        "prompt_tuning",
        "lora",
        "mms",
        "lat_stim_1",
        "lat_stim_2",
        "cra",
        "ccs",
        "random",
    )
    run = write_run_dir(root / "run", n_shifts=56, interventions=interventions, n_examples=250)
    return build_report([run], root / "report.html")


def test_full_size_report_opens_in_under_3_seconds(browser: object, full_size_report: Path) -> None:
    """56 shifts x 10 interventions x 250 examples: page load to the ready marker."""
    loaded = Page(browser, full_size_report)
    assert loaded.errors == []
    assert loaded.count("#results-table tbody tr") == 56
    assert loaded.load_seconds < 3.0, f"opened in {loaded.load_seconds:.2f} s"
    loaded.page.select_option("#f-int", "*")
    assert loaded.count("#results-table tbody tr") == 560
    loaded.page.close()


def test_a_run_where_every_job_failed_opens_without_errors(browser: object, tmp_path: Path) -> None:
    from genies.pipeline.run_dir import ComputedRun, FailedJob, RunResults, write_run

    results = RunResults({"model": "m", "interventions": ["lora"]}, (), (), (FailedJob("fit lora on src", "boom"),))
    loaded = Page(browser, build_report([write_run(tmp_path / "run", ComputedRun(results, ())).run_dir],
                                        tmp_path / "r.html"))
    assert loaded.errors == []
    assert loaded.page.locator("#results-table tbody td").all_inner_texts() == ["no data"]
    loaded.page.close()


def test_the_browser_shows_what_the_method_reported(browser: object, tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2,
                        info={"lora": {"warning": "scores are eval.py's own"}})
    loaded = Page(browser, build_report([run], tmp_path / "r.html"))
    assert loaded.errors == []
    status = loaded.page.locator("#b-status .reported").inner_text()
    assert status == "reported by the method: warning: scores are eval.py's own"
    loaded.page.close()


def test_judge_leaderboard_opens_without_errors_and_sorts(browser: object, tmp_path: Path) -> None:
    """The `genies report JUDGE1 JUDGE2` page (its own small script): no console error, offline,
    and a column header click sorts the table."""
    from judge_runs import write_judge  # tests/judge_runs.py

    from genies.report.judge_page import build_leaderboard

    folders = [write_judge(tmp_path / k, f"rm:{k}", {"code": hits, "alpaca_easy": hits[:10]}, failed=failed)
               for k, hits, failed in (("low", [0, 1] * 20, ()), ("high", [1] * 40, ("alpaca_hard",)))]
    loaded = Page(browser, build_leaderboard(folders, tmp_path / "leaderboard.html"))
    assert loaded.errors == []
    assert all(url.startswith(("file:", "data:", "about:")) for url in loaded.requests), loaded.requests
    judges = "#leaderboard-table tbody td:nth-child(2)"
    assert loaded.page.locator(judges).all_inner_texts() == ["rm:high", "rm:low"]
    loaded.page.click("#leaderboard-table th:nth-child(2)")  # text: ascending first
    assert loaded.page.locator(judges).all_inner_texts() == ["rm:high", "rm:low"]
    loaded.page.click("#leaderboard-table th:nth-child(3)")  # numbers: descending first
    loaded.page.click("#leaderboard-table th:nth-child(3)")
    assert loaded.page.locator(judges).all_inner_texts() == ["rm:low", "rm:high"]
    loaded.page.close()
