"""The Celery application, configured from the studio settings.

``celery -A worker.celery_app worker -Q gpu --pool solo --concurrency 1`` runs a GPU worker
(one job at a time per node; the job itself spreads over the node's GPUs).
"""

from __future__ import annotations

from celery import Celery

from app.settings import Settings, get_settings
from worker.tasks import GRID_TASK, PAIRS_TASK, TRAIN_TASK, register


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``: late acks, requeue on worker loss, prefetch 1."""
    celery = Celery("srpo", broker=settings.broker, backend=settings.results, set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.default_queue,
        task_routes={
            name: {"queue": settings.gpu_queue} for name in (TRAIN_TASK, PAIRS_TASK, GRID_TASK)
        },
        task_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
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
