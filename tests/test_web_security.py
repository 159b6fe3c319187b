"""The studio's answers to a hostile page or user (issue 14, items 5 and 7, security headers,
/docs): no credentialed CORS except for listed origins, security headers on every answer,
Swagger served from the studio itself, uploads closed where no component takes a file, and
each Gradio app's files in its own folder under the data directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.core.models import Role
from app.core.settings import Settings
from app.web.auth import SESSION_COOKIE
from app.web.factory import create_app
from tests.web_support import PASSWORD, add_account, web_settings

LISTED = "http://tools.example:8080"
HOSTILE = ("http://localhost:7861", "http://127.0.0.1:9000", "null", "https://evil.example")


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[tuple]:
    settings = web_settings(tmp_path_factory.mktemp("web-security"), cors_origins=(LISTED,))
    app = create_app(settings)
    db = app.state.studio.db
    accounts = {
        "trainer": add_account(db, "tina", Role.TRAINER),
        "rater": add_account(db, "rita", Role.RATER),
    }
    with TestClient(app, follow_redirects=False) as client:
        signed_in = client.post("/login", data={"username": "tina", "password": PASSWORD})
        cookie = signed_in.cookies[SESSION_COOKIE]
        client.cookies.clear()
        yield app, client, accounts, settings, cookie


@pytest.mark.parametrize("origin", HOSTILE)
def test_other_origins_get_no_credentialed_cors(studio, origin: str) -> None:
    _, client, _, _, cookie = studio
    for path in ("/studio/config", "/rate/config", "/api/v1/me"):
        response = client.get(
            path, headers={"Origin": origin, "Cookie": f"{SESSION_COOKIE}={cookie}"}
        )
        assert response.status_code == 200  # a same-origin read would work ...
        cors = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        assert cors == {}, (path, cors)  # ... but the browser shows another origin nothing
    preflight = client.options(
        "/studio/config",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_a_listed_origin_gets_credentialed_cors(studio) -> None:
    _, client, _, _, cookie = studio
    response = client.get(
        "/studio/config", headers={"Origin": LISTED, "Cookie": f"{SESSION_COOKIE}={cookie}"}
    )
    assert response.headers["access-control-allow-origin"] == LISTED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"].lower().count("origin") == 1  # Gradio's, not a second
    preflight = client.options(
        "/api/v1/jobs", headers={"Origin": LISTED, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == LISTED


def test_every_answer_has_security_headers_and_https_adds_hsts(studio) -> None:
    app, client, accounts, _, _ = studio
    trainer = accounts["trainer"].headers
    answers = [
        client.get("/login"),
        client.get("/api/v1/jobs"),  # a refusal (401)
        client.get("/studio/", headers=trainer),
        client.get("/api/v1/jobs", headers=trainer),
        client.get("/static/studio.css", headers=trainer),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert "strict-transport-security" not in response.headers
    for plain in (answers[0], client.get("/docs", headers=trainer)):
        assert "'unsafe-eval'" not in plain.headers["content-security-policy"]
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as secure:
        assert secure.get("/login").headers["strict-transport-security"].startswith("max-age=")


def test_docs_is_swagger_ui_served_from_the_studio(studio) -> None:
    _, client, accounts, _, _ = studio
    trainer = accounts["trainer"].headers
    page = client.get("/docs", headers=trainer)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset, kind in (
        ("/docs/assets/swagger-ui-bundle.js", "javascript"),
        ("/docs/assets/swagger-ui.css", "text/css"),
    ):
        response = client.get(asset, headers=trainer)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert len(response.content) > 10_000
    assert client.get("/docs").status_code == 401
    assert client.get("/docs", headers=accounts["rater"].headers).status_code == 403


def upload(client: TestClient, path: str, headers: dict[str, str]):
    return client.post(path, files={"files": ("a.txt", b"hello", "text/plain")}, headers=headers)


def test_the_raters_app_takes_no_file_and_no_app_takes_screen_recordings(studio) -> None:
    _, client, accounts, _, _ = studio
    for who in ("rater", "trainer"):
        headers = accounts[who].headers
        for path in (
            "/rate/gradio_api/upload",
            "/rate/gradio_api/upload?upload_id=x",
            "/rate/gradio_api/component_server",
            "/rate/gradio_api/queue/join",
            "/rate/gradio_api/process_recording",
            "/studio/gradio_api/process_recording",
        ):
            response = upload(client, path, headers)
            assert response.status_code == 403, (who, path, response.status_code)
            if who == "trainer":  # (a rater is refused the studio's paths for the role)
                assert response.json() == {"detail": "this app takes no uploads"}


def test_the_studios_uploads_land_in_its_own_folder_under_the_data_dir(studio) -> None:
    _, client, accounts, settings, _ = studio
    response = upload(client, "/studio/gradio_api/upload", accounts["trainer"].headers)
    assert response.status_code == 200, response.text
    [stored] = response.json()
    folder = settings.data_dir.resolve() / "gradio" / "studio"
    assert Path(stored).resolve().is_relative_to(folder)
    assert Path(stored).read_bytes() == b"hello"


def test_each_gradio_app_keeps_its_files_in_its_own_folder(studio) -> None:
    app, _, _, settings, _ = studio
    gradio = settings.data_dir.resolve() / "gradio"
    mounts = {route.path: route.app for route in app.routes if isinstance(route, Mount)}
    for path, name in (("/studio", "studio"), ("/rate", "rate")):
        server = mounts[path]
        assert Path(server.uploaded_file_dir) == gradio / name
        blocks = server.get_blocks()
        caches = {Path(block.GRADIO_CACHE) for block in [blocks, *blocks.blocks.values()]}
        assert caches == {gradio / name}, (path, caches)


def test_components_gradio_makes_at_run_time_cache_where_the_studio_serves(studio) -> None:
    """A gr.update of a gallery makes a new Gallery, which caches its images where the
    studio's file route must serve them from (the browser test shows them byte for byte)."""
    app, _, _, _, _ = studio
    mounts = {route.path: route.app for route in app.routes if isinstance(route, Mount)}
    made = gr.Gallery(render=False)
    assert Path(made.GRADIO_CACHE) == Path(mounts["/studio"].uploaded_file_dir)


