"""Plain pages beside the Gradio apps: liveness, the login form, logout and the landing redirect."""

from __future__ import annotations

import html
import math
from pathlib import Path

import anyio
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core.models import Role
from app.core.users import authenticate
from app.web.auth import PRINCIPAL_KEY, SESSION_COOKIE

STATIC = Path(__file__).resolve().parents[2] / "static"
router = APIRouter()
LOGIN_WAIT_SECONDS = 5.0


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """Liveness only: no version, no settings, no counts."""
    return {"status": "ok"}


def safe_next(target: str | None) -> str:
    """A local redirect target (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(target: str, message: str = "") -> str:
    """The login form; everything user-given is escaped."""
    css = (STATIC / "login.css").read_text()
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SRPO Studio: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>
<body><main class="card"><h1>SRPO Studio</h1>
<p class="lead">Preference alignment for diffusion models</p>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required>
</label><button type="submit">Sign in</button></form></main></body></html>"""


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_form(next: str | None = None) -> HTMLResponse:
    return HTMLResponse(login_page(safe_next(next)))


def _busy(target: str, message: str, seconds: float) -> HTMLResponse:
    wait = max(1, math.ceil(seconds))
    page = login_page(target, f"{message} Try again in {wait} s.")
    return HTMLResponse(page, status_code=429, headers={"Retry-After": str(wait)})


@router.post("/login", include_in_schema=False, response_model=None)
async def login(
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=2000),
    next: str = Form("/", max_length=2000),
) -> HTMLResponse | RedirectResponse:
    """Sign in: refused with 429 and ``Retry-After`` while the name or the address is backing
    off after failures, or while too many password checks run at once."""
    studio = request.app.state.studio
    auth = request.app.state.authenticator
    guard = request.app.state.login_guard
    target = safe_next(next)
    keys = guard.keys(username, request.client.host if request.client else "unknown")
    wait = guard.retry_after(keys)
    if wait > 0:
        return _busy(target, "Too many failed sign-ins.", wait)

    def check() -> str | None:
        if not guard.slots.acquire(timeout=LOGIN_WAIT_SECONDS):
            raise TimeoutError
        try:
            with studio.db.session() as session:
                user = authenticate(session, username, password)
                return None if user is None else auth.new_session(session, user)
        finally:
            guard.slots.release()

    try:
        cookie = await anyio.to_thread.run_sync(check)
    except TimeoutError:
        return _busy(target, "The studio is busy checking other sign-ins.", 1)
    if cookie is None:
        guard.failed(keys)
        return HTMLResponse(login_page(target, "Wrong username or password."), status_code=401)
    guard.succeeded(keys)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(auth.session_seconds),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
def logout(request: Request) -> RedirectResponse:
    """End the session server-side (the old cookie stops working at once) and drop it."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        request.app.state.authenticator.end_session(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", include_in_schema=False)
def landing(request: Request) -> RedirectResponse:
    """Raters go to the rating app, everyone else to the studio."""
    who = request.scope[PRINCIPAL_KEY]
    return RedirectResponse("/rate/" if who.role == Role.RATER else "/studio/", status_code=303)


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """The REST API's reference, rendered here from the OpenAPI schema (no CDN assets, so it
    works offline); the machine-readable schema is ``/openapi.json``."""
    schema = request.app.openapi()
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            params = ", ".join(p["name"] for p in operation.get("parameters", []))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            body_name = body["schema"].get("$ref", "").rsplit("/", 1)[-1] if body else ""
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation.get('summary', ''))}</td>"
                f"<td>{html.escape(params)}</td><td>{html.escape(body_name)}</td></tr>"
            )
    css = (STATIC / "login.css").read_text()
    title = html.escape(f"{schema['info']['title']} {schema['info']['version']}")
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{css}
table{{border-collapse:collapse}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left}}</style></head><body><main><h1>{title}</h1>
<p>{html.escape(schema["info"].get("description", ""))} Send <code>Authorization: Bearer
srpo_...</code>; the schema is at <a href="/openapi.json">/openapi.json</a>.</p>
<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th><th>Body</th></tr>
{"".join(rows)}</table></main></body></html>""")
