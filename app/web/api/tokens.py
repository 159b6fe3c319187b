"""``/api/v1/tokens``: the caller's API tokens: create one (the plain token is shown once,
with an optional expiry), list them (never the token itself), and revoke one. Admins list
and revoke everyone's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.core.errors import Forbidden
from app.core.models import Role, User, utcnow
from app.core.users import create_token, revoke_token, token_rows
from app.web.api.deps import Id, State, Trainer

router = APIRouter(tags=["tokens"])
MAX_TOKEN_DAYS = 3650


class TokenIn(BaseModel):
    name: str = Field("api", min_length=1, max_length=100)
    expires_in_days: float | None = Field(
        None, gt=0, le=MAX_TOKEN_DAYS, description="the token stops working after (default never)"
    )


@router.post("/tokens", status_code=201, summary="a new API token for yourself (shown once)")
def new_token(body: TokenIn, who: Trainer, state: State) -> dict[str, Any]:
    expires = None
    if body.expires_in_days is not None:
        expires = utcnow() + timedelta(days=body.expires_in_days)

    def store(session) -> dict[str, Any]:
        token = create_token(session, session.get(User, who.id), body.name, expires)
        when = expires.isoformat(timespec="seconds") if expires else None
        return {"token": token, "expires_at": when}

    return state.db.write(store)


@router.get("/tokens", summary="your API tokens (admins: everyone's with all=true)")
def list_tokens(
    who: Trainer,
    state: State,
    everyone: bool = Query(False, alias="all", description="every user's tokens (admins only)"),
) -> list[dict[str, Any]]:
    if everyone and who.role != Role.ADMIN:
        raise Forbidden("only admins list everyone's tokens")
    with state.db.session() as session:
        return token_rows(session, None if everyone else who.id)


@router.delete("/tokens/{token_id}", summary="revoke a token (yours; admins: anyone's)")
def delete_token(token_id: Id, who: Trainer, state: State) -> dict[str, Any]:
    owner = None if who.role == Role.ADMIN else who.id

    def work(session) -> None:
        revoke_token(session, session.get(User, owner) if owner is not None else None, token_id)

    state.db.write(work)
    state.authenticator.forget()  # this process stops accepting the token at once
    return {"id": token_id, "revoked": True}
