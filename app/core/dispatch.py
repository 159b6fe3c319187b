"""Sending work to the Celery broker: the task names and a client that only sends.

The worker (``worker.celery_app``) defines the tasks under these names; the studio only
publishes messages, so it needs the broker's URL and nothing of the worker's code. A broker
that is down leaves a job stored and queued, says so in its row, and the maintenance loop
(:mod:`app.core.maintenance`) sends it once the broker is back.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from app.core import jobs
from app.core.db import Database
from app.core.errors import BrokerUnavailable
from app.core.settings import Settings

TRAIN_TASK = "srpo.run_training"
PAIRS_TASK = "srpo.generate_pairs"
GRID_TASK = "srpo.render_grid"
GPU_TASKS = (TRAIN_TASK, PAIRS_TASK, GRID_TASK)


def queue_of(settings: Settings, task: str) -> str:
    """The queue a task goes to: campaign rendering has its own (so a worker takes turns
    between it and training, one bounded rendering chunk at a time), the rest the GPU queue."""
    return settings.render_queue if task == PAIRS_TASK else settings.gpu_queue


def celery_options(settings: Settings) -> dict[str, Any]:
    """The Celery settings the client and the worker share: JSON messages, GPU routing."""
    return {
        "task_default_queue": settings.default_queue,
        "task_routes": {name: {"queue": queue_of(settings, name)} for name in GPU_TASKS},
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
    }


@lru_cache(maxsize=8)
def client(settings: Settings) -> Celery:
    """A sending-only Celery app for ``settings`` (no tasks, no result backend)."""
    celery = Celery("srpo-client", broker=settings.broker, set_as_current=False)
    celery.conf.update(celery_options(settings))
    # Publishing fails within a second when the broker is down (the worker keeps retrying).
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.5,
    }
    return celery


def send(settings: Settings, task: str, args: list[int]) -> str:
    """Send a task (training, pairs, grids) to its queue (:func:`queue_of`); returns its id
    or raises :class:`BrokerUnavailable`."""
    queue = queue_of(settings, task)
    try:
        return (
            client(settings)
            .send_task(task, args=args, queue=queue, retry=False, ignore_result=True)
            .id
        )
    except (BrokerError, OSError) as error:
        raise BrokerUnavailable(f"the job queue (broker) is unreachable: {error}") from None


def dispatch(db: Database, settings: Settings, job_id: int) -> str:
    """Send the job's training task; returns the task id or raises :class:`BrokerUnavailable`.

    Either way the job row records the outcome, and the maintenance loop re-sends jobs whose
    message never reached the broker, so no queued job is silently dropped.
    """
    try:
        task_id = send(settings, TRAIN_TASK, [job_id])
    except BrokerUnavailable as error:
        detail = str(error).removeprefix("the job queue (broker) is unreachable: ")
        message = (
            f"the job queue (broker) is unreachable: {detail}; it will be queued when it is back"
        )
        db.write(lambda s: jobs.mark_dispatch_failed(s, job_id, message), settings.db_retry_seconds)
        raise BrokerUnavailable(
            f"job {job_id} is saved but not yet queued: {message}", job_id
        ) from None
    db.write(lambda s: jobs.mark_dispatched(s, job_id, task_id), settings.db_retry_seconds)
    return task_id
