"""The supervisor without Celery: a job that cannot start fails with its reason, and a cancel
a hung trainer cannot honour kills the whole training process group after the grace time."""

from __future__ import annotations

import os
import signal
import threading

from sqlalchemy import select

from app.core import jobs
from app.core.models import Job, JobRun, JobState, RunOutcome
from app.core.settings import Settings
from app.core.startup import prepare
from tests.integration.test_worker_embedded import tiny_job, wait_for
from tests.test_worker_process import _gone
from worker.supervisor import run_training


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
