"""The REST API under ``/api/v1`` (bearer tokens or the session cookie; OpenAPI at /docs)."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select

from app import arena, jobs, queue
from app.errors import Forbidden, NotFound, StudioError
from app.models import Campaign, CampaignState, Choice, Comparison, Job, Role, SampleImage, User
from app.storage import resolve
from app.users import create_token, create_user
from app.web import cards, queries, results
from app.web.auth import PRINCIPAL_KEY, Principal
from app.web.context import Studio
from worker.tasks import PAIRS_TASK

bearer = HTTPBearer(auto_error=False, description="an API token (srpo_...)")


def studio(request: Request) -> Studio:
    """The app's shared state."""
    return request.app.state.studio


def principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Principal:
    """Who is calling (the auth middleware has already refused anyone else)."""
    found = request.scope.get(PRINCIPAL_KEY)
    if found is None:
        raise Forbidden("not signed in")
    return found


def needs(role: Role):
    """A dependency that refuses principals below ``role``."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.may(role):
            raise Forbidden(f"this needs the {role.value} role")
        return who

    return check


Rater = Annotated[Principal, Depends(needs(Role.RATER))]
Trainer = Annotated[Principal, Depends(needs(Role.TRAINER))]
Admin = Annotated[Principal, Depends(needs(Role.ADMIN))]
State = Annotated[Studio, Depends(studio)]

router = APIRouter(prefix="/api/v1")


class JobIn(BaseModel):
    """A training job: a preset and overrides, or a full config."""

    preset: str | None = Field(None, description="tiny-demo, flux-lora-1gpu or flux-paper-32gpu")
    config: dict[str, Any] = Field(default_factory=dict, description="fields (over the preset)")
    name: str | None = None
    num_processes: int | None = None


class VoteIn(BaseModel):
    comparison_id: int
    criterion: str
    choice: Literal["left", "right", "tie", "both_bad", "skip"]


class CampaignIn(BaseModel):
    name: str
    models: list[str] = Field(description="'base' or 'checkpoint:ID', at least two")
    prompts: list[str]
    seeds: list[int]
    criteria: list[str] = Field(default_factory=lambda: ["overall"])


class UserIn(BaseModel):
    username: str
    password: str
    role: Literal["admin", "trainer", "rater"]
    token: bool = Field(False, description="also create an API token and return it once")


class TokenIn(BaseModel):
    name: str = "api"


def job_config(body: JobIn) -> dict[str, Any]:
    """The config a job request names (a preset merged with the given fields)."""
    from srpo.config import PRESETS, deep_merge

    if body.preset is None:
        return dict(body.config)
    if body.preset not in PRESETS:
        raise StudioError(f"preset: unknown {body.preset!r}; one of {', '.join(PRESETS)}")
    return deep_merge(PRESETS[body.preset], body.config)


@router.get("/me", summary="who the credentials belong to")
def me(who: Rater) -> dict[str, Any]:
    return {"id": who.id, "username": who.username, "role": who.role.value}


@router.post("/jobs", status_code=201, summary="validate, store and queue a training job")
def submit_job(body: JobIn, who: Trainer, state: State) -> dict[str, Any]:
    job_id = queue.submit_job(
        state.db, state.settings, job_config(body), who.id, body.name, body.num_processes
    )
    with state.db.session() as session:
        return queries.job_row(session, jobs.get(session, job_id))


@router.get("/jobs", summary="jobs, newest first, with queue position and progress")
def list_jobs(_: Trainer, state: State, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
    with state.db.session() as session:
        return queries.job_rows(session, limit)


@router.get("/jobs/{job_id}", summary="one job")
def get_job(job_id: int, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return queries.job_row(session, jobs.get(session, job_id))


@router.post("/jobs/{job_id}/cancel", summary="cancel a queued job or stop a running one")
def cancel_job(job_id: int, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return queries.job_row(session, jobs.cancel(session, job_id))


@router.get("/jobs/{job_id}/metrics", summary="loss and reward per step")
def job_metrics(job_id: int, _: Trainer, state: State) -> list[dict[str, float]]:
    with state.db.session() as session:
        jobs.get(session, job_id)
        return queries.metrics(session, job_id)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, summary="the job's log")
def job_log(job_id: int, _: Trainer, state: State) -> str:
    with state.db.session() as session:
        return queries.job_log(session, state.settings, job_id)


@router.get("/checkpoints", summary="checkpoints with step, sha256 and download URL")
def list_checkpoints(_: Trainer, state: State, job_id: int | None = None) -> list[dict]:
    with state.db.session() as session:
        return queries.checkpoint_rows(session, job_id)


@router.get("/checkpoints/{checkpoint_id}", summary="one checkpoint")
def get_checkpoint(checkpoint_id: int, _: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        return queries.checkpoint_row(session, queries.checkpoint(session, checkpoint_id))


def _serve(state: Studio, checkpoint_id: int, name: str | None) -> FileResponse:
    with state.db.session() as session:
        found = queries.checkpoint(session, checkpoint_id)
        path = queries.checkpoint_file(state.settings, found, name)
        digest = found.files[name or found.weights_file]
    filename = f"job{found.job_id}-step{found.step}-{path.name}"
    return FileResponse(path, filename=filename, headers={"X-Checkpoint-SHA256": digest})


@router.get("/checkpoints/{checkpoint_id}/download", summary="the weights (safetensors)")
def download(checkpoint_id: int, _: Trainer, state: State) -> FileResponse:
    return _serve(state, checkpoint_id, None)


@router.get("/checkpoints/{checkpoint_id}/files/{name:path}", summary="a file the manifest lists")
def checkpoint_file(checkpoint_id: int, name: str, _: Trainer, state: State) -> FileResponse:
    return _serve(state, checkpoint_id, name)


@router.get(
    "/checkpoints/{checkpoint_id}/model-card",
    response_class=PlainTextResponse,
    summary="a generated model card (Markdown)",
)
def model_card(checkpoint_id: int, _: Trainer, state: State) -> str:
    with state.db.session() as session:
        found = queries.checkpoint(session, checkpoint_id)
        config = session.get(Job, found.job_id).config
        arena_results = results.checkpoint_arena(session, checkpoint_id)
    evaluation = cards.load_evaluation(state.settings, checkpoint_id)
    return cards.model_card(found, config, evaluation, arena_results)


@router.post("/campaigns", status_code=201, summary="create a campaign and render its pairs")
def create_campaign(body: CampaignIn, who: Trainer, state: State) -> dict[str, Any]:
    def store(session) -> int:
        creator = session.get(User, who.id)
        found = arena.create_campaign(
            session, body.name, body.models, body.prompts, body.seeds, body.criteria, creator
        )
        session.flush()
        return found.id

    campaign_id = state.db.write(store)
    queue.send(state.settings, PAIRS_TASK, [campaign_id])
    return {"id": campaign_id, "state": CampaignState.PENDING.value}


@router.get("/campaigns", summary="every campaign")
def list_campaigns(_: Trainer, state: State) -> list[dict[str, Any]]:
    with state.db.session() as session:
        return [_campaign_row(c) for c in session.scalars(select(Campaign).order_by(Campaign.id))]


def _campaign_row(found: Campaign) -> dict[str, Any]:
    return {
        "id": found.id,
        "name": found.name,
        "state": found.state.value,
        "models": found.models,
        "criteria": found.criteria,
        "prompts": len(found.prompts),
        "seeds": found.seeds,
        "error": found.error,
    }


@router.get("/campaigns/{campaign_id}/results", summary="win rates, Bradley-Terry, agreement")
def campaign_results(
    campaign_id: int, _: Trainer, state: State, criterion: str | None = None
) -> dict[str, Any]:
    return results.results(state, campaign_id, criterion)


@router.get("/campaigns/{campaign_id}/export", summary="preference dataset (JSONL or CSV)")
def export(
    campaign_id: int, _: Trainer, state: State, format: Literal["jsonl", "csv"] = "jsonl"
) -> Response:
    with state.db.session() as session:
        text = results.export(session, campaign_id, format)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    name = f"campaign-{campaign_id}-preferences.{format}"
    return StreamingResponse(
        io.BytesIO(text.encode()),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/rate/campaigns", summary="campaigns open for votes (for raters)")
def open_campaigns(_: Rater, state: State) -> list[dict[str, Any]]:
    with state.db.session() as session:
        found = session.scalars(
            select(Campaign).where(Campaign.state == CampaignState.READY).order_by(Campaign.id)
        )
        return [{"id": c.id, "name": c.name, "criteria": c.criteria} for c in found]


@router.get("/rate/campaigns/{campaign_id}/next", summary="a blind pair you have not judged")
def next_pair(campaign_id: int, criterion: str, who: Rater, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        results.campaign(session, campaign_id)
        pair = arena.next_pair(session, campaign_id, session.get(User, who.id), criterion)
        if pair is None:
            return {"done": True}
        return {
            "done": False,
            "comparison_id": pair.id,
            "prompt": pair.prompt,
            "criterion": criterion,
            "left_url": f"/api/v1/rate/pairs/{pair.id}/left",
            "right_url": f"/api/v1/rate/pairs/{pair.id}/right",
        }


@router.get("/rate/pairs/{comparison_id}/{side}", summary="one side's image of a blind pair")
def pair_image(
    comparison_id: int, side: Literal["left", "right"], _: Rater, state: State
) -> FileResponse:
    with state.db.session() as session:
        pair = session.get(Comparison, comparison_id)
        if pair is None:
            raise NotFound(f"pair {comparison_id} not found")
        image = session.get(
            SampleImage, pair.left_image_id if side == "left" else pair.right_image_id
        )
        path = resolve(state.settings.storage, image.path)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private"})


@router.post("/votes", status_code=201, summary="one vote (a second on the same pair is refused)")
def vote(body: VoteIn, who: Rater, state: State) -> dict[str, Any]:
    def store(session) -> int:
        return arena.cast_vote(session, who.id, body.comparison_id, body.criterion, body.choice)

    return {"id": state.db.write(store), "choice": Choice(body.choice).value}


@router.post("/tokens", status_code=201, summary="a new API token for yourself (shown once)")
def new_token(body: TokenIn, who: Trainer, state: State) -> dict[str, str]:
    return {"token": state.db.write(lambda s: create_token(s, s.get(User, who.id), body.name))}


@router.post("/users", status_code=201, summary="add a user (admins only)")
def add_user(body: UserIn, _: Admin, state: State) -> dict[str, Any]:
    def store(session) -> dict[str, Any]:
        user = create_user(session, body.username, body.password, body.role)
        session.flush()
        out: dict[str, Any] = {"id": user.id, "username": user.username, "role": user.role.value}
        if body.token:
            out["token"] = create_token(session, user, "api")
        return out

    return state.db.write(store)
