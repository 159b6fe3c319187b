"""The supervisor without Celery: a job that cannot start fails with its reason, a cancel
a hung trainer cannot honour kills the whole training process group after the grace time, and
a start that outlasts the lease (a Ray job joining its cluster) keeps the lease."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

from sqlalchemy import select

from app.core import jobs
from app.core.jobs import Lease, LeaseStatus
from app.core.models import Job, JobRun, JobState, RunOutcome, utcnow
from app.core.settings import Settings
from app.core.startup import prepare
from tests.integration.test_worker_embedded import tiny_job, wait_for
from tests.test_worker_process import _gone
from worker import supervisor
from worker.launch_local import Ended
from worker.supervisor import Supervisor, run_training


def test_a_job_that_cannot_start_fails_with_its_reason(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, heartbeat_seconds=0.5)
    db = prepare(settings)
    missing = tmp_path / "no-such-weights"
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_job(model_path=str(missing))).id)
    assert run_training(db, settings, job_id) == "failed"
    assert run_training(db, settings, job_id) == "not claimed"
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and job.attempts == 1
        assert str(missing) in job.error


def test_a_cancel_past_its_grace_kills_the_process_group(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, heartbeat_seconds=0.3, cancel_grace_seconds=0)
    db = prepare(settings)
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_job(steps=500)).id)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run_training(db, settings, job_id)))
    thread.start()

    def running_pid() -> int | None:
        with db.session() as session:
            job = session.get(Job, job_id)
            run = session.scalar(select(JobRun).where(JobRun.job_id == job_id))
            return run.pid if job.step >= 1 and run is not None else None

    pid = wait_for(running_pid, what="training to start")
    os.kill(pid, signal.SIGSTOP)  # a trainer that hangs (say, in a collective) cannot checkpoint
    db.write(lambda s: jobs.cancel(s, job_id))
    thread.join(60)
    assert outcome == ["cancelled"] and _gone(pid)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.CANCELLED and job.error == "killed after cancel"
        assert [r.outcome for r in job.runs] == [RunOutcome.CANCELLED]


class SlowStart:
    """A run whose start lasts past the claim's lease, then asks the reaper about the job."""

    def __init__(self, db, lease: Lease) -> None:
        self.db, self.lease, self.reaped = db, lease, None

    def start(self) -> None:
        with self.db.session() as session:
            claimed_until = session.get(Job, self.lease.job_id).lease_expires_at
        while utcnow() < claimed_until + timedelta(seconds=0.5):
            time.sleep(0.1)
        self.reaped = self.db.write(jobs.reap_expired)

    def wait(self, timeout: float) -> Ended | None:
        return Ended(0, False, "done")

    def kill(self) -> None: ...

    def close(self) -> None: ...


def test_the_lease_is_renewed_while_the_training_starts(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, lease_seconds=1.5, heartbeat_seconds=0.2)
    db = prepare(settings)
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_job()).id)
    lease = db.write(lambda s: jobs.claim(s, job_id, "here:1", settings))
    run = SlowStart(db, lease)
    Supervisor(db, settings, lease, run).start()
    assert run.reaped == []  # the reaper found the lease alive, so no other worker could claim it
    assert db.write(lambda s: jobs.lease_status(s, lease)) is LeaseStatus.HELD


class BrokenStart(SlowStart):
    """A run whose launcher fails to start it (as ray.init did inside a Celery worker)."""

    def start(self) -> None:
        raise AttributeError("'LoggingProxy' object has no attribute 'fileno'")


def test_a_run_that_fails_to_start_gives_the_job_back_with_its_reason(
    tmp_path, monkeypatch
) -> None:
    settings = Settings(data_dir=tmp_path, lease_seconds=600)
    db = prepare(settings)
    job_id = db.write(lambda s: jobs.submit(s, settings, tiny_job()).id)
    monkeypatch.setattr(
        supervisor, "launch", lambda db, settings, lease, job: BrokenStart(db, lease)
    )
    assert run_training(db, settings, job_id) == "queued"  # at once, not when the lease expires
    with db.session() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts, job.lease_token) == (JobState.QUEUED, 1, None)
        assert "could not start: AttributeError: 'LoggingProxy'" in job.error
        assert [r.outcome for r in job.runs] == [RunOutcome.REQUEUED]
