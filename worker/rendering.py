"""Images the studio shows: blind A/B pairs for a campaign, fixed-seed grids per checkpoint.

A model is named ``base`` (the generator the campaign's checkpoints were trained from, or
the default model) or ``checkpoint:ID``. Rendering happens outside any transaction; image
files are written before their rows and rows are keyed by path, so a repeated task neither
duplicates nor loses anything.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

from app import arena, records
from app.db import Database
from app.models import Campaign, CampaignState, Checkpoint, Comparison, Job, utcnow
from app.settings import Settings
from app.storage import job_dir, relative, resolve
from app.upsert import upsert
from srpo.models.base import Generator
from worker.callback import save_png


@dataclass(frozen=True)
class Model:
    """What it takes to load one model reference, read from the database."""

    ref: str
    config: dict[str, Any]
    checkpoint_id: int | None = None
    checkpoint_path: Path | None = None
    step: int | None = None


def _model(session: Session, settings: Settings, ref: str, base: dict[str, Any]) -> Model:
    if ref == "base":
        return Model(ref, base)
    checkpoint = arena.checkpoint_for(session, ref)
    config = session.get(Job, checkpoint.job_id).config
    path = resolve(settings.storage, checkpoint.path)
    return Model(ref, config, checkpoint.id, path, checkpoint.step)


def load_model(model: Model) -> Generator:
    """The generator of a model reference, with its checkpoint's weights loaded."""
    from srpo.models import load_finetuned, load_generator

    if model.checkpoint_path is None:
        return load_generator(model.config["model"], model.config.get("model_path"))
    try:
        generator, _ = load_finetuned(model.checkpoint_path)
    except ValueError:
        raise ValueError(f"{model.ref}: the checkpoint files fail their sha256 check") from None
    return generator


def sampling_steps(config: dict[str, Any]) -> tuple[int, float]:
    """Euler steps and shift for sampling a model (the tiny world ships its own)."""
    from srpo.models import sampling_defaults

    defaults = sampling_defaults(config["model"], config.get("model_path"))
    return int(defaults["steps"]), float(defaults["shift"])


def render(model: Model, prompts: list[str], seeds: list[int], folder: Path) -> torch.Tensor:
    """Sample ``prompts[i]`` at ``seeds[i]`` and write ``folder/NNNN-seedS.png`` files."""
    from srpo.sampling import sample_images

    steps, shift = sampling_steps(model.config)
    images = sample_images(load_model(model), prompts, seeds, steps, shift)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
        save_png(image, image_path(folder, index, seed))
    return images


def image_path(folder: Path, index: int, seed: int) -> Path:
    """Where :func:`render` writes image ``index``."""
    return folder / f"{index:04d}-seed{seed}.png"


def _record(session, settings, model, prompts, seeds, folder, size, job_id=None) -> list[int]:
    return [
        records.record_sample(
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
    """Render each model's images and store every blind pair; returns the number of pairs."""
    try:
        return _generate_pairs(db, settings, campaign_id)
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        db.write(lambda s: arena.mark_campaign(s, campaign_id, CampaignState.FAILED, message))
        raise


def _plan(session: Session, settings: Settings, campaign_id: int):
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ValueError(f"campaign {campaign_id} not found")
    base = {"model": settings.default_model, "model_path": None}
    for ref in campaign.models:
        if ref != "base":
            base = session.get(Job, arena.checkpoint_for(session, ref).job_id).config
            break
    models = [_model(session, settings, ref, base) for ref in campaign.models]
    cells = [(i, p, s) for i, p in enumerate(campaign.prompts) for s in campaign.seeds]
    return models, cells


def _generate_pairs(db: Database, settings: Settings, campaign_id: int) -> int:
    models, cells = db.write(lambda s: _plan(s, settings, campaign_id))
    prompts, seeds = [p for _, p, _ in cells], [s for _, _, s in cells]
    root = settings.storage / "campaigns" / str(campaign_id)
    folders, sizes = {}, {}
    for model in models:
        folders[model.ref] = root / model.ref.replace(":", "-")
        images = render(model, prompts, seeds, folders[model.ref])
        sizes[model.ref] = (images.shape[-1], images.shape[-2])
    sides = random.SystemRandom()

    def work(session: Session) -> int:
        ids = {
            m.ref: _record(session, settings, m, prompts, seeds, folders[m.ref], sizes[m.ref])
            for m in models
        }
        count = 0
        for a, b in itertools.combinations([m.ref for m in models], 2):
            for n, (index, prompt, seed) in enumerate(cells):
                left, right = (a, b) if sides.random() < 0.5 else (b, a)
                values = {
                    "campaign_id": campaign_id,
                    "prompt_index": index,
                    "prompt": prompt,
                    "seed": seed,
                    "pair_key": arena.pair_key(a, b),
                    "left_model": left,
                    "right_model": right,
                    "left_image_id": ids[left][n],
                    "right_image_id": ids[right][n],
                    "created_at": utcnow(),
                }
                keys = ("campaign_id", "prompt_index", "seed", "pair_key")
                upsert(session, Comparison, values, keys)
                count += 1
        arena.mark_campaign(session, campaign_id, CampaignState.READY, None)
        return count

    return db.write(work, settings.db_retry_seconds)


def render_grid(db: Database, settings: Settings, checkpoint_id: int) -> str:
    """Render a checkpoint's eval prompts at its eval seeds; returns the grid PNG's stored path."""
    from srpo.sampling import labelled_grid

    def plan(session: Session) -> tuple[Model, int]:
        checkpoint = session.get(Checkpoint, checkpoint_id)
        if checkpoint is None:
            raise ValueError(f"checkpoint {checkpoint_id} not found")
        return _model(session, settings, f"checkpoint:{checkpoint_id}", {}), checkpoint.job_id

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
