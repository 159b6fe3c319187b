"""``/api/v1/me`` and ``/api/v1/users``: who is calling; adding, listing and changing users
(admins only). A change of password or role, or disabling a user, ends their web sessions
at once; a disabled user's tokens stop working."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.core.models import User
from app.core.users import change_user, create_token, create_user
from app.web.api.deps import Admin, Rater, State

router = APIRouter(tags=["users"])
RoleName = Literal["admin", "trainer", "rater"]


class UserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: RoleName
    token: bool = Field(False, description="also create an API token and return it once")


class UserChange(BaseModel):
    role: RoleName | None = None
    active: bool | None = Field(None, description="false: disable (sessions end, tokens stop)")
    password: str | None = Field(None, max_length=1024, description="a new password")


def _row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role.value,
        "active": user.active,
    }


@router.get("/me", summary="who the credentials belong to")
def me(who: Rater) -> dict[str, Any]:
    return {"id": who.id, "username": who.username, "role": who.role.value}


@router.post("/users", status_code=201, summary="add a user (admins only)")
def add_user(body: UserIn, _: Admin, state: State) -> dict[str, Any]:
    def store(session) -> dict[str, Any]:
        user = create_user(session, body.username, body.password, body.role)
        session.flush()
        out = _row(user)
        if body.token:
            out["token"] = create_token(session, user, "api")
        return out

    return state.db.write(store)


@router.get("/users", summary="every user with role and status (admins only)")
def list_users(_: Admin, state: State) -> list[dict[str, Any]]:
    with state.db.session() as session:
        return [_row(user) for user in session.scalars(select(User).order_by(User.id))]


@router.patch("/users/{username}", summary="change a user's role, status or password (admins)")
def patch_user(username: str, body: UserChange, who: Admin, state: State) -> dict[str, Any]:
    def store(session) -> dict[str, Any]:
        changes = body.model_dump(include={"role", "active", "password"})
        return _row(change_user(session, username, who.id, **changes))

    found = state.db.write(store)
    state.authenticator.forget()  # ended sessions stop working in this process at once
    return found
