"""Images the studio shows: blind A/B pairs for a campaign, fixed-seed grids per checkpoint.

A model is named ``base`` (the generator the campaign's checkpoints were trained from, or
the default model) or ``checkpoint:ID``; the core resolves it (:mod:`app.core.model_refs`)
and loads it through srpo's one loader. Rendering happens outside any transaction; image
files are written before their rows and rows are keyed by path, so a repeated task neither
duplicates nor loses anything.

A campaign renders in chunks of at most ``SRPO_RENDER_CHUNK`` images, one task each, on its
own queue: after each chunk the worker takes its turn at the training queue, so rendering
never keeps a training job waiting for more than one chunk. One task renders a campaign at a
time: it holds the campaign's render lease (:func:`app.core.arena_rendering.claim_rendering`), and a
duplicate task (re-sent by the maintenance loop, or left in the broker by a restart) ends at
once. Images on disk are kept, so a
cancelled, failed or killed campaign resumes where it stopped and renders nothing twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from sqlalchemy.orm import Session

from app.core import arena, arena_rendering, dispatch, model_refs, outputs
from app.core.db import Database
from app.core.model_refs import ModelRef
from app.core.models import CampaignState, Checkpoint
from app.core.settings import Settings
from app.core.storage import job_dir, relative
from worker.callback import save_png

log = logging.getLogger("worker.rendering")


def render(
    model: ModelRef,
    prompts: list[str],
    seeds: list[int],
    folder: Path,
    indices: list[int] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Sample ``prompts[i]`` at ``seeds[i]`` and write ``folder/NNNN-seedS.png`` files, image
    ``i`` numbered ``indices[i]`` (default: ``i``); ``on_step`` hears of each denoising step."""
    from srpo.sampling import sample_images

    steps, shift = model_refs.sampling_steps(model.config)
    extra = {} if on_step is None else {"on_step": on_step}
    images = sample_images(model_refs.load(model), prompts, seeds, steps, shift, **extra)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = indices if indices is not None else range(len(seeds))
    for index, image, seed in zip(numbers, images, seeds, strict=True):
        save_png(image, image_path(folder, index, seed))
    return images


def image_path(folder: Path, index: int, seed: int) -> Path:
    """Where :func:`render` writes image ``index``."""
    return folder / f"{index:04d}-seed{seed}.png"


def _record(session, settings, model, prompts, seeds, folder, size, job_id=None) -> list[int]:
    return [
        outputs.record_sample(
            session,
            settings.storage,
            image_path(folder, index, seed),
            model=model.ref,
            prompt=prompt,
            seed=seed,
            size=size,
            job_id=job_id,
            checkpoint_id=model.checkpoint_id,
            step=model.step,
        )
        for index, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True))
    ]


def generate_pairs(db: Database, settings: Settings, campaign_id: int) -> int:
    """Render the campaign's next chunk of missing images; queue the next chunk while images
    remain, else store every blind pair. Returns the number of pairs stored (0 while
    rendering goes on, when the campaign is cancelled or not pending, or when another
    rendering task holds it)."""
    try:
        return _generate_pairs(db, settings, campaign_id)
    except RenderLeaseLost:
        log.warning(
            "campaign %d: render lease gone (cancelled or taken over); stopping", campaign_id
        )
        return 0
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        db.write(lambda s: arena.mark_campaign(s, campaign_id, CampaignState.FAILED, message))
        raise


class RenderLeaseLost(Exception):
    """The campaign's render lease cannot be renewed: it was cancelled, or its lease ran out
    and another rendering task holds it now."""


class _RenderLease:
    """This task's hold on a campaign's rendering, renewed at most every heartbeat while it
    samples (a chunk may take longer than one lease)."""

    def __init__(self, db: Database, settings: Settings, campaign_id: int) -> None:
        self.db, self.settings, self.campaign_id = db, settings, campaign_id
        self.token = str(uuid.uuid4())
        self.renewed = 0.0

    def claim(self) -> bool:
        held = self.db.write(
            lambda s: arena_rendering.claim_rendering(
                s, self.campaign_id, self.token, self.settings.lease_seconds
            )
        )
        self.renewed = time.monotonic()
        return held

    def renew(self, done: int = 0, total: int = 0) -> None:
        """An ``on_step`` callback: renew once a heartbeat has passed; raise if lost."""
        due = time.monotonic() - self.renewed >= self.settings.heartbeat_seconds
        if due and not self.claim():
            raise RenderLeaseLost(self.campaign_id)

    def release(self) -> None:
        self.db.write(lambda s: arena_rendering.release_rendering(s, self.campaign_id, self.token))


