"""Every route of the studio, the mounted Gradio apps' included, refuses missing credentials,
and refuses raters wherever a trainer is needed. Routes are enumerated from the app, so a
new route that is not protected fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.routing import Mount

from app.core.models import Job, Role
from app.web.factory import create_app
from tests.web_support import PASSWORD, add_account, stored_checkpoint, user_id, web_settings

PUBLIC = {("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/login"), ("POST", "/login")}
# What raters may reach: their app, the voting API, their landing page and logout.
RATER_PATHS = {"/", "/logout", "/api/v1/me", "/api/v1/votes", "/rate"}
RATER_PREFIXES = ("/rate/", "/api/v1/rate/", "/static/")


def walk(routes, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, concrete path) of every route, descending into mounts and included routers."""
    for route in routes:
        if isinstance(route, Mount):
            yield "GET", prefix + route.path
            inner = getattr(route, "routes", None) or []
            if not inner and hasattr(route.app, "routes"):
                inner = route.app.routes
            yield from walk(inner, prefix + route.path)
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                for method in sorted(context.methods or {"GET"}):
                    yield method, prefix + context.path
        elif getattr(route, "path", None) is not None:
            methods = getattr(route, "methods", None) or {"GET"}
            for method in sorted(methods):
                yield method, prefix + route.path


def concrete(path: str) -> str:
    """A path with every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "1", path) or "/"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-auth")
    settings = web_settings(folder)
    app = create_app(settings)
    db = app.state.studio.db
    accounts = {
        "trainer": add_account(db, "tina", Role.TRAINER),
        "rater": add_account(db, "rita", Role.RATER),
    }
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
        yield app, client, accounts, settings


def all_routes(app) -> list[tuple[str, str]]:
    found = sorted({(m, concrete(p)) for m, p in walk(app.routes) if m != "HEAD"})
    assert len(found) > 60, "expected the API, the pages and both Gradio apps' routes"
    return found


def refused_anonymously(response) -> bool:
    if response.status_code == 303:
        return response.headers["location"].startswith("/login")
    return response.status_code == 401


def test_every_route_but_liveness_and_login_refuses_anonymous_requests(studio):
    app, client, _, _ = studio
    checked = 0
    for method, path in all_routes(app):
        if (method, path) in PUBLIC:
            continue
        for accept in ("application/json", "text/html"):
            response = client.request(method, path, headers={"Accept": accept})
            assert refused_anonymously(response), (method, path, response.status_code)
        checked += 1
    assert checked > 60
    assert client.get("/healthz").json() == {"status": "ok"}


def test_paths_outside_any_route_are_refused_before_routing(studio):
    _, client, _, _ = studio
    for path in ("/nope", "/studio/gradio_api/file=/etc/passwd", "/rate/../studio/"):
        assert client.get(path).status_code in (400, 401)


def test_raters_are_refused_everywhere_but_voting(studio):
    app, client, accounts, _ = studio
    rater = accounts["rater"].headers
    for method, path in all_routes(app):
        if (method, path) in PUBLIC:
            continue
        if path in RATER_PATHS or path.startswith(RATER_PREFIXES):
            continue  # some of these stream forever (Gradio's heartbeat); checked below
        response = client.request(method, path, headers=rater)
        assert response.status_code == 403, (method, path, response.status_code)
    for path in ("/api/v1/me", "/rate/config", "/api/v1/rate/campaigns", "/static/studio.css"):
        assert client.get(path, headers=rater).status_code == 200, path
    assert client.get("/", headers=rater).headers["location"] == "/rate/"


def test_a_rater_opening_the_studio_or_the_docs_gets_a_page_with_links(studio):
    _, client, accounts, _ = studio
    browser = {**accounts["rater"].headers, "Accept": "text/html,application/xhtml+xml"}
    for path in ("/studio/", "/docs"):
        page = client.get(path, headers=browser)
        assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
        assert f"may not open\n<code>{path}</code>" in page.text
        assert '<a href="/rate/">the rating app</a>' in page.text
        assert 'href="/studio/"' not in page.text and 'href="/logout"' in page.text
    # scripts and API clients still get JSON
    api = client.get("/studio/", headers=accounts["rater"].headers)
    assert api.json() == {"detail": "your role may not use this"}
    evil = client.get("/studio/<script>x</script>", headers=browser)
    assert "<script>x" not in evil.text and "&lt;script&gt;" in evil.text


def test_trainers_reach_trainer_routes_but_not_admin_ones(studio):
    _, client, accounts, _ = studio
    trainer = accounts["trainer"].headers
    assert client.get("/api/v1/jobs", headers=trainer).status_code == 200
    assert client.get("/openapi.json", headers=trainer).status_code == 200
    body = {"username": "x1", "password": PASSWORD, "role": "rater"}
    assert client.post("/api/v1/users", json=body, headers=trainer).status_code == 403


def test_bad_tokens_and_forged_cookies_are_refused(studio):
    _, client, _, _ = studio
    assert (
        client.get("/api/v1/jobs", headers={"Authorization": "Bearer srpo_nope"}).status_code == 401
    )
    client.cookies.set("srpo_session", "eyJ1IjoxfQ.forged.signature")
    try:
        assert client.get("/api/v1/jobs").status_code == 401
    finally:
        client.cookies.clear()


def test_login_sets_a_session_that_opens_the_studio_and_logout_ends_it(studio):
    _, client, _, _ = studio
    wrong = client.post("/login", data={"username": "tina", "password": "nope-nope"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    ok = client.post("/login", data={"username": "tina", "password": PASSWORD, "next": "/studio/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/studio/"
    try:
        assert client.get("/studio/config").status_code == 200
        assert client.get("/api/v1/me").json()["role"] == "trainer"
        evil = client.post(
            "/api/v1/tokens", json={"name": "x"}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403
    finally:
        client.get("/logout")
        client.cookies.clear()
    assert client.get("/api/v1/me").status_code == 401


def test_login_redirects_only_to_local_pages(studio):
    _, client, _, _ = studio
    response = client.post(
        "/login", data={"username": "rita", "password": PASSWORD, "next": "//evil.example/"}
    )
    assert response.headers["location"] == "/"
    client.cookies.clear()


def test_checkpoint_downloads_refuse_path_tricks(studio):
    app, client, accounts, settings = studio
    trainer = accounts["trainer"].headers
    db = app.state.studio.db
    job_id, checkpoint_id, weights = stored_checkpoint(db, settings)
    owner = user_id(db, "tina")
    db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(owner_id=owner)))
    good = client.get(f"/api/v1/checkpoints/{checkpoint_id}/download", headers=trainer)
    assert good.status_code == 200 and good.content == weights
    assert len(good.headers["x-checkpoint-sha256"]) == 64
    secret = settings.secret()
    tricks = [
        "../../../../secret_key",
        "..%2F..%2F..%2F..%2Fsecret_key",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret_key",
        "/etc/passwd",
        "manifest.json",
        "..\\..\\secret_key",
        "pytorch_lora_weights.safetensors%00.txt",
    ]
    for trick in tricks:
        response = client.get(f"/api/v1/checkpoints/{checkpoint_id}/files/{trick}", headers=trainer)
        assert response.status_code in (400, 404), (trick, response.status_code)
        assert secret not in response.text
    assert client.get("/api/v1/checkpoints/999/download", headers=trainer).status_code == 404
