"""The studio's ASGI app: FastAPI with the REST API and two Gradio apps, all behind auth."""

from __future__ import annotations

import logging

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.core.errors import StudioError, TooMany
from app.core.settings import Settings, get_settings
from app.core.startup import prepare
from app.web import api, pages
from app.web.auth import Authenticator, AuthMiddleware, LoginGuard, Principal
from app.web.context import Studio
from app.web.pages import STATIC
from app.web.security import SecurityMiddleware

log = logging.getLogger("srpo.studio")
MAX_UPLOAD = 20 * 2**20


def _gradio_user(request: Request) -> str | None:
    """Gradio's view of the caller: the username the auth middleware established."""
    found: Principal | None = request.scope.get("srpo.principal")
    return None if found is None else found.username


async def _studio_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StudioError)
    headers = {}
    if isinstance(error, TooMany) and error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return JSONResponse({"detail": str(error)}, status_code=error.status, headers=headers)


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=error)
    return JSONResponse({"detail": "internal error; it is logged on the server"}, status_code=500)


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in item['loc'][1:]) or 'body'}: {item['msg']}"
        for item in error.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The studio for ``settings`` (default: from the environment); migrates the DB to head."""
    settings = settings or get_settings()
    db = prepare(settings)
    authenticator = Authenticator(db, settings.secret(), settings.session_seconds)
    studio = Studio(settings, db, authenticator)
    from srpo import __version__

    app = FastAPI(
        title="SRPO Studio API",
        version=__version__,
        description="Queue SRPO fine-tunes, download checkpoints, vote in blind A/B tests.",
        docs_url=None,  # /docs is a local page (pages.api_docs): no CDN, works offline
        redoc_url=None,
    )
    app.state.studio, app.state.authenticator = studio, authenticator
    app.state.login_guard = LoginGuard(
        settings.login_free_failures, settings.login_max_lockout_seconds, settings.login_concurrency
    )
    app.add_exception_handler(StudioError, _studio_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    from app.web.ui import build_rater, build_studio

    css = (STATIC / "studio.css").read_text()
    options = {
        "auth_dependency": _gradio_user,
        "css": css,
        "theme": gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        "ssr_mode": False,
        "footer_links": [],
        "show_error": True,
        "max_file_size": MAX_UPLOAD,
        "run_history": False,
        "mcp_server": False,
    }
    gr.mount_gradio_app(app, build_studio(studio), path="/studio", **options)
    gr.mount_gradio_app(app, build_rater(studio), path="/rate", **options)
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.add_middleware(SecurityMiddleware, settings=settings)  # outermost: refusals get headers
    return app
