"""The job state machine on a real database: validation, claims, leases, reaping, cancel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.core import jobs, submission
from app.core.db import database
from app.core.errors import Conflict, StudioError, TooMany
from app.core.jobs import LeaseLost, LeaseStatus
from app.core.models import Job, JobRun, JobState, RunOutcome, User, utcnow
from app.core.settings import Settings
from app.core.startup import prepare
from app.core.users import create_user
from srpo.config import preset
from tests.integration.conftest import distributed_settings

TINY = preset("tiny-demo", steps=3, rollout_steps=2, batch_size=1).model_dump(mode="json")


def _submit(db, settings, **config) -> int:
    return db.write(lambda s: jobs.submit(s, settings, {**TINY, **config}).id)


def _count(db) -> int:
    return db.write(lambda s: s.scalar(select(func.count()).select_from(Job)))


def _expire(db, job_id: int) -> None:
    past = utcnow() - timedelta(seconds=1)
    db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past)))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"steps": 0}, "steps"),
        ({"lr": 1}, "lr"),
        ({"model": "sdxl"}, "model"),
        ({"prompts": None, "prompts_file": "p.txt"}, "prompts_file"),
        ({"positive_words": [], "optimizer": {"lr": -1}}, "optimizer.lr"),
    ],
)
def test_invalid_config_is_refused_and_nothing_is_written(sqlite_settings, change, named) -> None:
    db = database(sqlite_settings.database)
    with pytest.raises(StudioError, match=named):
        _submit(db, sqlite_settings, **change)
    assert _count(db) == 0


def test_submit_stores_a_queued_job_with_its_validated_config(sqlite_settings) -> None:
    db = database(sqlite_settings.database)
    first, second = _submit(db, sqlite_settings), _submit(db, sqlite_settings)
    with db.session() as session:
        job = session.get(Job, first)
        assert job.state == JobState.QUEUED and job.total_steps == 3
        assert (
            job.config["direct_align"] == TINY["direct_align"] and job.output_dir == f"jobs/{first}"
        )
        assert jobs.queue_position(session, job) == 1
        assert jobs.queue_position(session, session.get(Job, second)) == 2


def test_a_job_is_claimed_once_and_its_lease_guards_every_write(sqlite_settings) -> None:
    db, settings = database(sqlite_settings.database), sqlite_settings
    job_id = _submit(db, settings)
    lease = db.write(lambda s: jobs.claim(s, job_id, "w1", settings))
    assert lease is not None and lease.attempt == 1
    assert db.write(lambda s: jobs.claim(s, job_id, "w2", settings)) is None
    assert db.write(lambda s: jobs.heartbeat(s, lease, settings)) is LeaseStatus.HELD
    stranger = jobs.Lease(job_id, "not-the-token", 1)
    with pytest.raises(LeaseLost):
        db.write(lambda s: jobs.record_progress(s, stranger, {"step": 2}))
    db.write(lambda s: jobs.finish(s, lease, JobState.SUCCEEDED, step=3))
    db.write(lambda s: jobs.finish(s, lease, JobState.SUCCEEDED, step=3))  # a retried write
    assert db.write(lambda s: jobs.heartbeat(s, lease, settings)) is LeaseStatus.FINISHED
    with db.session() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.step, job.lease_token) == (JobState.SUCCEEDED, 3, None)
        assert [r.outcome for r in job.runs] == [RunOutcome.SUCCEEDED]


def test_expired_leases_are_requeued_then_failed_after_max_attempts(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, max_attempts=2)
    db = prepare(settings)
    job_id = _submit(db, settings)
    first = db.write(lambda s: jobs.claim(s, job_id, "w1", settings))
    assert db.write(jobs.reap_expired) == []
    _expire(db, job_id)
    assert db.write(lambda s: jobs.lease_status(s, first)) is LeaseStatus.LOST
    assert db.write(jobs.reap_expired) == [job_id]
    assert db.write(lambda s: jobs.heartbeat(s, first, settings)) is LeaseStatus.LOST
    with pytest.raises(LeaseLost):
        db.write(lambda s: jobs.finish(s, first, JobState.SUCCEEDED))
    second = db.write(lambda s: jobs.claim(s, job_id, "w2", settings))
    assert second is not None and second.attempt == 2
    _expire(db, job_id)
    db.write(jobs.reap_expired)
    assert db.write(lambda s: jobs.claim(s, job_id, "w3", settings)) is None
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and "gave up after 2 attempts" in job.error
        assert [r.outcome for r in job.runs] == [RunOutcome.LOST, RunOutcome.LOST]


def test_cancel_stops_a_queued_job_and_flags_a_running_one(sqlite_settings) -> None:
    db, settings = database(sqlite_settings.database), sqlite_settings
    queued, running = _submit(db, settings), _submit(db, settings)
    assert db.write(lambda s: jobs.cancel(s, queued)).state == JobState.CANCELLED
    assert db.write(lambda s: jobs.claim(s, queued, "w", settings)) is None
    with pytest.raises(Conflict, match="already cancelled"):
        db.write(lambda s: jobs.cancel(s, queued))
    lease = db.write(lambda s: jobs.claim(s, running, "w", settings))
    job = db.write(lambda s: jobs.cancel(s, running))
    assert job.state == JobState.RUNNING and job.cancel_requested
    assert db.write(lambda s: jobs.lease_status(s, lease)) is LeaseStatus.CANCEL_REQUESTED
    assert db.write(lambda s: jobs.heartbeat(s, lease, settings)) is LeaseStatus.CANCEL_REQUESTED


def test_concurrent_claims_on_postgres_give_exactly_one_lease(tmp_path, postgres_url) -> None:
    settings = distributed_settings(tmp_path, postgres_url, "redis://127.0.0.1:6379/11")
    db = prepare(settings)
    job_ids = [_submit(db, settings) for _ in range(5)]
    leases: list = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        for job_id in job_ids:
            lease = db.write(
                lambda s, j=job_id: jobs.claim(s, j, threading.current_thread().name, settings)
            )
            if lease is not None:
                leases.append(lease)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(lease.job_id for lease in leases) == job_ids
    with db.session() as session:
        runs = session.scalars(select(JobRun).where(JobRun.job_id.in_(job_ids))).all()
        assert len(runs) == 5 and {r.outcome for r in runs} == {RunOutcome.RUNNING}


def test_a_burst_of_60_jobs_from_one_user_on_postgres_stops_at_the_quota(
    tmp_path, empty_postgres_url, redis_url
) -> None:
    """Issue 14 item 2: 60 jobs in a burst were all accepted; concurrent submissions of one
    user (each its own transaction on PostgreSQL) store exactly the quota, the rest get 429."""
    settings = distributed_settings(
        tmp_path, empty_postgres_url, redis_url, max_queued_jobs_per_user=20
    )
    db = prepare(settings)
    db.write(lambda s: create_user(s, "burst", "a long passphrase", "trainer"))
    owner = db.write(lambda s: s.scalar(select(User.id).where(User.username == "burst")))
    barrier = threading.Barrier(12)

    def submit(n: int) -> int | str:
        if n < 12:
            barrier.wait()
        try:
            return submission.submit_job(db, settings, TINY, owner_id=owner)
        except TooMany as refused:
            return str(refused)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(submit, range(60)))
    stored = [a for a in answers if isinstance(a, int)]
    refused = [a for a in answers if isinstance(a, str)]
    assert len(stored) == 20 and len(refused) == 40
    assert all("SRPO_MAX_QUEUED_JOBS_PER_USER" in r for r in refused)
    assert _count(db) == 20
