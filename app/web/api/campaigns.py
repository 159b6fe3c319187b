"""``/api/v1/campaigns``: create (the worker renders the pairs), list, results, export."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.core import access, admission, arena, arena_export, arena_results, dispatch
from app.core.models import Campaign, CampaignState, User
from app.web.api.deps import Admin, Id, State, Trainer
from app.web.context import Studio

router = APIRouter(tags=["campaigns"])


Seed = Annotated[int, Field(ge=0, le=2**32 - 1, strict=True)]


class CampaignIn(BaseModel):
    name: str = Field(max_length=200)
    models: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=32, description="'base' or 'checkpoint:ID', at least two"
    )
    prompts: list[str] = Field(max_length=arena.MAX_PROMPTS)
    seeds: list[Seed] = Field(max_length=arena.MAX_SEEDS)
    criteria: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=lambda: ["overall"], max_length=len(arena.CRITERIA)
    )


def campaign_row(found: Campaign, storage: Path) -> dict[str, Any]:
    """A campaign as plain JSON values, with ``rendered``: ``[images rendered, images to
    render]``."""
    return {
        "id": found.id,
        "name": found.name,
        "state": arena.campaign_state(found),
        "models": found.models,
        "criteria": found.criteria,
        "prompts": len(found.prompts),
        "seeds": found.seeds,
        "error": found.error,
        "rendered": list(arena.rendering_progress(storage, found)),
    }


@router.post("/campaigns", status_code=201, summary="create a campaign and render its pairs")
def create_campaign(body: CampaignIn, who: Trainer, state: State) -> dict[str, Any]:
    admission.check_values(body.model_dump(), "campaign")
    admission.campaign_size(state.settings, len(body.models), len(body.prompts), len(body.seeds))

    def store(session) -> int:
        creator = session.get(User, who.id)
        found = arena.create_campaign(
            session, body.name, body.models, body.prompts, body.seeds, body.criteria, creator
        )
        session.flush()
        return found.id

    campaign_id = state.db.write(store)
    dispatch.send(state.settings, dispatch.PAIRS_TASK, [campaign_id])
    return {"id": campaign_id, "state": CampaignState.PENDING.value}


@router.post("/campaigns/{campaign_id}/cancel", summary="stop rendering (images are kept)")
def cancel_campaign(campaign_id: Id, who: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        access.managed_campaign(session, state.settings, campaign_id, who.id, who.role)
        return campaign_row(arena.cancel_rendering(session, campaign_id), state.settings.storage)


@router.post("/campaigns/{campaign_id}/resume", summary="render what a campaign still lacks")
def resume_campaign(campaign_id: Id, who: Trainer, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        access.managed_campaign(session, state.settings, campaign_id, who.id, who.role)
        row = campaign_row(arena.resume_rendering(session, campaign_id), state.settings.storage)
    dispatch.send(state.settings, dispatch.PAIRS_TASK, [campaign_id])
    return row


@router.get("/campaigns", summary="every campaign")
def list_campaigns(_: Trainer, state: State) -> list[dict[str, Any]]:
    with state.db.session() as session:
        return [
            campaign_row(c, state.settings.storage)
            for c in session.scalars(select(Campaign).order_by(Campaign.id))
        ]


@router.get("/campaigns/{campaign_id}/results", summary="win rates, Bradley-Terry, agreement")
def campaign_results(
    campaign_id: Id, _: Trainer, state: State, criterion: str | None = None
) -> dict[str, Any]:
    return arena_results.results(state.db, state.pair_scores, campaign_id, criterion)


@router.get(
    "/campaigns/{campaign_id}/export",
    summary="every vote (view=votes) or the preference pairs (view=preferences), JSONL or CSV",
)
def export(
    campaign_id: Id,
    _: Trainer,
    state: State,
    format: Literal["jsonl", "csv"] = "jsonl",
    view: Literal["votes", "preferences"] = "votes",
) -> Response:
    with state.db.session() as session:
        name = arena_results.campaign(session, campaign_id).name
        text = arena_results.export(session, campaign_id, format, view=view)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    file_name = arena_export.export_name(campaign_id, name, view, format)
    return StreamingResponse(
        io.BytesIO(text.encode()),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


def _exclusion(campaign_id: int, rater_id: int, excluded: bool, state: Studio) -> dict[str, Any]:
    def work(session) -> list[int]:
        return arena.set_excluded(session, campaign_id, rater_id, excluded)

    return {"excluded_raters": state.db.write(work)}


@router.put(
    "/campaigns/{campaign_id}/excluded_raters/{rater_id}",
    summary="leave a rater's votes out of the campaign's results (admins)",
)
def exclude_rater(campaign_id: Id, rater_id: Id, _: Admin, state: State) -> dict[str, Any]:
    return _exclusion(campaign_id, rater_id, True, state)


@router.delete(
    "/campaigns/{campaign_id}/excluded_raters/{rater_id}",
    summary="count an excluded rater's votes again (admins)",
)
def include_rater(campaign_id: Id, rater_id: Id, _: Admin, state: State) -> dict[str, Any]:
    return _exclusion(campaign_id, rater_id, False, state)
