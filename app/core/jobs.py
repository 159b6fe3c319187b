"""The job state machine: queued -> running -> succeeded | failed | cancelled.

A running job holds a lease (a random token and an expiry) that its worker renews by
heartbeats. Every write a worker makes is conditional on still holding the lease, and a
claim only succeeds on a queued job, so no job runs twice at once. When a lease expires the
reaper requeues the job (bounded by ``max_attempts``); the next run resumes from the
newest checkpoint. Cancel is a flag in the row, read by the trainer's callback every step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound, StudioError
from app.core.models import TERMINAL, Job, JobRun, JobState, RunOutcome, User, utcnow
from app.core.settings import Settings
from app.core.storage import job_dir, relative

MAX_ERROR = 4000


class LeaseLost(RuntimeError):
    """This worker no longer holds the job's lease: it must stop without writing more."""


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a running job."""

    job_id: int
    token: str
    attempt: int


class LeaseStatus(Enum):
    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"
    FINISHED = "finished"
    LOST = "lost"


def validate_config(data: dict[str, Any]) -> dict[str, Any]:
    """The config as validated JSON; a :class:`StudioError` names every bad field."""
    from srpo.config import ConfigError, make_config
    from srpo.models import MODEL_NAMES

    if not isinstance(data, dict):
        raise StudioError("config: expected a mapping of fields")
    try:
        config = make_config(data)
    except ConfigError as error:
        raise StudioError(str(error)) from None
    if config.model not in MODEL_NAMES:
        raise StudioError(f"model: unknown model {config.model!r}; one of {', '.join(MODEL_NAMES)}")
    if config.prompts_file is not None:
        raise StudioError("prompts_file: jobs carry their prompts inline; give a prompts list")
    return config.model_dump(mode="json")


def submit(
    session: Session,
    settings: Settings,
    config: dict[str, Any],
    owner: User | None = None,
    name: str | None = None,
    num_processes: int | None = None,
) -> Job:
    """Validate and store a queued job (nothing is written if anything is invalid)."""
    checked = validate_config(config)
    processes = num_processes or checked["num_workers"] or max(settings.gpus_per_job, 1)
    if not 1 <= processes <= 1024:
        raise StudioError("num_processes: between 1 and 1024")
    if checked["nodes"] is not None and processes % checked["nodes"]:
        raise StudioError(f"nodes: {processes} workers do not split over {checked['nodes']} nodes")
    if checked["launcher"] == "ray" and not settings.ray_address:
        raise StudioError(
            "launcher: this studio has no Ray cluster (set SRPO_RAY_ADDRESS); use launcher local"
        )
    checked["num_workers"] = processes  # one number of training processes, for both launchers
    label = (name or f"{checked['method']} on {checked['model']}").strip()[:200]
    if not label:
        raise StudioError("name: must not be blank")
    job = Job(
        name=label,
        owner_id=owner.id if owner else None,
        config=checked,
        num_processes=processes,
        state=JobState.QUEUED,
        output_dir="",
        step=0,
        total_steps=checked["steps"],
        max_attempts=settings.max_attempts,
    )
    session.add(job)
    session.flush()
    job.output_dir = relative(settings.storage, job_dir(settings.storage, job.id))
    # Where checkpoints are kept is the operator's choice, never a job's: a URL from the
    # config could write anywhere the workers can.
    remote = settings.checkpoint_url and f"{settings.checkpoint_url.rstrip('/')}/jobs/{job.id}"
    job.config = {**checked, "checkpoint_url": remote or None}
    return job


def get(session: Session, job_id: int) -> Job:
    """The job, or :class:`NotFound`."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def queue_position(session: Session, job: Job) -> int | None:
    """1 for the next queued job, 2 for the one after, ...; None unless queued."""
    if job.state != JobState.QUEUED:
        return None
    ahead = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.state == JobState.QUEUED,
            (Job.queued_at < job.queued_at)
            | ((Job.queued_at == job.queued_at) & (Job.id < job.id)),
        )
    )
    return int(ahead or 0) + 1


def mark_dispatched(session: Session, job_id: int, task_id: str) -> None:
    """Record that the queue accepted the job's message."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(dispatched_at=utcnow(), dispatch_error=None, updated_at=utcnow())
    )


def mark_dispatch_failed(session: Session, job_id: int, error: str) -> None:
    """Record that the queue could not be reached (the job stays queued, to be re-sent)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(dispatched_at=None, dispatch_error=error[:MAX_ERROR], updated_at=utcnow())
    )


def cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued job at once, or ask a running one to checkpoint and stop."""
    job = get(session, job_id)
    if job.state in TERMINAL:
        raise Conflict(f"job {job_id} already {job.state.value}")
    now = utcnow()
    stopped = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(state=JobState.CANCELLED, finished_at=now, updated_at=now)
    )
    if stopped.rowcount == 0:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING)
            .values(cancel_requested=True, updated_at=now)
        )
    session.refresh(job)
    return job


def claim(session: Session, job_id: int, worker: str, settings: Settings) -> Lease | None:
    """Take a queued job for ``worker``; None if it is not queued (claimed, cancelled, gone)."""
    now, token = utcnow(), str(uuid.uuid4())
    claimed = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state == JobState.QUEUED,
            Job.cancel_requested.is_(False),
            Job.attempts < Job.max_attempts,
        )
        .values(
            state=JobState.RUNNING,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
            heartbeat_at=now,
            worker=worker[:200],
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
    )
    if claimed.rowcount != 1:
        return None
    attempt = session.scalar(select(Job.attempts).where(Job.id == job_id))
    assert attempt is not None
    session.add(
        JobRun(
            job_id=job_id,
            attempt=attempt,
            worker=worker[:200],
            lease_token=token,
            outcome=RunOutcome.RUNNING,
            started_at=now,
        )
    )
    return Lease(job_id, token, attempt)


def _held(lease: Lease):
    return (Job.id == lease.job_id, Job.lease_token == lease.token, Job.state == JobState.RUNNING)


def heartbeat(session: Session, lease: Lease, settings: Settings) -> LeaseStatus:
    """Renew the lease; says whether it is held, whether cancel was asked, or whether the
    run already wrote its final state (its process is only exiting)."""
    now = utcnow()
    renewed = session.execute(
        update(Job)
        .where(*_held(lease))
        .values(lease_expires_at=now + timedelta(seconds=settings.lease_seconds), heartbeat_at=now)
    )
    if renewed.rowcount != 1:
        outcome = session.scalar(select(JobRun.outcome).where(JobRun.lease_token == lease.token))
        finished = outcome in (RunOutcome.SUCCEEDED, RunOutcome.FAILED, RunOutcome.CANCELLED)
        return LeaseStatus.FINISHED if finished else LeaseStatus.LOST
    wanted = session.scalar(select(Job.cancel_requested).where(Job.id == lease.job_id))
    return LeaseStatus.CANCEL_REQUESTED if wanted else LeaseStatus.HELD


def lease_status(session: Session, lease: Lease) -> LeaseStatus:
    """The lease's state without renewing it (the training process asks this every step)."""
    row = session.execute(
        select(Job.cancel_requested, Job.lease_expires_at).where(*_held(lease))
    ).first()
    if row is None or row.lease_expires_at < utcnow():
        return LeaseStatus.LOST
    return LeaseStatus.CANCEL_REQUESTED if row.cancel_requested else LeaseStatus.HELD


def record_run_process(session: Session, lease: Lease, pid: int | None, log_path: str) -> None:
    """Note the process and log file of the lease's run."""
    session.execute(
        update(JobRun).where(JobRun.lease_token == lease.token).values(pid=pid, log_path=log_path)
    )


def record_run_nodes(session: Session, lease: Lease, nodes: list[dict[str, Any]]) -> None:
    """Note where each rank of the lease's run runs (``rank``, ``node``, ``host``, ``pid``)."""
    session.execute(update(JobRun).where(JobRun.lease_token == lease.token).values(nodes=nodes))


