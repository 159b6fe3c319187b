"""``/api/v1/tokens``: a new API token for the caller (the plain token is shown once)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.core.models import User
from app.core.users import create_token
from app.web.api.deps import State, Trainer

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    name: str = "api"


@router.post("/tokens", status_code=201, summary="a new API token for yourself (shown once)")
def new_token(body: TokenIn, who: Trainer, state: State) -> dict[str, str]:
    return {"token": state.db.write(lambda s: create_token(s, s.get(User, who.id), body.name))}
