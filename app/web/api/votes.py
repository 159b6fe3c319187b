"""``/api/v1/votes`` and the raters' side, ``/api/v1/rate/...``: open campaigns, the next blind
pair, its images (never its model names), and one vote per pair and criterion."""

from __future__ import annotations

import io
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.core import arena, arena_next
from app.core.errors import NotFound
from app.core.models import Campaign, CampaignState, Choice, Comparison
from app.web.api.deps import MAX_ID, Id, Rater, State

router = APIRouter(tags=["votes"])


class VoteIn(BaseModel):
    comparison_id: int = Field(ge=1, le=MAX_ID, strict=True)
    criterion: str = Field(max_length=32)
    choice: Literal["left", "right", "tie", "both_bad", "skip"]


@router.get("/rate/campaigns", summary="campaigns open for votes (for raters)")
def open_campaigns(_: Rater, state: State) -> list[dict[str, Any]]:
    with state.db.session() as session:
        found = session.scalars(
            select(Campaign).where(Campaign.state == CampaignState.READY).order_by(Campaign.id)
        )
        return [{"id": c.id, "name": c.name, "criteria": c.criteria} for c in found]


@router.get("/rate/campaigns/{campaign_id}/next", summary="a blind pair you have not judged")
def next_pair(campaign_id: Id, criterion: str, who: Rater, state: State) -> dict[str, Any]:
    with state.db.session() as session:
        found = arena_next.next_pair(session, campaign_id, who.id, criterion)
        pair = found.pair
        if pair is None:
            return {
                "done": True,
                "reason": found.reason,
                "judged": found.judged,
                "total": found.total,
            }
        return {
            "done": False,
            "judged": found.judged,
            "total": found.total,
            "comparison_id": pair.id,
            "prompt": pair.prompt,
            "criterion": criterion,
            "left_url": f"/api/v1/rate/pairs/{pair.id}/left",
            "right_url": f"/api/v1/rate/pairs/{pair.id}/right",
        }


@router.get("/rate/pairs/{comparison_id}/{side}", summary="one side's image of a blind pair")
def pair_image(
    comparison_id: Id, side: Literal["left", "right"], _: Rater, state: State
) -> Response:
    with state.db.session() as session:
        pair = session.get(Comparison, comparison_id)
        if pair is None:
            raise NotFound(f"pair {comparison_id} not found")
        picture = arena.side_image(session, state.settings.storage, pair, side)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": "private"})


@router.post("/votes", status_code=201, summary="one vote (a second on the same pair is refused)")
def vote(body: VoteIn, who: Rater, state: State) -> dict[str, Any]:
    def store(session) -> int:
        return arena.cast_vote(session, who.id, body.comparison_id, body.criterion, body.choice)

    return {"id": state.db.write(store), "choice": Choice(body.choice).value}


@router.delete(
    "/rate/votes/{vote_id}",
    summary=f"undo your own vote within {arena.UNDO_SECONDS:.0f} s (its pair can be judged again)",
)
def undo_vote(vote_id: Id, who: Rater, state: State) -> dict[str, Any]:
    pair_id = state.db.write(lambda session: arena.undo_vote(session, who.id, vote_id).id)
    return {"undone": vote_id, "comparison_id": pair_id}