def unclaim(session: Session, lease: Lease, error: str) -> bool:
    """Give back a claim whose run never started (its cluster refused it): the job is queued
    again as it was, the attempt not counted, and ``error`` says why. False if not held."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(*_held(lease))
        .values(
            state=JobState.QUEUED,
            attempts=Job.attempts - 1,
            started_at=case((Job.attempts == 1, None), else_=Job.started_at),
            lease_token=None,
            lease_expires_at=None,
            worker=None,
            dispatched_at=None,
            dispatch_error=error[:MAX_ERROR],
            updated_at=now,
        )
    )
    if done.rowcount != 1:
        return False
    session.execute(delete(JobRun).where(JobRun.lease_token == lease.token))
    return True


def mark_launch_failed(session: Session, job_id: int, error: str) -> None:
    """A queued job's cluster is unreachable: say so in its row; it stays queued and the
    maintenance loop sends it again."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(dispatched_at=None, dispatch_error=error[:MAX_ERROR], updated_at=utcnow())
    )


def record_progress(session: Session, lease: Lease, values: dict[str, Any]) -> None:
    """Write progress fields into the job row; raises :class:`LeaseLost` if not held."""
    done = session.execute(update(Job).where(*_held(lease)).values(**values, updated_at=utcnow()))
    if done.rowcount != 1:
        raise LeaseLost(f"job {lease.job_id}: lease {lease.token} is no longer held")


def finish(
    session: Session,
    lease: Lease,
    state: JobState,
    error: str | None = None,
    step: int | None = None,
) -> None:
    """End the lease's run in a final state (idempotent: a repeat of a done finish is a no-op)."""
    if state not in TERMINAL:
        raise ValueError(f"finish needs a final state, got {state}")
    now = utcnow()
    values: dict[str, Any] = {
        "state": state,
        "finished_at": now,
        "updated_at": now,
        "lease_token": None,
        "lease_expires_at": None,
        "error": error[-MAX_ERROR:] if error else None,
    }
    if step is not None:
        values["step"] = step
    done = session.execute(update(Job).where(*_held(lease)).values(**values))
    run = session.scalar(select(JobRun).where(JobRun.lease_token == lease.token))
    if done.rowcount != 1:
        if run is not None and run.outcome == RunOutcome(state.value):
            return
        raise LeaseLost(f"job {lease.job_id}: lease {lease.token} is no longer held")
    if run is not None:
        run.outcome, run.ended_at = RunOutcome(state.value), now


def release(session: Session, lease: Lease, reason: str) -> JobState | None:
    """Give a running job back after its process died: requeue it, or fail it when out of tries.

    Returns the job's new state, or None if the lease was no longer held.
    """
    job = session.scalar(select(Job).where(*_held(lease)))
    if job is None:
        return None
    _end_run(session, job, reason, RunOutcome.REQUEUED)
    return job.state


def reap_expired(session: Session) -> list[int]:
    """Requeue (or fail, when out of tries) every running job whose lease has expired."""
    now = utcnow()
    expired = session.scalars(
        select(Job)
        .where(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
        .with_for_update(skip_locked=True)
    ).all()
    for job in expired:
        reason = (
            f"lease of worker {job.worker} expired at {job.lease_expires_at:%Y-%m-%d %H:%M:%S}Z"
        )
        _end_run(session, job, reason, RunOutcome.LOST)
    return [job.id for job in expired]


def _end_run(session: Session, job: Job, reason: str, outcome: RunOutcome) -> None:
    now = utcnow()
    run = session.scalar(select(JobRun).where(JobRun.lease_token == job.lease_token))
    if run is not None:
        run.outcome, run.ended_at = outcome, now
    job.lease_token, job.lease_expires_at, job.updated_at = None, None, now
    if job.cancel_requested:
        job.state, job.finished_at = JobState.CANCELLED, now
        job.error = f"cancelled; the last run ended without a result: {reason}"
    elif job.attempts >= job.max_attempts:
        job.state, job.finished_at = JobState.FAILED, now
        job.error = f"gave up after {job.attempts} attempts; last: {reason}"
    else:
        job.state, job.dispatched_at = JobState.QUEUED, None
        job.error = f"attempt {job.attempts} ended: {reason}; requeued"


def pending_dispatch(session: Session, stale_seconds: float) -> list[int]:
    """Queued jobs never handed to the broker, or handed long ago (a message may be lost)."""
    stale = utcnow() - timedelta(seconds=stale_seconds)
    return list(
        session.scalars(
            select(Job.id)
            .where(
                Job.state == JobState.QUEUED,
                Job.cancel_requested.is_(False),
                (Job.dispatched_at.is_(None)) | (Job.dispatched_at < stale),
            )
            .order_by(Job.queued_at, Job.id)
        )
    )
