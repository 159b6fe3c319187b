"""The Train tab's sample views in the browser test: the fixed-seed grid, Compare samples,
the stored grid downloads and one seed across the steps, each checked against the stored
files."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, expect
from sqlalchemy import select

from app.core.models import Checkpoint, SampleImage
from app.core.storage import resolve
from tests.browser_support import Served, block, wait_until


def fixed_seed_samples(tab: Locator, served: Served, job_id: int, step: int) -> None:
    """The grid follows the job on its own to its newest samples (at ``step``); the start of
    the slider shows the base model's (step 0)."""
    slider = tab.get_by_role("slider")
    expect(slider).to_have_attribute("max", str(step))
    expect(slider).to_have_value(str(step))
    gallery = tab.locator(".block", has=tab.page.get_by_text("Fixed-seed samples", exact=True))
    shows_samples(gallery, served, job_id, step)
    box = slider.bounding_box()
    slider.click(position={"x": 1, "y": box["height"] / 2})
    expect(slider).to_have_value("0")
    shows_samples(gallery, served, job_id, 0)


def shows_samples(gallery: Locator, served: Served, job_id: int, step: int) -> None:
    """The gallery shows exactly the job's stored samples at ``step``, byte for byte, captioned."""
    with served.db.session() as session:
        stored = session.scalars(
            select(SampleImage)
            .where(SampleImage.job_id == job_id, SampleImage.step == step)
            .order_by(SampleImage.path)
        ).all()
    assert stored
    images = gallery.locator("img")
    expect(images).to_have_count(len(stored))
    for index, sample in enumerate(stored):
        expect(images.nth(index)).to_have_attribute("alt", f"{sample.prompt} · seed {sample.seed}")
    files = [resolve(served.storage, sample.path).read_bytes() for sample in stored]

    def shown() -> list[bytes]:
        sources = [images.nth(index).get_attribute("src") for index in range(len(stored))]
        return [gallery.page.request.get(source).body() for source in sources]

    wait_until(lambda: shown() == files, f"the samples of step {step} in the gallery")


def compare_steps(tab: Locator, served: Served, job_id: int, step: int) -> None:
    """Compare samples: step 0 and the newest step side by side, one pair per prompt and seed,
    A (step 0) left of B (``step``)."""
    tab.get_by_text("Compare samples", exact=True).click()
    expect(tab.get_by_role("combobox", name="Step B (right)", exact=True)).to_have_value(str(step))
    tab.get_by_role("button", name="Compare A and B").click()
    with served.db.session() as session:
        cells = session.execute(
            select(SampleImage.prompt, SampleImage.seed)
            .where(SampleImage.job_id == job_id, SampleImage.step == 0)
            .order_by(SampleImage.path)
        ).all()
    pairs = tab.locator(".block", has=tab.page.get_by_text("A | B at the same seeds", exact=True))
    images = pairs.locator("img")
    expect(images).to_have_count(2 * len(cells))
    for index, (prompt, seed) in enumerate(cells):
        for side, shown in ((0, 0), (1, step)):
            expect(images.nth(2 * index + side)).to_have_attribute(
                "alt", f"step {shown} · {prompt} · seed {seed}"
            )


def download_grids(tab: Locator, served: Served, job_id: int, steps: list[int]) -> None:
    """After Compare A and B, the two steps' stored grid PNGs are offered for download, one
    link each: the first downloads as its file, and each is that step's grid (saved beside
    its samples: ``step-N/*.png`` and ``step-N.png``), byte for byte."""
    with served.db.session() as session:
        samples = [
            session.scalars(
                select(SampleImage.path).where(
                    SampleImage.job_id == job_id,
                    SampleImage.step == s,
                    SampleImage.checkpoint_id.is_(None),
                )
            ).first()
            for s in steps
        ]
    stored = [resolve(served.storage, path).parent.with_suffix(".png") for path in samples]
    assert all(grid.is_file() for grid in stored), stored
    links = block(tab, "Sample grids (PNG)").locator("a[download]")
    expect(links).to_have_count(len(steps))
    for index, grid in enumerate(stored):
        expect(links.nth(index)).to_have_attribute("download", grid.name)
        got = tab.page.request.get(links.nth(index).get_attribute("href"))
        assert got.ok, got.status
        assert got.body().startswith(b"\x89PNG\r\n\x1a\n") and got.body() == grid.read_bytes()
    with tab.page.expect_download() as started:
        links.first.click()
    assert started.value.suggested_filename == stored[0].name
    assert Path(started.value.path()).read_bytes() == stored[0].read_bytes()


def seed_strip(tab: Locator, served: Served, job_id: int) -> None:
    """One prompt and seed across every sample step (step 0, the base model, then each
    checkpoint's step): one image per step, in step order, each the stored sample."""
    cell = tab.get_by_role("combobox", name="Prompt and seed", exact=True)
    with served.db.session() as session:
        prompt, seed = session.execute(
            select(SampleImage.prompt, SampleImage.seed)
            .where(SampleImage.job_id == job_id, SampleImage.step == 0)
            .order_by(SampleImage.path)
        ).first()
        stored = session.scalars(
            select(SampleImage)
            .where(
                SampleImage.job_id == job_id,
                SampleImage.prompt == prompt,
                SampleImage.seed == seed,
                SampleImage.checkpoint_id.is_(None),
            )
            .order_by(SampleImage.step)
        ).all()
        checkpoints = session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id))
        assert set(checkpoints) | {0} == {s.step for s in stored}
    expect(cell).to_have_value(f"{prompt} · seed {seed}")
    tab.get_by_role("button", name="Show across every step").click()
    images = block(tab, "One seed across the steps").locator("img")
    expect(images).to_have_count(len(stored))
    for index, sample in enumerate(stored):
        expect(images.nth(index)).to_have_attribute("alt", f"step {sample.step}")
        got = tab.page.request.get(images.nth(index).get_attribute("src")).body()
        assert got == resolve(served.storage, sample.path).read_bytes()
