"""What the browser tests share: Debian's Chromium, waits, Playwright helpers for the
studio's pages (tabs, dropdowns, dataframes, screenshots) and a way to keep the embedded
worker busy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from playwright.sync_api import Browser, Locator, Page, expect

from app.core import dispatch
from app.core.db import Database
from app.core.settings import Settings

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


def block(scope: Locator, label: str) -> Locator:
    """The component labelled ``label``: the innermost ``.block`` holding that text (an
    accordion around it is a block too)."""
    page = scope.page
    found = scope.locator(".block", has=page.get_by_text(label, exact=True))
    return found.filter(has_not=page.locator(".block"))


def table_rows(scope: Locator, label: str, count: int | None = None) -> list[list[str]]:
    """The body cells of the dataframe labelled ``label``, row by row (once ``count`` are in)."""
    rows = scope.get_by_role("grid", name=label, exact=True).get_by_role("row")
    body = rows.filter(has=scope.page.get_by_role("gridcell"))
    if count is not None:
        expect(body).to_have_count(count)
    return [[c.strip() for c in r.get_by_role("gridcell").all_inner_texts()] for r in body.all()]


def run_snippet(tab: Locator, download: Path) -> None:
    """The page's loading snippet, run as shown next to the downloaded file alone, loads it."""
    snippet = tab.locator(".cm-content").nth(1).inner_text()
    assert download.name in snippet, snippet
    alone = download.parent / "alone"
    alone.mkdir()
    shutil.copy(download, alone / download.name)
    done = subprocess.run(
        [sys.executable, "-c", snippet + "\nprint(type(transformer).__name__)"],
        cwd=alone,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=WORK_WAIT_MS / 1000,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("Transformer2DModel")


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + WORK_WAIT_MS / 1000
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


class WorkerHold:
    """A task that keeps the embedded worker (one task at a time) busy until released, so
    that work sent meanwhile (a campaign's rendering) waits in its queue. Create it before
    the worker starts, which only runs the tasks it knows at its start."""

    NAME = "tests.browser.hold"

    def __init__(self, worker_app: Celery, settings: Settings) -> None:
        self.settings = settings
        self.started, self.released = threading.Event(), threading.Event()
        worker_app.task(name=self.NAME)(self._run)

    def _run(self) -> None:
        self.started.set()
        self.released.wait(WORK_WAIT_MS / 1000)

    def hold(self) -> None:
        """Send the task to the rendering queue and wait until the worker runs it."""
        self.started.clear()
        self.released.clear()
        dispatch.client(self.settings).send_task(self.NAME, queue=self.settings.render_queue)
        if not self.started.wait(WORK_WAIT_MS / 1000):
            raise AssertionError("the embedded worker did not take the hold task")

    def release(self) -> None:
        """Let the worker go on to the work queued behind the hold."""
        self.released.set()


@dataclass(frozen=True)
class Served:
    """A running studio: its URL, database, storage root and a hold on its worker."""

    url: str
    db: Database
    storage: Path
    worker: WorkerHold
