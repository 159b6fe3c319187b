"""Faults in the distributed mode, on the machine's real PostgreSQL and Redis with real
Celery worker processes: a worker killed mid-job, and the database dropping every
connection mid-job. Nothing may be lost and no job may run twice at once."""

from __future__ import annotations

import signal
import time

from sqlalchemy import create_engine, select, text

from app.core import storage, submission
from app.core.db import Database
from app.core.maintenance import Maintenance
from app.core.models import Checkpoint, Job, JobMetric, JobRun, JobState, RunOutcome, utcnow
from app.core.startup import prepare
from srpo.files import sha256_file
from tests.integration.conftest import (
    PG_ADMIN_URL,
    alive,
    distributed_settings,
    start_worker,
    stop,
)
from tests.integration.test_worker_embedded import tiny_job, wait_for


def _job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.state != JobState.FAILED, job.error
        return job


def _checkpoints_are_on_disk(db: Database, settings, job_id: int) -> list[int]:
    with db.session() as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all()
    for row in rows:
        folder = storage.resolve(settings.storage, row.path)
        assert sha256_file(folder / row.weights_file) == row.sha256, row.path
    return sorted(row.step for row in rows)


def test_sigkill_of_the_worker_resumes_the_job_on_another_worker(
    tmp_path, empty_postgres_url, redis_url
) -> None:
    settings = distributed_settings(
        tmp_path, empty_postgres_url, redis_url, lease_seconds=3, heartbeat_seconds=0.5
    )
    settings = settings.model_copy(update={"maintenance_seconds": 0.5})
    db = prepare(settings)
    workers = [
        start_worker(settings, f"w{i}", tmp_path / f"w{i}.log", module=i == 1) for i in range(2)
    ]
    reaper = Maintenance(db, settings)
    reaper.start()
    try:
        config = tiny_job(steps=8, checkpoint_every=1, lora={"rank": 4, "alpha": 4})
        job_id = submission.submit_job(db, settings, config)
        wait_for(lambda: _job(db, job_id).step >= 3, what="three steps")
        with db.session() as session:
            (first,) = session.scalars(select(JobRun).where(JobRun.job_id == job_id)).all()
        victim = next(w for w in workers if first.worker.endswith(f":{w.pid}"))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_for(lambda: not alive(first.pid), timeout=10, what="the orphaned trainer to die")
        trainer_gone_at = utcnow()
        job = wait_for(lambda: _job(db, job_id).state == JobState.SUCCEEDED and _job(db, job_id))
    finally:
        reaper.stop()
        for worker in workers:
            stop(worker)
    assert job.step == 8 and job.attempts == 2
    with db.session() as session:
        runs = session.scalars(
            select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt)
        ).all()
        metrics = session.scalars(select(JobMetric).where(JobMetric.job_id == job_id)).all()
    assert [r.outcome for r in runs] == [RunOutcome.LOST, RunOutcome.SUCCEEDED]
    assert runs[0].worker != runs[1].worker
    # Exactly one run at a time: the first run's trainer was dead before the second began.
    assert runs[0].ended_at <= runs[1].started_at and trainer_gone_at <= runs[1].started_at
    # The second run resumed from a checkpoint: early steps were not trained again.
    kept = [m.step for m in metrics if m.created_at < runs[1].started_at]
    assert min(kept) == 1 and max(kept) >= 3
    assert sorted(m.step for m in metrics) == list(range(1, 9))
    assert _checkpoints_are_on_disk(db, settings, job_id) == list(range(1, 9))
    db.dispose()


def _outage(database_name: str, seconds: float) -> int:
    """Refuse new connections to the database and cut every open one, then let them back."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{database_name}" ALLOW_CONNECTIONS false'))
        cut = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": database_name},
        ).scalar_one()
        time.sleep(seconds)
        connection.execute(text(f'ALTER DATABASE "{database_name}" ALLOW_CONNECTIONS true'))
    admin.dispose()
    return cut


def test_the_job_finishes_when_postgres_drops_every_connection(
    tmp_path, empty_postgres_url, redis_url
) -> None:
    settings = distributed_settings(
        tmp_path, empty_postgres_url, redis_url, lease_seconds=20, heartbeat_seconds=0.5
    )
    db = prepare(settings)
    worker = start_worker(settings, "pg", tmp_path / "worker.log")
    try:
        job_id = submission.submit_job(db, settings, tiny_job(steps=10, checkpoint_every=2))
        wait_for(lambda: _job(db, job_id).step >= 2, what="two steps")
        name = empty_postgres_url.rsplit("/", 1)[1]
        assert _outage(name, 3.0) >= 2  # the worker's and the trainer's connections
        wait_for(lambda: _job(db, job_id).step >= 5, what="progress after the first outage")
        _outage(name, 2.0)
        job = wait_for(lambda: _job(db, job_id).state == JobState.SUCCEEDED and _job(db, job_id))
    finally:
        stop(worker)
    assert job.step == 10 and job.attempts == 1
    with db.session() as session:
        (run,) = session.scalars(select(JobRun).where(JobRun.job_id == job_id)).all()
        steps = session.scalars(select(JobMetric.step).where(JobMetric.job_id == job_id)).all()
    assert run.outcome == RunOutcome.SUCCEEDED
    assert sorted(steps) == list(range(1, 11))
    assert _checkpoints_are_on_disk(db, settings, job_id) == [2, 4, 6, 8, 10]
    db.dispose()
