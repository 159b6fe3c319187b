"""The worker's Celery application, configured from the studio settings.

``celery -A worker.celery_app worker -Q gpu,render --pool solo --concurrency 1`` runs a GPU
worker (one task at a time per node; a job itself spreads over the node's GPUs). It must
consume both queues: campaigns render only from the rendering queue, one chunk per turn.
The studio never builds this app: it sends messages through :func:`app.core.dispatch.client`.
"""

from __future__ import annotations

from celery import Celery

from app.core.dispatch import celery_options
from app.core.settings import Settings, get_settings
from app.core.startup import stay_offline
from worker.tasks import register


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``: late acks, requeue on worker loss, prefetch 1. Unless
    ``SRPO_ALLOW_HUB`` is set, this process goes offline (``HF_HUB_OFFLINE``): a worker
    started as ``celery -A worker.celery_app`` renders campaigns and grids in it."""
    stay_offline(settings)
    celery = Celery("srpo", broker=settings.broker, backend=settings.results, set_as_current=False)
    celery.conf.update(
        celery_options(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    register(celery, settings)
    return celery


def __getattr__(name: str) -> Celery:
    """``worker.celery_app.app``: the app for the environment's settings, made on first use."""
    if name != "app":
        raise AttributeError(name)
    globals()["app"] = celery = make_celery(get_settings())
    return celery
