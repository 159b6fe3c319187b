"""Plain pages beside the Gradio apps: liveness, the login form, logout and the landing redirect."""

from __future__ import annotations

import html
from pathlib import Path

import anyio
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core.models import Role
from app.core.users import authenticate
from app.web.auth import PRINCIPAL_KEY, SESSION_COOKIE, SESSION_SECONDS

STATIC = Path(__file__).resolve().parents[2] / "static"
router = APIRouter()


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


@router.post("/login", include_in_schema=False, response_model=None)
async def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
) -> HTMLResponse | RedirectResponse:
    studio = request.app.state.studio
    auth = request.app.state.authenticator

    def check() -> str | None:
        with studio.db.session() as session:
            user = authenticate(session, username, password)
            return None if user is None else auth.session_cookie(user)

    cookie = await anyio.to_thread.run_sync(check)
    if cookie is None:
        page = login_page(safe_next(next), "Wrong username or password.")
        return HTMLResponse(page, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", include_in_schema=False)
def landing(request: Request) -> RedirectResponse:
    """Raters go to the rating app, everyone else to the studio."""
    who = request.scope[PRINCIPAL_KEY]
    return RedirectResponse("/rate/" if who.role == Role.RATER else "/studio/", status_code=303)
