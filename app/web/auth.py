"""Authentication and role checks in front of every route, the mounted Gradio apps included.

One ASGI middleware sits before all routing, so nothing (API routes, Gradio's own routes,
file and image URLs, the OpenAPI schema) is reachable without credentials unless it is in
:data:`PUBLIC`. Credentials are a signed session cookie (set by the login page, ended server-side by
logout) or an ``Authorization: Bearer`` API token. Access is deny-by-default by path: raters reach only
:data:`RATER_PREFIXES` / :data:`RATER_PATHS` (the rating app and the voting API), admins
alone reach :data:`ADMIN_PREFIXES`, and every other path needs a trainer or an admin.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from app.core.db import Database
from app.core.models import Role, User
from app.core.users import create_session, end_session, find_user, session_user, user_for_token
from app.web.page_html import role_page

SESSION_COOKIE = "srpo_session"
DEFAULT_SESSION_SECONDS = 12 * 3600.0
PRINCIPAL_KEY = "srpo.principal"
PUBLIC = {("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/login"), ("POST", "/login")}
RATER_PATHS = {"/", "/logout", "/api/v1/me", "/api/v1/votes"}
RATER_PREFIXES = ("/rate/", "/api/v1/rate/", "/static/")
ADMIN_PREFIXES = ("/api/v1/users",)
BAD_PATH_PARTS = ("/../", "/./", "//", "\\", "\x00")
# Gradio opens its upload routes in every app. The raters' app has no component that takes
# a file, so it takes no file at all; no app records the screen, and process_recording
# would run ffmpeg on whatever it is sent.
CLOSED_PATHS = ("/rate/gradio_api/upload", "/rate/gradio_api/process_recording")
CLOSED_SUFFIXES = ("/gradio_api/process_recording",)
NO_FILES_PREFIXES = ("/rate/",)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    id: int
    username: str
    role: Role

    def may(self, needed: Role) -> bool:
        """Whether this principal's role grants ``needed`` (admin > trainer > rater)."""
        rank = {Role.RATER: 0, Role.TRAINER: 1, Role.ADMIN: 2}
        return rank[self.role] >= rank[needed]


def needed_role(path: str) -> Role:
    """The least role a path needs (deny-by-default: anything unlisted needs a trainer)."""
    if path.startswith(ADMIN_PREFIXES):
        return Role.ADMIN
    if path in RATER_PATHS or path == "/rate" or path.startswith(RATER_PREFIXES):
        return Role.RATER
    return Role.TRAINER


def is_public(method: str, path: str) -> bool:
    """Whether a request needs no credentials (only liveness and the login page)."""
    return (method, path) in PUBLIC


def suspicious(path: str) -> bool:
    """True for dot segments, doubled slashes, backslashes or NUL in a path."""
    return path.endswith(("/..", "/.")) or any(part in path for part in BAD_PATH_PARTS)