async def _client_seen(options: dict, forwarded_for: str) -> tuple[str, int] | None:
    """The client address an app sees behind uvicorn's middleware with these options, for a
    request from 127.0.0.1 that claims to be forwarded for ``forwarded_for``."""
    import uvicorn

    seen = {}

    async def app(scope, receive, send) -> None:
        seen["client"] = scope["client"]

    config = uvicorn.Config(app, **options)
    config.load()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-forwarded-for", forwarded_for.encode())],
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
    }
    await config.loaded_app(scope, None, None)
    return tuple(seen["client"])


def test_the_studio_trusts_forwarded_addresses_only_from_proxies_it_is_told_of() -> None:
    import anyio

    from app.studio import server_options
    from srpo.cli import build_parser

    def seen(*flags: str) -> tuple:
        args = build_parser().parse_args(["studio", *flags])
        return anyio.run(_client_seen, server_options(args), "203.0.113.9")

    # a local user forging X-Forwarded-For would get fresh per-address sign-in limits
    assert seen()[0] == "127.0.0.1"
    assert seen("--forwarded-allow-ips", "127.0.0.1")[0] == "203.0.113.9"
    assert seen("--forwarded-allow-ips", "10.0.0.2")[0] == "127.0.0.1"


def test_security_md_states_the_model_and_names_tests_that_exist() -> None:
    """Issue 14: docs/security.md states roles and ownership, what each setting opens, what
    is stored where, how to rotate the secret key and what the tests cover; every test file
    its table names exists, and every ``SRPO_`` name it uses is a setting."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "security.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    for wanted in ("Roles and ownership", "What each setting opens", "What is stored where"):
        assert wanted in headings
    assert "Rotating the secret key" in headings and "What the tests cover" in headings
    tests = text.split("## What the tests cover", 1)[1]
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", tests))
    assert len(named) >= 15
    assert [path for path in sorted(named) if not (root / path).is_file()] == []
    settings = {f"SRPO_{name.upper()}" for name in Settings.model_fields}
    used = set(re.findall(r"`(SRPO_[A-Z_]+)", text)) - {"SRPO_"}
    assert used - settings == set()
