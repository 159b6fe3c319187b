"""``/api/v1/jobs``: submit (through the core's one submission path), list, cancel, metrics,
the hacking monitor, log.

Who may cancel a job or read its log follows :mod:`app.core.access` (``SRPO_JOB_SHARING``);
non-admins see a failed job's message, admins its full log.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from app.core import access, jobs, monitoring, reads, submission
from app.core.models import Role
from app.web.api.deps import Id, State, Trainer
from app.web.auth import Principal
from app.web.context import Studio

router = APIRouter(tags=["jobs"])


class JobIn(BaseModel):
    """A training job: a preset and overrides (merged deeply), or a full config."""

    preset: str | None = Field(
        None,
        max_length=100,
        description="tiny-demo, flux-lora-1gpu, flux-paper-32gpu or flux-paper-pickscore",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="fields over the preset (nested sections merge)"
    )
    name: str | None = Field(None, max_length=200)
    num_processes: int | None = Field(None, ge=1, le=1024, strict=True)
    launcher: Literal["local", "ray"] | None = Field(
        None, description="local (accelerate on one node) or ray (Ray Train over the cluster)"
    )
    num_workers: int | None = Field(
        None, ge=1, le=4096, strict=True, description="training processes (one GPU each)"
    )
    nodes: int | None = Field(
        None, ge=1, le=1024, strict=True, description="ray: the nodes the workers spread over"
    )

    def overrides(self) -> dict[str, Any]:
        """``config`` with the launch fields given beside it written over it."""
        launch = self.model_dump(include={"launcher", "num_workers", "nodes"}, exclude_none=True)
        return {**self.config, **launch}


def _row(state: Studio, who: Principal, row: dict[str, Any]) -> dict[str, Any]:
    if who.role != Role.ADMIN:
        row["error"] = access.public_error(state.settings, row["error"])
    return row


@router.post("/jobs", status_code=201, summary="validate, store and queue a training job")
def submit_job(body: JobIn, who: Trainer, state: State) -> dict[str, Any]:
    job_id = submission.submit_job(
        state.db,
        state.settings,
        body.overrides(),
        preset=body.preset,
        owner_id=who.id,
        name=body.name,
        num_processes=body.num_processes,
    )
    with state.db.session() as session:
        return _row(state, who, reads.job_row(session, jobs.get(session, job_id)))


@router.get("/jobs", summary="jobs, newest first, with queue position and progress")
def list_jobs(who: Trainer, state: State, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
    with state.db.session() as session:
        return [_row(state, who, row) for row in reads.job_rows(session, limit)]


@router.get("/jobs/{job_id}", summary="one job, with its hacking monitor")
def get_job(job_id: Id, who: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return _row(state, who, reads.job_detail(session, jobs.get(session, job_id)))


@router.post("/jobs/{job_id}/cancel", summary="cancel a queued job or stop a running one")
def cancel_job(job_id: Id, who: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        access.managed_job(session, state.settings, job_id, who.id, who.role)
        return _row(state, who, reads.job_row(session, jobs.cancel(session, job_id)))


@router.get("/jobs/{job_id}/metrics", summary="loss and reward per step")
def job_metrics(job_id: Id, _: Trainer, state: State) -> list[dict[str, float]]:
    with state.db.session() as session:
        jobs.get(session, job_id)
        return reads.metrics(session, job_id)


@router.get(
    "/jobs/{job_id}/monitor",
    summary="the gold signal beside the training reward at every sample step, and the warning",
)
def job_monitor(job_id: Id, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return monitoring.job_monitor(session, jobs.get(session, job_id))


@router.get(
    "/jobs/{job_id}/log",
    response_class=PlainTextResponse,
    summary="the job's log: in full for admins, without tracebacks or folders for others",
)
def job_log(job_id: Id, who: Trainer, state: State) -> str:
    with state.db.session() as session:
        job = access.managed_job(session, state.settings, job_id, who.id, who.role)
        return access.job_log_for(session, state.settings, job, who.role)
