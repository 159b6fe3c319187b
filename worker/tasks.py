"""Celery tasks: run a training job, generate a campaign's A/B pairs, render a sample grid.

Each task reads its work from the database, so a redelivered or duplicated message is
harmless: a job is claimed at most once at a time, and pairs and grids are idempotent.
"""

from __future__ import annotations

from celery import Celery

from app.db import database
from app.settings import Settings

TRAIN_TASK = "srpo.run_training"
PAIRS_TASK = "srpo.generate_pairs"
GRID_TASK = "srpo.render_grid"


def register(celery: Celery, settings: Settings) -> None:
    """Define the studio's tasks on ``celery``, working with ``settings``."""
    durable = {"acks_late": True, "reject_on_worker_lost": True, "shared": False}

    @celery.task(name=TRAIN_TASK, **durable)
    def run_training(job_id: int) -> str:
        """Claim the job and run its training process to the end (a no-op if not claimable)."""
        from worker.supervisor import run_training as supervise

        return supervise(database(settings.database), settings, job_id)

    @celery.task(name=PAIRS_TASK, **durable)
    def generate_pairs(campaign_id: int) -> int:
        """Render every model's images for a campaign and store its blind pairs."""
        from worker.rendering import generate_pairs as generate

        return generate(database(settings.database), settings, campaign_id)

    @celery.task(name=GRID_TASK, **durable)
    def render_grid(checkpoint_id: int) -> str:
        """Render a checkpoint's fixed-seed sample grid; returns its stored path."""
        from worker.rendering import render_grid as render

        return render(database(settings.database), settings, checkpoint_id)
