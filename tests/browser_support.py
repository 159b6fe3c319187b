"""What the browser tests share: Debian's Chromium, waits, and Playwright helpers for the
studio's pages (tabs, dropdowns, dataframes, screenshots)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
PAGE_WAIT_MS = 30_000
WORK_WAIT_MS = 240_000


def new_page(browser: Browser) -> Page:
    """A page in a fresh browser context (its own cookies)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(PAGE_WAIT_MS)
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    """Save the whole page as ``test-artifacts/screenshots/NAME.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def open_tab(page: Page, name: str) -> Locator:
    """Select a tab of the studio; returns its panel (tabs once opened stay in the page)."""
    page.get_by_role("tab", name=name).click()
    expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
    return page.get_by_role("tabpanel")


def choose(scope: Page | Locator, combobox: str, option: str) -> None:
    """Pick ``option`` in the (first) dropdown labelled ``combobox``."""
    box = scope.get_by_role("combobox", name=combobox, exact=True).first
    box.click()
    # its own list: another dropdown's list, left in the page, may hold the same option
    page = scope if isinstance(scope, Page) else scope.page
    listed = page.locator(f"#{box.get_attribute('aria-controls')}")
    listed.get_by_role("option", name=option, exact=True).click()


def table_rows(scope: Locator, label: str, count: int | None = None) -> list[list[str]]:
    """The body cells of the dataframe labelled ``label``, row by row (once ``count`` are in)."""
    rows = scope.get_by_role("grid", name=label, exact=True).get_by_role("row")
    body = rows.filter(has=scope.page.get_by_role("gridcell"))
    if count is not None:
        expect(body).to_have_count(count)
    return [[c.strip() for c in r.get_by_role("gridcell").all_inner_texts()] for r in body.all()]


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + WORK_WAIT_MS / 1000
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
