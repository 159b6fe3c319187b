"""Who may manage which job: the ownership rule (``SRPO_JOB_SHARING``) and what of a failed
job's error a non-admin sees.

- ``own`` (the default): a trainer cancels, reads the log of and downloads the checkpoints
  of their own jobs; admins manage every job. Jobs without an owner (queued from the
  command line) are the admins'.
- ``team``: every trainer manages every job.

Every trainer sees the job list (the queue is shared); the error text of a job shows a
non-admin its message, never a log tail with the server's paths. The log of their own job
shows them its progress lines with the studio's folders hidden and tracebacks reduced to
the exception's line; admins read the log as written.
"""

from __future__ import annotations

import re
import sys

from sqlalchemy.orm import Session

from app.core import jobs, reads
from app.core.errors import Forbidden, NotFound
from app.core.models import Campaign, Checkpoint, Job, Role
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


def _hide_folders(settings: Settings, text: str) -> str:
    """``text`` with the studio's storage, data and Python folders replaced by labels."""
    folders = (
        (settings.storage, "<storage>"),
        (settings.data_dir.resolve(), "<data>"),
        (sys.prefix, "<python>"),
        (sys.base_prefix, "<python>"),
    )
    for folder, label in folders:
        text = text.replace(str(folder), label)
    return text


def managed_campaign(
    session: Session, settings: Settings, campaign_id: int, user_id: int, role: Role
) -> Campaign:
    """The campaign, refused (:class:`Forbidden`) unless this user may stop or resume its
    rendering: the jobs' rule, with the campaign's creator as its owner."""
    found = session.get(Campaign, campaign_id)
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    if not may_manage(settings, user_id, role, found.created_by):
        raise Forbidden(f"campaign {campaign_id} is another trainer's (SRPO_JOB_SHARING=own)")
    return found


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
    return _hide_folders(settings, "\n".join(shown))


def public_log(settings: Settings, log: str) -> str:
    """A job's log as its non-admin owner sees it: every line but those of a traceback
    (its exception's line stays), with the studio's folders hidden."""
    shown, in_traceback = [], False
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif not in_traceback:
            shown.append(line)
        elif EXCEPTION_LINE.match(line):  # a traceback ends with an unindented exception line
            in_traceback = False
            shown.append(line)
    return _hide_folders(settings, "\n".join(shown))


def job_log_for(session: Session, settings: Settings, job: Job, role: Role) -> str:
    """The job's log as this role may read it: admins the full log of every attempt, others
    :func:`public_log` of it followed by the job's state and :func:`public_error`."""
    log = reads.job_log(session, settings, job.id)
    if role == Role.ADMIN:
        return log
    error = public_error(settings, job.error)
    status = f"job {job.id}: {job.state.value}" + (f"\n{error}" if error else "")
    return f"{public_log(settings, log)}\n{status}"
