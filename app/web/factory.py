"""The studio's ASGI app: FastAPI with the REST API and two Gradio apps, all behind auth."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.core.errors import StudioError, TooMany
from app.core.settings import Settings, get_settings
from app.core.startup import prepare
from app.web import api, pages
from app.web.auth import Authenticator, AuthMiddleware, Principal
from app.web.context import Studio
from app.web.page_html import STATIC
from app.web.pages import DOCS_ASSETS, SWAGGER_UI
from app.web.security import SecurityMiddleware
from app.web.throttle import LoginGuard

log = logging.getLogger("srpo.studio")
MAX_UPLOAD = 20 * 2**20


def use_gradio_cache(folder: Path) -> None:
    """Make Gradio keep files in ``folder``: it reads ``GRADIO_TEMP_DIR`` when each component
    and upload route is made, and checks at run time that a handler's files lie inside it."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


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
        docs_url=None,  # /docs is pages.api_docs: Swagger UI with local assets
        redoc_url=None,
    )
    app.state.studio, app.state.authenticator = studio, authenticator
    app.state.login_guard = LoginGuard(
        db,
        settings.login_free_failures,
        settings.login_max_lockout_seconds,
        settings.login_concurrency,
    )
    app.add_exception_handler(StudioError, _studio_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    from app.web.ui import build_rater, build_studio

    css = (STATIC / "studio.css").read_text()
    options = {
        "auth_dependency": _gradio_user,
        "css": css,
        "theme": gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
        "ssr_mode": False,
        "footer_links": [],
        "show_error": True,
        "run_history": False,
        "mcp_server": False,
    }
    # Each app keeps its files in its own folder under the data directory, not in the
    # host-wide /tmp/gradio; the raters' app takes no file (auth.takes_no_files).
    cache = settings.data_dir.resolve() / "gradio"
    use_gradio_cache(cache / "studio")
    gr.mount_gradio_app(
        app, build_studio(studio), path="/studio", **options, max_file_size=MAX_UPLOAD
    )
    use_gradio_cache(cache / "rate")
    gr.mount_gradio_app(app, build_rater(studio), path="/rate", **options, max_file_size=1)
    # Gradio makes a new component for every gr.update it applies, and that component caches
    # its files in the folder GRADIO_TEMP_DIR names then; the studio's galleries are updated
    # that way, so at run time the variable names the studio's folder (its file route serves
    # only from there). The raters' images are plain values, cached by the components built
    # above in the raters' folder.
    use_gradio_cache(cache / "studio")
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.add_middleware(SecurityMiddleware, settings=settings)  # outermost: refusals get headers
    return app
