"""Hand jobs to the Celery broker; a broker that is down leaves the job queued and says so."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from app import jobs
from app.db import Database
from app.errors import BrokerUnavailable
from app.settings import Settings


@lru_cache(maxsize=8)
def _client(settings: Settings) -> Celery:
    from worker.celery_app import make_celery

    celery = make_celery(settings)
    # Publishing fails within a second when the broker is down (the worker keeps retrying).
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.5,
    }
    return celery


def dispatch(db: Database, settings: Settings, job_id: int) -> str:
    """Send the job's training task; returns the task id or raises :class:`BrokerUnavailable`.

    Either way the job row records the outcome, and the maintenance loop re-sends jobs whose
    message never reached the broker, so no queued job is silently dropped.
    """
    from worker.tasks import TRAIN_TASK

    try:
        result = _client(settings).send_task(
            TRAIN_TASK, args=[job_id], queue=settings.gpu_queue, retry=False, ignore_result=True
        )
    except (BrokerError, OSError) as error:
        message = (
            f"the job queue (broker) is unreachable: {error}; it will be queued when it is back"
        )
        db.write(lambda s: jobs.mark_dispatch_failed(s, job_id, message), settings.db_retry_seconds)
        raise BrokerUnavailable(f"job {job_id} is saved but not yet queued: {message}") from None
    db.write(lambda s: jobs.mark_dispatched(s, job_id, result.id), settings.db_retry_seconds)
    return result.id


def send(settings: Settings, task: str, args: list[int]) -> str:
    """Send another task (pairs, grids) to the GPU queue; raises :class:`BrokerUnavailable`."""
    try:
        return (
            _client(settings)
            .send_task(task, args=args, queue=settings.gpu_queue, retry=False, ignore_result=True)
            .id
        )
    except (BrokerError, OSError) as error:
        raise BrokerUnavailable(f"the job queue (broker) is unreachable: {error}") from None


def submit_job(
    db: Database,
    settings: Settings,
    config: dict,
    owner_id: int | None = None,
    name: str | None = None,
    num_processes: int | None = None,
) -> int:
    """Validate, store and queue a training job; returns its id.

    Invalid input raises :class:`app.errors.StudioError` and stores nothing. If the broker
    is down the job is stored, its row says so, and :class:`BrokerUnavailable` is raised;
    the maintenance loop queues it once the broker is back.
    """
    from app.models import User

    def store(session) -> int:
        owner = session.get(User, owner_id) if owner_id is not None else None
        return jobs.submit(session, settings, config, owner, name, num_processes).id

    job_id = db.write(store)
    dispatch(db, settings, job_id)
    return job_id
