"""Who may manage which job: the ownership rule (``SRPO_JOB_SHARING``) and what of a failed
job's error a non-admin sees.

- ``own`` (the default): a trainer cancels, reads the log of and downloads the checkpoints
  of their own jobs; admins manage every job. Jobs without an owner (queued from the
  command line) are the admins'.
- ``team``: every trainer manages every job.

Every trainer sees the job list (the queue is shared); the error text of a job shows a
non-admin its message, never a log tail with the server's paths.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from app.core import jobs
from app.core.errors import Forbidden
from app.core.models import Checkpoint, Job, Role
from app.core.settings import Settings

EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def may_manage(settings: Settings, user_id: int, role: Role, owner_id: int | None) -> bool:
    """Whether this user may cancel, read the log of and download a job owned by ``owner_id``."""
    if role == Role.ADMIN:
        return True
    if role != Role.TRAINER:
        return False
    return settings.job_sharing == "team" or (owner_id is not None and owner_id == user_id)


def managed_job(session: Session, settings: Settings, job_id: int, user_id: int, role: Role) -> Job:
    """The job, refused (:class:`Forbidden`) unless this user may manage it."""
    job = jobs.get(session, job_id)
    if not may_manage(settings, user_id, role, job.owner_id):
        raise Forbidden(f"job {job_id} is another trainer's (SRPO_JOB_SHARING=own)")
    return job


def managed_checkpoint(
    session: Session, settings: Settings, checkpoint: Checkpoint, user_id: int, role: Role
) -> Checkpoint:
    """The checkpoint, refused unless this user may manage its job."""
    managed_job(session, settings, checkpoint.job_id, user_id, role)
    return checkpoint


def public_error(settings: Settings, error: str | None) -> str | None:
    """A job's error as a non-admin sees it: the first line and the exception's message,
    with the studio's folders hidden; the log tail with its traceback is left out."""
    if not error:
        return error
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    shown = [lines[0].removesuffix("; log tail:")]
    raised = [line for line in lines[1:] if EXCEPTION_LINE.match(line)]
    if raised:
        shown.append(raised[-1])
    text = "\n".join(shown)
    for folder, label in ((settings.storage, "<storage>"), (settings.data_dir.resolve(), "<data>")):
        text = text.replace(str(folder), label)
    return text
