"""What every API route depends on: the studio context and the caller with a role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.errors import Forbidden
from app.core.models import Role
from app.web.auth import PRINCIPAL_KEY, Principal
from app.web.context import Studio

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


# Row ids are 32-bit on PostgreSQL (INTEGER keys): 2**31 or 10**23 is a 422, not a 500.
MAX_ID = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Rater = Annotated[Principal, Depends(needs(Role.RATER))]
Trainer = Annotated[Principal, Depends(needs(Role.TRAINER))]
Admin = Annotated[Principal, Depends(needs(Role.ADMIN))]
State = Annotated[Studio, Depends(studio)]