def _generate_pairs(db: Database, settings: Settings, campaign_id: int) -> int:
    lease = _RenderLease(db, settings, campaign_id)
    if not lease.claim():  # not pending, cancelled, or another task renders it
        return 0
    try:
        return _render_chunk(db, settings, campaign_id, lease)
    finally:
        lease.release()


def _render_chunk(db: Database, settings: Settings, campaign_id: int, lease: _RenderLease) -> int:
    models, cells = db.write(lambda s: arena.campaign_plan(s, settings, campaign_id))
    prompts, seeds = [p for _, p, _ in cells], [s for _, _, s in cells]
    root = settings.storage / "campaigns" / str(campaign_id)
    folders = {model.ref: root / model.ref.replace(":", "-") for model in models}
    missing = [
        (model, n)
        for model in models
        for n, seed in enumerate(seeds)
        if not image_path(folders[model.ref], n, seed).exists()
    ]
    chunk = missing[: settings.render_chunk]
    for model in models:
        numbers = [n for m, n in chunk if m is model]
        if numbers:
            chosen = ([prompts[n] for n in numbers], [seeds[n] for n in numbers])
            render(model, *chosen, folders[model.ref], numbers, lease.renew)
    if len(missing) > len(chunk):
        lease.release()  # before the next chunk's task can look for it
        dispatch.send(settings, dispatch.PAIRS_TASK, [campaign_id])  # behind waiting training
        return 0
    sizes = {}
    for model in models:
        with Image.open(image_path(folders[model.ref], 0, seeds[0])) as first:
            sizes[model.ref] = first.size

    def work(session: Session) -> int:
        ids = {
            m.ref: _record(session, settings, m, prompts, seeds, folders[m.ref], sizes[m.ref])
            for m in models
        }
        return arena.store_pairs(session, campaign_id, [m.ref for m in models], cells, ids)

    return db.write(work, settings.db_retry_seconds)


def render_grid(db: Database, settings: Settings, checkpoint_id: int) -> str:
    """Render a checkpoint's eval prompts at its eval seeds; returns the grid PNG's stored path."""
    from srpo.sampling import labelled_grid

    def plan(session: Session) -> tuple[ModelRef, int]:
        checkpoint = session.get(Checkpoint, checkpoint_id)
        if checkpoint is None:
            raise ValueError(f"checkpoint {checkpoint_id} not found")
        ref = model_refs.resolve_ref(session, settings, f"checkpoint:{checkpoint_id}")
        return ref, checkpoint.job_id

    model, job_id = db.write(plan)
    prompts_set = model.config["eval_prompts"] or model.config["prompts"][:4]
    cells = [(p, s) for p in prompts_set for s in model.config["eval_seeds"]]
    prompts, seeds = [p for p, _ in cells], [s for _, s in cells]
    folder = job_dir(settings.storage, job_id) / "grids"
    images = render(model, prompts, seeds, folder / f"step-{model.step:06d}")
    labels = [f"{p[:16]} s{s}" for p, s in cells]
    columns = len(model.config["eval_seeds"])
    grid = labelled_grid(images, labels, title=f"step {model.step}", columns=columns)
    path = folder / f"step-{model.step:06d}.png"
    tmp = path.with_name(f".{path.name}.tmp")
    grid.save(tmp, format="PNG")
    tmp.replace(path)
    size = (images.shape[-1], images.shape[-2])
    db.write(
        lambda s: _record(s, settings, model, prompts, seeds, path.with_suffix(""), size, job_id),
        settings.db_retry_seconds,
    )
    return relative(settings.storage, path)
