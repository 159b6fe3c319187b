"""The one way a training job enters the studio: the Train tab and the REST API both call
:func:`submit_job`, and the config comes from :func:`job_config`.

A job is a preset plus overrides, deep-merged by :func:`srpo.config.preset` (the same merge
``srpo explain PRESET`` and every preset user of srpo goes through), or a full config without
a preset. Whatever a preset leaves out takes srpo's defaults, never a studio-side default, so
the same preset and overrides give the same stored config from the form, the API and a YAML
file given to ``srpo train``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.core import admission, dispatch, jobs
from app.core.db import Database
from app.core.errors import StudioError, TooMany
from app.core.models import Job, JobState, User
from app.core.settings import Settings


def job_config(overrides: dict[str, Any], preset: str | None = None) -> dict[str, Any]:
    """The validated config (JSON values) of ``preset`` with ``overrides`` merged in deeply,
    or of ``overrides`` alone without a preset. Refusals are :class:`StudioError`s."""
    from srpo.config import PRESETS, ConfigError
    from srpo.config import preset as merged

    if not isinstance(overrides, dict):
        raise StudioError("config: expected a mapping of fields")
    if preset is None:
        return jobs.validate_config(overrides)
    if preset not in PRESETS:
        raise StudioError(f"preset: unknown {preset!r}; one of {', '.join(PRESETS)}")
    try:
        config = merged(preset, **overrides)
    except ConfigError as error:
        raise StudioError(str(error)) from None
    return jobs.validate_config(config.model_dump(mode="json"))


def submit_job(
    db: Database,
    settings: Settings,
    overrides: dict[str, Any],
    preset: str | None = None,
    owner_id: int | None = None,
    name: str | None = None,
    num_processes: int | None = None,
) -> int:
    """Validate, store and queue a training job; returns its id.

    Invalid input raises :class:`StudioError` and stores nothing: values must be of their
    field's type (no ``true`` for a number), paths inside the allowed roots, and the job
    within the quotas the settings name. If the broker is down the job is stored, its row
    says so, and :class:`app.core.errors.BrokerUnavailable` is raised; the maintenance loop
    queues it once the broker is back.
    """
    admission.check_values(overrides)
    name = admission.job_name(name)
    if num_processes is not None and not 1 <= num_processes <= settings.max_processes_per_job:
        raise StudioError(
            f"num_processes: between 1 and {settings.max_processes_per_job} "
            "(SRPO_MAX_PROCESSES_PER_JOB, what the workers have)"
        )
    config = job_config(overrides, preset)
    admission.check_strict(overrides, config, "")
    config = admission.sources(settings, config)
    if len(config.get("prompts") or []) > settings.max_prompts_per_job:
        raise StudioError(
            f"prompts: at most {settings.max_prompts_per_job} per job (SRPO_MAX_PROMPTS_PER_JOB)"
        )

    def store(session) -> int:
        owner = None
        if owner_id is not None:
            # The row lock serialises one user's submissions, so the quota holds under bursts.
            owner = session.get(User, owner_id, with_for_update=True)
            waiting = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.owner_id == owner_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            )
            if waiting >= settings.max_queued_jobs_per_user:
                raise TooMany(
                    f"you have {waiting} jobs queued or running; the limit is "
                    f"{settings.max_queued_jobs_per_user} (SRPO_MAX_QUEUED_JOBS_PER_USER)",
                    retry_after=60,
                )
        return jobs.submit(session, settings, config, owner, name, num_processes).id

    job_id = db.write(store)
    dispatch.dispatch(db, settings, job_id)
    return job_id
