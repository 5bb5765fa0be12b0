"""The weak-to-strong page in headless Chromium: it renders without console errors, its lists are
there and its tables sort (the page itself is checked in test_w2s_report.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genies.report.w2s_page import build_w2s_report
from test_w2s_report import _run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = _run(tmp_path_factory.mktemp("w2s"), "run")
    return folder, build_w2s_report(folder, folder / "report.html").read_text(encoding="utf-8")


def test_the_page_renders_without_console_errors(planted_run, chromium_executable) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    folder, _ = planted_run
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium_executable), args=args)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((folder / "report.html").as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.locator("#w2s-sources tbody tr").count() == 1
        assert page.locator("#followed-0-xent .ex").count() >= 1
        page.locator("#w2s-sources th").nth(4).click()  # sorting works
        browser.close()
    assert errors == []
