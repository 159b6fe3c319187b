"""The REST API under ``/api/v1`` (bearer tokens or the session cookie; OpenAPI at /docs).

One module per resource, each a thin translation between HTTP and the core:
:mod:`.jobs`, :mod:`.checkpoints`, :mod:`.campaigns`, :mod:`.votes` (and the raters' blind
pairs), :mod:`.users` and :mod:`.tokens`; :mod:`.deps` holds who is calling and the roles.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.web.api import campaigns, checkpoints, jobs, tokens, users, votes

router = APIRouter(prefix="/api/v1")
for resource in (users, jobs, checkpoints, campaigns, votes, tokens):
    router.include_router(resource.router)
