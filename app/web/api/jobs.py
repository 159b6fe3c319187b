"""``/api/v1/jobs``: submit (through the core's one submission path), list, cancel, metrics, log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from app.core import jobs, reads, submission
from app.web.api.deps import State, Trainer

router = APIRouter(tags=["jobs"])


class JobIn(BaseModel):
    """A training job: a preset and overrides (merged deeply), or a full config."""

    preset: str | None = Field(
        None, description="tiny-demo, flux-lora-1gpu, flux-paper-32gpu or flux-paper-pickscore"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="fields over the preset (nested sections merge)"
    )
    name: str | None = None
    num_processes: int | None = None


@router.post("/jobs", status_code=201, summary="validate, store and queue a training job")
def submit_job(body: JobIn, who: Trainer, state: State) -> dict[str, Any]:
    job_id = submission.submit_job(
        state.db,
        state.settings,
        body.config,
        preset=body.preset,
        owner_id=who.id,
        name=body.name,
        num_processes=body.num_processes,
    )
    with state.db.session() as session:
        return reads.job_row(session, jobs.get(session, job_id))


@router.get("/jobs", summary="jobs, newest first, with queue position and progress")
def list_jobs(_: Trainer, state: State, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
    with state.db.session() as session:
        return reads.job_rows(session, limit)


@router.get("/jobs/{job_id}", summary="one job")
def get_job(job_id: int, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return reads.job_row(session, jobs.get(session, job_id))


@router.post("/jobs/{job_id}/cancel", summary="cancel a queued job or stop a running one")
def cancel_job(job_id: int, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return reads.job_row(session, jobs.cancel(session, job_id))


@router.get("/jobs/{job_id}/metrics", summary="loss and reward per step")
def job_metrics(job_id: int, _: Trainer, state: State) -> list[dict[str, float]]:
    with state.db.session() as session:
        jobs.get(session, job_id)
        return reads.metrics(session, job_id)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, summary="the job's log")
def job_log(job_id: int, _: Trainer, state: State) -> str:
    with state.db.session() as session:
        return reads.job_log(session, state.settings, job_id)
