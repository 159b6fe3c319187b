"""Plain pages beside the Gradio apps: liveness, the login form, logout and the landing redirect."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse

from app.core.models import Role
from app.core.users import authenticate
from app.web.auth import PRINCIPAL_KEY, SESSION_COOKIE
from app.web.page_html import login_page
from app.web.throttle import Busy

SWAGGER_UI = Path(str(resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = "/docs/assets"
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


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_form(next: str | None = None) -> HTMLResponse:
    return HTMLResponse(login_page(safe_next(next)))


@router.post("/login", include_in_schema=False, response_model=None)
async def login(
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=2000),
    next: str = Form("/", max_length=2000),
) -> HTMLResponse | RedirectResponse:
    """Sign in: refused with 429 and ``Retry-After`` while the name or the address is backing
    off after failures, or while too many password checks run or wait (app.web.throttle)."""
    studio = request.app.state.studio
    auth = request.app.state.authenticator
    guard = request.app.state.login_guard
    target = safe_next(next)
    keys = guard.keys(username, request.client.host if request.client else "unknown")

    def check() -> str | None:
        with studio.db.session() as session:
            user = authenticate(session, username, password)
            return None if user is None else auth.new_session(session, user)

    try:
        cookie = await guard.attempt(keys, check)
    except Busy as busy:
        page = login_page(target, f"{busy.reason} Try again in {busy.retry_after} s.")
        return HTMLResponse(page, status_code=429, headers={"Retry-After": busy.retry_after})
    if cookie is None:
        return HTMLResponse(login_page(target, "Wrong username or password."), status_code=401)
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
    """Swagger UI for the REST API, with its assets served by the studio (``/docs/assets``,
    from the fastapi-offline package): no CDN, so it works offline and under the CSP."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} {request.app.version}",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from another host
    )