class Authenticator:
    """Turns a session cookie or a bearer token into a :class:`Principal` (cached briefly).

    A session cookie is a signed random value whose sha256 names a row of ``web_sessions``,
    so logout, a password or role change and disabling a user end it at once (this
    process forgets its cache then; other processes within ``cache_seconds``). Rotating
    the secret key ends every session too: the signature no longer holds.
    """

    def __init__(
        self,
        db: Database,
        secret: str,
        session_seconds: float = DEFAULT_SESSION_SECONDS,
        cache_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.session_seconds = session_seconds
        self.cache_seconds = cache_seconds
        self.serializer = URLSafeTimedSerializer(secret, salt="srpo-session")
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def new_session(self, session: Session, user: User) -> str:
        """Open a web session for ``user``; returns the signed cookie value."""
        return self.serializer.dumps(create_session(session, user, self.session_seconds))

    def _value(self, cookie: str) -> str | None:
        try:
            value = self.serializer.loads(cookie, max_age=self.session_seconds)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def end_session(self, cookie: str) -> None:
        """End the session of a cookie (logout) and forget every cached principal."""
        value = self._value(cookie)
        if value is not None:
            self.db.write(lambda session: end_session(session, value))
        self.forget()

    def _cached(self, key: str, load: Callable[[], Principal | None]) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        found = load()
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self.cache_seconds, found)
        return found

    def from_token(self, token: str) -> Principal | None:
        """The principal of an API token, or None."""

        def load() -> Principal | None:
            user = self.db.write(lambda session: user_for_token(session, token))
            return None if user is None else Principal(user.id, user.username, user.role)

        return self._cached("t:" + hashlib.sha256(token.encode()).hexdigest(), load)

    def from_cookie(self, cookie: str) -> Principal | None:
        """The principal of a session cookie, or None (bad signature, expired, ended)."""
        value = self._value(cookie)
        if value is None:
            return None

        def load() -> Principal | None:
            with self.db.session() as session:
                user = session_user(session, value)
                return None if user is None else Principal(user.id, user.username, user.role)

        return self._cached("c:" + hashlib.sha256(value.encode()).hexdigest(), load)

    def by_username(self, username: str) -> Principal | None:
        """The active user called ``username`` as a principal (for Gradio handlers)."""
        with self.db.session() as session:
            user = find_user(session, username)
            if user is None or not user.active:
                return None
            return Principal(user.id, user.username, user.role)

    def forget(self) -> None:
        """Drop every cached principal (after a logout or a change to a user)."""
        with self._lock:
            self._cache.clear()


def takes_no_files(path: str, headers: dict[str, str]) -> bool:
    """Whether a request would hand files to a route of an app with no upload component."""
    if path.startswith(CLOSED_PATHS) or path.rstrip("/").endswith(CLOSED_SUFFIXES):
        return True
    multipart = headers.get("content-type", "").lower().startswith("multipart/")
    return multipart and path.startswith(NO_FILES_PREFIXES)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _same_origin(headers: dict[str, str]) -> bool:
    """False when a browser says the request comes from another site (CSRF)."""
    origin = headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == headers.get("host", "")


class AuthMiddleware:
    """Refuses every request that lacks credentials or the role its path needs."""

    def __init__(self, app: Callable, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope.get("method", "GET")
        if suspicious(path) or suspicious(scope.get("raw_path", b"").decode("latin-1")):
            await self._refuse(scope, receive, send, 400, "bad path")
            return
        if is_public(method, path):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        principal, by_cookie = await self._principal(headers)
        if principal is None:
            await self._unauthenticated(scope, receive, send, headers)
            return
        if by_cookie and method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(headers):
            await self._refuse(scope, receive, send, 403, "cross-origin request refused")
            return
        if not principal.may(needed_role(path)):
            if _wants_page(scope, headers):
                page = role_page(principal.username, principal.role, path).encode()
                await _send(send, 403, [(b"content-type", b"text/html; charset=utf-8")], page)
                return
            await self._refuse(scope, receive, send, 403, "your role may not use this")
            return
        if takes_no_files(path, headers):
            await self._refuse(scope, receive, send, 403, "this app takes no uploads")
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _principal(self, headers: dict[str, str]) -> tuple[Principal | None, bool]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found = await anyio.to_thread.run_sync(self.auth.from_token, token.strip())
            return found, False
        cookie = _cookie(headers, SESSION_COOKIE)
        if cookie:
            return await anyio.to_thread.run_sync(self.auth.from_cookie, cookie), True
        return None, False

    async def _unauthenticated(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        if _wants_page(scope, headers):
            target = scope["path"] + (
                "?" + scope["query_string"].decode() if scope.get("query_string") else ""
            )
            location = "/login?next=" + quote(target, safe="")
            await _send(send, 303, [(b"location", location.encode())], b"")
            return
        await self._refuse(scope, receive, send, 401, "sign in or give a bearer token")

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403})
            return
        headers = [(b"content-type", b"application/json")]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await _send(send, status, headers, json.dumps({"detail": message}).encode())


def _wants_page(scope: Scope, headers: dict[str, str]) -> bool:
    """Whether the request is a browser's page load (a GET that accepts HTML)."""
    return (
        scope["type"] == "http"
        and scope.get("method") == "GET"
        and "text/html" in headers.get("accept", "")
    )


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """One whole HTTP response."""
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
