"""Claim a job, start its training process group, keep the lease alive, clean up after it.

The training process runs in its own process group with a per-attempt log file, and dies
with the worker (``PR_SET_PDEATHSIG``), so a killed worker leaves no orphan training. The
supervisor renews the lease every ``heartbeat_seconds``; if it cannot (database down for
most of a lease) or the lease was taken away, it kills the group before anyone else can
claim the job. A cancel gives the trainer ``cancel_grace_seconds`` to checkpoint and stop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.db import Database, is_disconnect
from app.core.jobs import Lease, LeaseStatus
from app.core.models import Job, JobRun, JobState
from app.core.settings import Settings
from app.core.storage import relative, resolve
from worker.process import die_with_parent, kill_group

log = logging.getLogger("srpo.worker")
EXIT_GRACE_SECONDS = 60.0


def worker_name() -> str:
    """``host:pid`` of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def training_command(job_id: int, processes: int) -> list[str]:
    """``python -m worker.run_job ID``, under ``accelerate launch --multi_gpu`` for several
    processes (torch.distributed; NCCL on GPUs, gloo where there are none)."""
    if processes <= 1:
        return [sys.executable, "-m", "worker.run_job", str(job_id)]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--module",
        "worker.run_job",
        str(job_id),
    ]


class Supervisor:
    """Runs one claimed job's training process to its end."""

    def __init__(self, db: Database, settings: Settings, lease: Lease, job: Job) -> None:
        self.db, self.settings, self.lease, self.job = db, settings, lease, job
        self.last_renewal = time.monotonic()
        self.cancel_since: float | None = None
        self.finished_since: float | None = None
        self.killed_for: str | None = None
        folder = resolve(settings.storage, job.output_dir) / "logs"
        self.log_path = folder / f"attempt-{lease.attempt}.log"

    def start(self) -> subprocess.Popen[bytes]:
        """Start the training process group, logging to ``logs/attempt-N.log``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.settings.environment(),
            "SRPO_LEASE_TOKEN": self.lease.token,
            "SRPO_LEASE_ATTEMPT": str(self.lease.attempt),
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_path, "ab") as out:
            process = subprocess.Popen(
                training_command(self.job.id, self.job.num_processes),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=Path(__file__).resolve().parent.parent,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        stored = relative(self.settings.storage, self.log_path)
        self.db.write(
            lambda s: jobs.record_run_process(s, self.lease, process.pid, stored),
            self.settings.db_retry_seconds,
        )
        return process

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

    def watch(self, process: subprocess.Popen[bytes]) -> int:
        """Heartbeat until the process ends; fence it off if the lease cannot be kept."""
        while True:
            try:
                return process.wait(timeout=self.settings.heartbeat_seconds)
            except subprocess.TimeoutExpired:
                pass
            status = self.renew()
            silent = time.monotonic() - self.last_renewal
            if status is LeaseStatus.LOST or (
                status is None and silent > 0.8 * self.settings.lease_seconds
            ):
                self.stop(process, "the lease was lost")
            elif status is LeaseStatus.FINISHED:
                self.finished_since = self.finished_since or time.monotonic()
                if time.monotonic() - self.finished_since > EXIT_GRACE_SECONDS:
                    self.stop(process, "it wrote its result but did not exit")
            elif status is LeaseStatus.CANCEL_REQUESTED:
                self.cancel_since = self.cancel_since or time.monotonic()
                if time.monotonic() - self.cancel_since >= self.settings.cancel_grace_seconds:
                    self.stop(process, "cancelled")

    def stop(self, process: subprocess.Popen[bytes], reason: str) -> None:
        """Kill the training process group."""
        if self.killed_for is None:
            log.warning("job %s: killing its training processes: %s", self.lease.job_id, reason)
            self.killed_for = reason
        kill_group(process.pid, signal.SIGKILL)

    def conclude(self, returncode: int) -> str:
        """Settle the job if its process ended without writing a final state."""
        reason = self.killed_for
        tail = _tail(self.log_path)

        def work(session: Session) -> str:
            job = session.get(Job, self.lease.job_id)
            if job is None or job.lease_token != self.lease.token:
                run = session.scalar(select(JobRun).where(JobRun.lease_token == self.lease.token))
                return run.outcome.value if run is not None else "lost"
            if reason == "cancelled":
                jobs.finish(session, self.lease, JobState.CANCELLED, error="killed after cancel")
                return JobState.CANCELLED.value
            if returncode < 0 or reason is not None:
                why = reason or f"training process killed by signal {-returncode}"
                state = jobs.release(session, self.lease, why)
                return state.value if state else "lost"
            message = f"training process exited with status {returncode}; log tail:\n{tail}"
            jobs.finish(session, self.lease, JobState.FAILED, error=message)
            return JobState.FAILED.value

        return self.db.write(work, self.settings.db_retry_seconds)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_bytes()[-20_000:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_training(db: Database, settings: Settings, job_id: int) -> str:
    """Claim and run a job to its end; returns what happened (for the task result)."""
    name = worker_name()
    lease = db.write(lambda s: jobs.claim(s, job_id, name, settings), settings.db_retry_seconds)
    if lease is None:
        return "not claimed"
    job = db.write(lambda s: s.get(Job, job_id), settings.db_retry_seconds)
    assert job is not None
    log.info("job %s attempt %s claimed by %s", job_id, lease.attempt, name)
    supervisor = Supervisor(db, settings, lease, job)
    process = supervisor.start()
    try:
        returncode = supervisor.watch(process)
    finally:
        if process.poll() is None:
            supervisor.stop(process, "the worker is stopping")
            process.wait()
    outcome = supervisor.conclude(returncode)
    log.info("job %s attempt %s: exit %s, %s", job_id, lease.attempt, returncode, outcome)
    return outcome
