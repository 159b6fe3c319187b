"""Reward Lab preview latency end to end in a real browser; prints one JSON object.

The studio runs as a user starts it (``srpo studio`` on the tiny world, in a process of its
own, on a new data folder); Debian's Chromium, driven by Playwright, signs in, opens the
Reward Lab and presses "Preview reward shift" for 8 seeds. Timed: from the click until the
page shows the preview's outputs (the scores table heads the new word's column and both
galleries hold their images: they arrive in one update), checked at every animation frame;
the message, every row and each image are then checked untimed. The first preview after the studio starts is *cold* (the
generator and reward load); the next ``--repeats`` are *warm*, each with another positive
word (the studio keeps the images of the last few model, prompt and seed sets, so these are
scored again, not sampled again); then ``--repeats`` warm ones with *new seeds*, each
sampling 8 new images (split over single-threaded workers, :mod:`srpo.cpu_sampling`). Goals
(issue 17): warm at most 1.5 s, cold at most 8 s on 2 cores. Also reported: the machine's
1-minute load average (``bench/reward_lab.py`` times the same preview in-process, without the
browser and the web layer).

    .venv/bin/python bench/lab_browser.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench password 1234"
SEEDS = 8
# The page shows a preview's outputs: the scores table heads the word's column, and both
# galleries hold their images (all outputs arrive in one update)
DONE = """([header, images]) => {
    const button = [...document.querySelectorAll('button')]
        .find(b => b.textContent.trim() === 'Preview reward shift');
    const panel = button.closest('[role="tabpanel"]');
    // a header cell also holds its menu button, drawn as "⋮"
    const heads = [...panel.querySelectorAll('th')]
        .map(th => th.textContent.replace('⋮', '').trim());
    return heads.includes(header) && panel.querySelectorAll('img[alt^="#"]').length === images;
}"""
WORDS = ("photo", "bright", "dark", "warm", "flat", "sharp", "soft", "vivid", "pale", "clean")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_studio(folder: Path, port: int) -> subprocess.Popen:
    """``srpo studio`` on a new data folder; returns once it answers."""
    env = {**os.environ, "SRPO_ADMIN_PASSWORD": PASSWORD, "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [str(Path(sys.executable).parent / "srpo"), "studio", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--data-dir", str(folder / "data")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "studio.log", "wb"),  # noqa: SIM115 (kept open for the process)
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the studio exited; see {folder / 'studio.log'}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the studio did not start within 120 s")


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/studio/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def preview_seconds(page: Page, positive: str) -> float:
    """Press Preview with ``positive``; seconds until every output of it is on the page."""
    tab = page.get_by_role("tabpanel")
    tab.get_by_label("Positive control words").fill(positive)
    button = tab.get_by_role("button", name="Preview reward shift")
    start = time.perf_counter()
    button.click()
    # Timed by a check run at every animation frame: expect()'s own retries back off (0.1,
    # 0.25, 0.5, 1 s apart), which rounds a time up by up to half a second or more
    page.wait_for_function(
        DONE, arg=[f"r({positive}. p)", 2 * SEEDS], polling="raf", timeout=300_000
    )
    seconds = time.perf_counter() - start
    # then everything else the preview returns is checked, untimed
    expect(tab.get_by_text(f"Scored {SEEDS} image(s)")).to_be_visible(timeout=300_000)
    grid = tab.get_by_role("grid", name="Scores per image", exact=True)
    expect(grid.get_by_role("columnheader", name=f"r({positive}. p)", exact=True)).to_be_visible(
        timeout=300_000
    )
    expect(grid.get_by_role("row")).to_have_count(SEEDS + 1, timeout=300_000)
    # both galleries: the images captioned "#n", the saliency overlays "#n · SRP ..."
    expect(tab.locator('img[alt^="#"]')).to_have_count(2 * SEEDS, timeout=300_000)
    for n in range(SEEDS):
        expect(tab.locator(f'img[alt="#{n}"]')).to_be_visible()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="srpo-lab-browser-") as tmp:
        studio = start_studio(Path(tmp), port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                sign_in(page, url)
                page.get_by_role("tab", name="Reward Lab").click()
                page.get_by_role("tabpanel").get_by_label("Seeds").fill(f"0-{SEEDS - 1}")
                # each preview another word than the one before: a preview is done when the
                # scores table heads its word's column (a repeated word would match at once)
                word = iter(WORDS[n % len(WORDS)] for n in range(1 + 2 * args.repeats))
                cold = preview_seconds(page, next(word))
                warm = [preview_seconds(page, next(word)) for _ in range(args.repeats)]
                seeds = page.get_by_role("tabpanel").get_by_label("Seeds")
                resampled = []
                for n in range(1, args.repeats + 1):
                    seeds.fill(f"{n * SEEDS}-{(n + 1) * SEEDS - 1}")
                    resampled.append(preview_seconds(page, next(word)))
                browser.close()
        finally:
            studio.terminate()
            studio.wait(30)
    warm_median = statistics.median(warm)
    print(
        json.dumps(
            {
                "images": SEEDS,
                "cold_seconds": round(cold, 3),
                "warm_median_seconds": round(warm_median, 3),
                "warm_max_seconds": round(max(warm), 3),
                "warm_seconds": [round(w, 3) for w in warm],
                "warm_new_seeds_median_seconds": round(statistics.median(resampled), 3),
                "warm_new_seeds_seconds": [round(r, 3) for r in resampled],
                "warm_new_seeds_max_seconds": round(max(resampled), 3),
                "goal_warm_1_5_s": warm_median <= 1.5,
                "goal_warm_new_seeds_1_5_s": statistics.median(resampled) <= 1.5,
                "goal_cold_8_s": cold <= 8.0,
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
