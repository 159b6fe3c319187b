"""Celery tasks: run a training job, generate a campaign's A/B pairs, render a sample grid.

Each task reads its work from the database, so a redelivered or duplicated message is
harmless: a job is claimed at most once at a time, and pairs and grids are idempotent. The
task names are the core's (:mod:`app.core.dispatch`), which sends them; the tasks find the
studio settings of the Celery app they run in (:func:`settings_of`), so two apps in one
process keep their own database and storage.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from app.core.db import database
from app.core.dispatch import GRID_TASK, PAIRS_TASK, TRAIN_TASK
from app.core.settings import Settings

DURABLE = {"acks_late": True, "reject_on_worker_lost": True, "shared": False, "bind": True}


def settings_of(task: Task) -> Settings:
    """The studio settings of the Celery app ``task`` belongs to (set by :func:`register`)."""
    return task.app.studio_settings


def run_training(task: Task, job_id: int) -> str:
    """Claim the job and run its training process to the end (a no-op if not claimable)."""
    from worker.supervisor import run_training as supervise

    settings = settings_of(task)
    return supervise(database(settings.database), settings, job_id)


def generate_pairs(task: Task, campaign_id: int) -> int:
    """Render every model's images for a campaign and store its blind pairs."""
    from worker.rendering import generate_pairs as generate

    settings = settings_of(task)
    return generate(database(settings.database), settings, campaign_id)


def render_grid(task: Task, checkpoint_id: int) -> str:
    """Render a checkpoint's fixed-seed sample grid; returns its stored path."""
    from worker.rendering import render_grid as render

    settings = settings_of(task)
    return render(database(settings.database), settings, checkpoint_id)


TASKS: dict[str, Any] = {
    TRAIN_TASK: run_training,
    PAIRS_TASK: generate_pairs,
    GRID_TASK: render_grid,
}


def register(celery: Celery, settings: Settings) -> None:
    """Define the studio's tasks on ``celery``, working with ``settings``."""
    celery.studio_settings = settings
    for name, function in TASKS.items():
        celery.task(name=name, **DURABLE)(function)
