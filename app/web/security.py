"""The outermost ASGI layer: request body limits and checks, CORS only for listed origins,
and security headers on every answer (refusals included).

- Bodies over ``SRPO_MAX_BODY_BYTES`` are refused with 413 (Gradio's file uploads have
  their own limit); JSON bodies of the REST API holding NUL bytes, lone surrogates,
  integers beyond 64 bits or deep nesting are refused with 400 before any route sees them.
- Gradio answers any localhost origin with credentialed CORS; every ``Access-Control-*``
  header is dropped here unless the request's origin is in ``SRPO_CORS_ORIGINS``.
- Headers: ``X-Content-Type-Options``, a frame policy, a content security policy Gradio
  works under, ``Referrer-Policy``, and HSTS on HTTPS.
"""

from __future__ import annotations

import json
from typing import Any

from app.core.admission import MAX_DEPTH, MAX_INT
from app.core.settings import Settings
from app.web.auth import Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'{eval}; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "media-src 'self' data: blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
# Gradio 6 renders gr.HTML through compiled templates (new Function), so its two apps need
# 'unsafe-eval'; every other page (login, /docs, the API) gets the policy without it.
GRADIO_PREFIXES = ("/studio/", "/rate/")
BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
HEADERS = [*BASE_HEADERS, (b"content-security-policy", CSP.format(eval="").encode())]
GRADIO_HEADERS = [
    *BASE_HEADERS,
    (b"content-security-policy", CSP.format(eval=" 'unsafe-eval'").encode()),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")
UPLOAD_SUFFIX = "/gradio_api/upload"


class BodyError(ValueError):
    """A request body the studio refuses (the message says why)."""


def _check(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise BodyError(f"JSON nested more than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise BodyError("NUL bytes are not allowed in text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError("text holds a lone surrogate (not valid Unicode)") from None
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise BodyError(f"integer {value} is beyond 64 bits")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def check_json(body: bytes) -> None:
    """Refuse a JSON body that would break a database or the handlers (see the module)."""
    if not body.strip():
        return
    try:
        _check(json.loads(body))
    except RecursionError:
        raise BodyError(f"JSON nested more than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return  # the route answers malformed JSON with its own 422


class SecurityMiddleware:
    """See the module docstring."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.origins = set(settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        allowed = origin is not None and origin in self.origins
        path = scope["path"]
        if scope.get("method") == "OPTIONS" and allowed:
            await self._preflight(send, origin)
            return
        gradio = (path + "/").startswith(GRADIO_PREFIXES)
        wrapped = self._headers(
            send, origin if allowed else None, scope.get("scheme") == "https", gradio
        )
        if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            upload = path.endswith(UPLOAD_SUFFIX)
            try:
                receive = await self._body(scope, receive, headers, upload)
            except BodyError as error:
                status = 413 if "larger" in str(error) else 400
                await _answer(wrapped, status, str(error))
                return
        await self.app(scope, receive, wrapped)

    async def _body(
        self, scope: Scope, receive: Receive, headers: dict[str, str], upload: bool
    ) -> Receive:
        """Read the whole body (bounded), check it, and hand the app a replay of it."""
        if upload:
            return receive  # Gradio limits files itself (max_file_size)
        limit = self.settings.max_body_bytes
        too_big = BodyError(f"request body larger than {limit} bytes (SRPO_MAX_BODY_BYTES)")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if scope["path"].startswith("/api/") and "json" in headers.get("content-type", ""):
            check_json(body)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _headers(self, send: Send, origin: str | None, https: bool, gradio: bool) -> Send:
        base = GRADIO_HEADERS if gradio else HEADERS
        extra = [*base, HSTS] if https else base

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-")
                    and k.lower() not in {name for name, _ in extra}
                ]
                if origin is not None:
                    kept += [
                        (b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"access-control-allow-credentials", b"true"),
                    ]
                    if not any(k.lower() == b"vary" and b"origin" in v.lower() for k, v in kept):
                        kept.append((b"vary", b"Origin"))
                message = {**message, "headers": kept + extra}
            await send(message)

        return wrapped

    async def _preflight(self, send: Send, origin: str) -> None:
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
