"""Claim a job, launch its training, keep the lease alive, clean up after it.

The job's launcher runs the training: ``local`` (:mod:`worker.launch_local`, a process group on
this node) or ``ray`` (:mod:`worker.launch_ray`, a Ray Train job on the Ray cluster). Either
way this worker owns the job: it renews the lease every ``heartbeat_seconds``; if it cannot
(database down for most of a lease) or the lease was taken away, it kills the training
before anyone else can claim the job. A cancel gives the trainer ``cancel_grace_seconds`` to
checkpoint and stop, then kills it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.db import Database, is_disconnect
from app.core.jobs import Lease, LeaseLost, LeaseStatus
from app.core.models import Job, JobRun, JobState
from app.core.settings import Settings
from worker.launch_local import Ended, LocalRun

log = logging.getLogger("srpo.worker")
EXIT_GRACE_SECONDS = 60.0


class Run(Protocol):
    """One attempt's training, as a launcher runs it."""

    def start(self) -> None: ...
    def wait(self, timeout: float) -> Ended | None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


def worker_name() -> str:
    """``host:pid`` of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Supervisor:
    """Runs one claimed job's training to its end."""

    def __init__(self, db: Database, settings: Settings, lease: Lease, run: Run) -> None:
        self.db, self.settings, self.lease, self.run = db, settings, lease, run
        self.last_renewal = time.monotonic()
        self.cancel_since: float | None = None
        self.finished_since: float | None = None
        self.killed_for: str | None = None

    def renew(self) -> LeaseStatus | None:
        """One heartbeat; None if the database could not be reached this time."""
        try:
            status = self.db.write(lambda s: jobs.heartbeat(s, self.lease, self.settings))
        except DBAPIError as error:
            if not is_disconnect(error):
                raise
            log.warning("job %s: heartbeat failed: %s", self.lease.job_id, error.orig)
            return None
        self.last_renewal = time.monotonic()
        return status

    def start(self) -> None:
        """Start the training, renewing the lease meanwhile: a Ray job's start (joining the
        cluster, fencing earlier attempts) can take longer than a lease, and a lease that
        expired then would let a second worker start the job too."""
        started = threading.Event()

        def beat() -> None:
            while not started.wait(self.settings.heartbeat_seconds):
                self.renew()

        beating = threading.Thread(target=beat, name=f"lease-{self.lease.job_id}", daemon=True)
        beating.start()
        try:
            self.run.start()
        finally:
            started.set()
            beating.join()

    def watch(self) -> Ended:
        """Heartbeat until the training ends; fence it off if the lease cannot be kept."""
        while True:
            ended = self.run.wait(self.settings.heartbeat_seconds)
            if ended is not None:
                return ended
            status = self.renew()
            silent = time.monotonic() - self.last_renewal
            if status is LeaseStatus.LOST or (
                status is None and silent > 0.8 * self.settings.lease_seconds
            ):
                self.stop("the lease was lost")
            elif status is LeaseStatus.FINISHED:
                self.finished_since = self.finished_since or time.monotonic()
                if time.monotonic() - self.finished_since > EXIT_GRACE_SECONDS:
                    self.stop("it wrote its result but did not exit")
            elif status is LeaseStatus.CANCEL_REQUESTED:
                self.cancel_since = self.cancel_since or time.monotonic()
                if time.monotonic() - self.cancel_since >= self.settings.cancel_grace_seconds:
                    self.stop("cancelled")

    def stop(self, reason: str) -> None:
        """Kill the training (every process of it, on every node)."""
        if self.killed_for is None:
            log.warning("job %s: killing its training: %s", self.lease.job_id, reason)
            self.killed_for = reason
        self.run.kill()

    def conclude(self, ended: Ended) -> str:
        """Settle the job if its training ended without writing a final state."""
        reason = self.killed_for

        def work(session: Session) -> str:
            job = session.get(Job, self.lease.job_id)
            if job is None or job.lease_token != self.lease.token:
                run = session.scalar(select(JobRun).where(JobRun.lease_token == self.lease.token))
                return run.outcome.value if run is not None else "lost"
            if reason == "cancelled":
                jobs.finish(session, self.lease, JobState.CANCELLED, error="killed after cancel")
                return JobState.CANCELLED.value
            if ended.killed or reason is not None:
                state = jobs.release(session, self.lease, reason or ended.detail)
                return state.value if state else "lost"
            jobs.finish(session, self.lease, JobState.FAILED, error=ended.detail)
            return JobState.FAILED.value

        return self.db.write(work, self.settings.db_retry_seconds)


def launch(db: Database, settings: Settings, lease: Lease, job: Job) -> Run:
    """The run of the job's launcher (``local`` unless its config says ``ray``)."""
    if job.config.get("launcher") == "ray":
        from worker.launch_ray import RayRun

        return RayRun(db, settings, lease, job)
    return LocalRun(db, settings, lease, job)


def run_training(db: Database, settings: Settings, job_id: int) -> str:
    """Claim and run a job to its end; returns what happened (for the task result)."""
    from worker.launch_ray import RayUnavailable, check_reachable

    name = worker_name()
    job = db.write(lambda s: s.get(Job, job_id), settings.db_retry_seconds)
    if job is not None and job.config.get("launcher") == "ray" and job.state == JobState.QUEUED:
        try:  # before the claim, so that an unreachable cluster costs the job no attempt
            check_reachable(settings)
        except RayUnavailable as error:
            message = str(error)
            db.write(lambda s: jobs.mark_launch_failed(s, job_id, message))
            log.warning("job %s stays queued: %s", job_id, message)
            return "ray unreachable"
    lease = db.write(lambda s: jobs.claim(s, job_id, name, settings), settings.db_retry_seconds)
    if lease is None:
        return "not claimed"
    job = db.write(lambda s: s.get(Job, job_id), settings.db_retry_seconds)
    assert job is not None
    log.info("job %s attempt %s claimed by %s", job_id, lease.attempt, name)
    run = launch(db, settings, lease, job)
    supervisor = Supervisor(db, settings, lease, run)
    try:
        try:
            supervisor.start()
        except RayUnavailable as error:
            message = str(error)
            db.write(lambda s: jobs.unclaim(s, lease, message), settings.db_retry_seconds)
            log.warning("job %s stays queued: %s", job_id, message)
            return "ray unreachable"
        except LeaseLost as error:
            log.warning("%s", error)
            return "lost"
        except Exception as error:  # give the job back now, with its reason, not at lease expiry
            log.exception("job %s attempt %s could not start", job_id, lease.attempt)
            reason = f"its training could not start: {type(error).__name__}: {error}"
            state = db.write(lambda s: jobs.release(s, lease, reason), settings.db_retry_seconds)
            return state.value if state else "lost"
        ended = supervisor.watch()
    finally:
        run.close()
    outcome = supervisor.conclude(ended)
    log.info("job %s attempt %s: %s, %s", job_id, lease.attempt, ended.detail[:200], outcome)
    return outcome
