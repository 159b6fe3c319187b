"""``/api/v1/me`` and ``/api/v1/users``: who is calling, and adding users (admins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.core.users import create_token, create_user
from app.web.api.deps import Admin, Rater, State

router = APIRouter(tags=["users"])


class UserIn(BaseModel):
    username: str
    password: str
    role: Literal["admin", "trainer", "rater"]
    token: bool = Field(False, description="also create an API token and return it once")


@router.get("/me", summary="who the credentials belong to")
def me(who: Rater) -> dict[str, Any]:
    return {"id": who.id, "username": who.username, "role": who.role.value}


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
