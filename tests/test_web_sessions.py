"""Sessions and tokens end when they should (issue 14, items 3, 4 and 6), through the web:
logout, a password or role change and disabling a user end web sessions at once; tokens
expire, are listed without their secret and are revoked; sign-in backs off with 429 and
``Retry-After`` and a flood of wrong passwords neither runs unbounded argon2 work nor keeps
a real user out; two studio processes on one database share the sign-in limits; weak
passwords and names taken in another case are refused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

import app.web.pages as pages
from app.core import login_failures
from app.core.models import LoginFailure, Role
from app.core.settings import Settings
from app.core.startup import prepare
from app.web.auth import SESSION_COOKIE
from app.web.factory import create_app
from app.web.throttle import LoginGuard
from tests.web_support import PASSWORD, add_account, web_settings

NEW_PASSWORD = "a longer, newer passphrase"


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[tuple]:
    settings = web_settings(tmp_path_factory.mktemp("sessions"))
    app = create_app(settings)
    db = app.state.studio.db
    accounts = {
        "admin": add_account(db, "ada", Role.ADMIN),
        "tina": add_account(db, "tina", Role.TRAINER),
        "tom": add_account(db, "tom", Role.TRAINER),
    }
    with TestClient(app, follow_redirects=False) as client:
        yield app, client, accounts


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; returns the session cookie's value."""
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 303, response.text
    cookie = response.cookies[SESSION_COOKIE]
    client.cookies.clear()
    return cookie


def me(client: TestClient, cookie: str) -> int:
    """The status of ``GET /api/v1/me`` with only this session cookie."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    try:
        return client.get("/api/v1/me").status_code
    finally:
        client.cookies.clear()


def test_logout_ends_the_session_on_the_server(studio) -> None:
    _, client, _ = studio
    cookie, other = sign_in(client, "tina"), sign_in(client, "tina")
    assert me(client, cookie) == 200
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.post("/logout").status_code == 303
    client.cookies.clear()
    assert me(client, cookie) == 401  # the old cookie, replayed, no longer works
    assert me(client, other) == 200  # logout ends this session, not the user's others


def test_password_and_role_changes_and_disabling_end_every_session(studio) -> None:
    _, client, accounts = studio
    admin = accounts["admin"].headers
    cookie = sign_in(client, "tom")
    change = client.patch("/api/v1/users/tom", json={"password": NEW_PASSWORD}, headers=admin)
    assert change.status_code == 200, change.text
    assert me(client, cookie) == 401
    cookie = sign_in(client, "tom", NEW_PASSWORD)
    assert client.patch("/api/v1/users/TOM", json={"role": "rater"}, headers=admin).json() == {
        "id": change.json()["id"],
        "username": "tom",
        "role": "rater",
        "active": True,
    }
    assert me(client, cookie) == 401
    cookie = sign_in(client, "tom", NEW_PASSWORD)
    assert me(client, cookie) == 200
    assert client.patch("/api/v1/users/tom", json={"active": False}, headers=admin).is_success
    assert me(client, cookie) == 401
    assert client.get("/api/v1/me", headers=accounts["tom"].headers).status_code == 401
    refused = client.post("/login", data={"username": "tom", "password": NEW_PASSWORD})
    assert refused.status_code == 401
    body = {"active": True, "role": "trainer", "password": PASSWORD}
    assert client.patch("/api/v1/users/tom", json=body, headers=admin).is_success
    assert client.get("/api/v1/me", headers=accounts["tom"].headers).status_code == 200
    listed = client.get("/api/v1/users", headers=admin).json()
    assert {(u["username"], u["role"], u["active"]) for u in listed} >= {("tom", "trainer", True)}


def test_only_admins_change_users_and_bad_changes_are_4xx(studio) -> None:
    _, client, accounts = studio
    admin, tina = accounts["admin"].headers, accounts["tina"].headers
    assert (
        client.patch("/api/v1/users/tom", json={"active": False}, headers=tina).status_code == 403
    )
    assert client.get("/api/v1/users", headers=tina).status_code == 403
    missing = client.patch("/api/v1/users/nobody", json={"active": False}, headers=admin)
    assert missing.status_code == 404 and missing.json() == {"detail": "no user 'nobody'"}
    weak = client.patch("/api/v1/users/tom", json={"password": "password"}, headers=admin)
    assert weak.status_code == 400 and "common" in weak.json()["detail"]
    assert (
        client.patch("/api/v1/users/tom", json={"role": "root"}, headers=admin).status_code == 422
    )


def test_tokens_are_listed_without_their_secret_expire_and_are_revoked(studio) -> None:
    _, client, accounts = studio
    tina, tom, admin = (accounts[name].headers for name in ("tina", "tom", "admin"))
    made = client.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 7}, headers=tina)
    assert made.status_code == 201 and made.json()["expires_at"]
    token = made.json()["token"]
    new = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=new).json()["username"] == "tina"
    listed = client.get("/api/v1/tokens", headers=tina)
    assert listed.status_code == 200 and token not in listed.text
    mine = {row["name"]: row for row in listed.json()}
    assert set(mine) == {"test", "ci"} and all(row["user"] == "tina" for row in listed.json())
    assert mine["ci"]["active"] and mine["ci"]["expires_at"] == made.json()["expires_at"]
    assert client.get("/api/v1/tokens?all=true", headers=tina).status_code == 403
    everyone = client.get("/api/v1/tokens?all=true", headers=admin).json()
    assert {"ada", "tina", "tom"} <= {row["user"] for row in everyone}

    ci = mine["ci"]["id"]
    assert client.delete(f"/api/v1/tokens/{ci}", headers=tom).status_code == 404  # not his
    assert client.delete(f"/api/v1/tokens/{ci}", headers=tina).json() == {"id": ci, "revoked": True}
    assert client.get("/api/v1/me", headers=new).status_code == 401  # at once
    assert not {row["id"]: row for row in client.get("/api/v1/tokens", headers=tina).json()}[ci][
        "active"
    ]
    assert client.delete("/api/v1/tokens/99999", headers=tina).status_code == 404
    assert client.delete(f"/api/v1/tokens/{10**23}", headers=tina).status_code == 422


@pytest.mark.parametrize(
    "body",
    [{"expires_in_days": 0}, {"expires_in_days": -1}, {"expires_in_days": 10**6}, {"name": ""}],
)
def test_bad_token_requests_are_422(studio, body) -> None:
    _, client, accounts = studio
    response = client.post("/api/v1/tokens", json=body, headers=accounts["tina"].headers)
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("username", "password", "status", "detail"),
    [
        ("rita", "password", 400, "password: one of the most common passwords; choose another"),
        ("rita", " " * 8, 400, "password: must not be only spaces"),
        ("rita2026", "rita2026", 400, "password: must not contain the user name"),
        ("TINA", PASSWORD, 409, "username 'TINA' is taken"),
    ],
)
def test_weak_passwords_and_names_taken_in_another_case_are_refused(
    studio, username, password, status, detail
) -> None:
    _, client, accounts = studio
    body = {"username": username, "password": password, "role": "rater"}
    response = client.post("/api/v1/users", json=body, headers=accounts["admin"].headers)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded(studio) -> Iterator[tuple]:
    """The studio with fresh sign-in limits on a hand-moved clock: 3 free failures, two
    password checks at once (driven by an async client that gives each request its address)."""
    app = studio[0]
    db = app.state.studio.db
    db.write(lambda s: s.execute(delete(LoginFailure)))  # counters other tests left
    clock, before = Clock(), app.state.login_guard
    app.state.login_guard = LoginGuard(db, 3, 60.0, 2, clock=clock)
    yield app, clock
    app.state.login_guard = before


async def post_login(app, address: str, username: str, password: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/login", data={"username": username, "password": password})


def test_wrong_passwords_back_off_with_429_and_the_right_one_too(guarded) -> None:
    app, clock = guarded

    def login(address: str, username: str, password: str) -> httpx.Response:
        return asyncio.run(post_login(app, address, username, password))

    wrong = [login("10.0.0.1", "tina", "not her password").status_code for _ in range(25)]
    assert wrong == [401] * 4 + [429] * 21  # 3 free failures, then one more, then backoff
    right = login("10.0.0.1", "tina", PASSWORD)
    assert right.status_code == 429 and right.headers["retry-after"] == "1"
    assert "Too many failed sign-ins." in right.text
    assert login("10.0.0.2", "TINA", PASSWORD).status_code == 429  # the name backs off
    assert login("10.0.0.1", "tom", PASSWORD).status_code == 429  # and so does the address
    assert login("10.0.0.3", "tom", PASSWORD).status_code == 303

    clock.now += int(right.headers["retry-after"])
    assert login("10.0.0.2", "tina", PASSWORD).status_code == 303  # it waited long enough


def test_backoff_doubles_up_to_its_cap_and_old_failures_are_forgiven(guarded) -> None:
    app, clock = guarded
    app.state.login_guard = LoginGuard(app.state.studio.db, 3, 4.0, 2, clock=clock)

    def login(password: str) -> httpx.Response:
        return asyncio.run(post_login(app, "10.0.0.5", "tom", password))

    assert [login("wrong-wrong").status_code for _ in range(4)] == [401] * 4
    waits = []
    for _ in range(4):
        refused = login(PASSWORD)
        assert refused.status_code == 429
        waits.append(int(refused.headers["retry-after"]))
        clock.now += waits[-1]
        assert login("wrong-wrong").status_code == 401
    assert waits == [1, 2, 4, 4]  # doubling, capped at max_lockout
    clock.now += 4 + 5  # the lockout ended over max_lockout ago: the failures are forgiven
    assert [login("wrong-wrong").status_code for _ in range(3)] == [401] * 3
    assert login(PASSWORD).status_code == 303


def test_a_flood_of_wrong_logins_runs_bounded_argon2_work_and_a_real_login_gets_in(
    guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = guarded
    running, most = 0, 0
    lock = threading.Lock()
    real = pages.authenticate

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(pages, "authenticate", counted)

    async def run() -> tuple[list[httpx.Response], httpx.Response]:
        flood = [post_login(app, "10.6.6.6", f"user{n}", "guess-guess") for n in range(48)]
        flood += [post_login(app, "10.6.6.7", "tina", "guess-guess") for _ in range(10)]
        started = [asyncio.ensure_future(attempt) for attempt in flood]
        await asyncio.sleep(0)
        real_login = await post_login(app, "10.0.0.9", "tom", PASSWORD)
        return list(await asyncio.gather(*started)), real_login

    flood, real_login = asyncio.run(run())
    assert real_login.status_code == 303
    statuses = [answer.status_code for answer in flood]
    assert set(statuses) <= {401, 429}
    # one address gets its free attempts (3) plus one, then waits; so does one user name
    assert statuses.count(401) <= 2 * 4
    assert all(a.headers.get("retry-after") for a in flood if a.status_code == 429)
    assert most <= 2  # login_concurrency


def two_studios_share_sign_in_limits(settings: Settings) -> None:
    """Two studio processes' apps on one database (``settings``' database, 3 free failures):
    failures counted by either lock the name and the address out in both, and a lockout one
    of them set holds in the other, which has never seen it."""
    first, second = create_app(settings), create_app(settings)
    db, clock = first.state.studio.db, Clock()
    clock.now = time.time()
    assert first.state.login_guard is not second.state.login_guard
    for app in (first, second):
        app.state.login_guard.clock = clock  # both on one hand-moved clock
    add_account(db, "sam", Role.TRAINER)
    add_account(db, "sid", Role.TRAINER)

    def login(app, address: str, username: str, password: str) -> httpx.Response:
        return asyncio.run(post_login(app, address, username, password))

    # four wrong guesses, taken in turn by the two processes: 3 free, then one more
    apps = [first, second, first, second]
    assert [login(app, "10.1.0.1", "sam", "a wrong guess").status_code for app in apps] == [401] * 4
    for app in (first, second):
        refused = login(app, "10.1.0.2", "SAM", PASSWORD)  # the name, from anywhere
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert login(app, "10.1.0.1", "sid", PASSWORD).status_code == 429  # the address
    assert login(second, "10.1.0.3", "sid", PASSWORD).status_code == 303
    clock.now += 1
    assert login(second, "10.1.0.1", "sam", "a wrong guess").status_code == 401
    assert login(first, "10.1.0.2", "sam", PASSWORD).status_code == 429  # now 2 s
    clock.now += 2
    assert login(first, "10.1.0.2", "sam", PASSWORD).status_code == 303
    with db.session() as session:  # the sign-in cleared the name's count in the database
        assert session.get(LoginFailure, "u:sam") is None
        assert session.get(LoginFailure, "a:10.1.0.1").failures == 5


def test_two_studio_processes_on_one_sqlite_file_share_sign_in_limits(tmp_path) -> None:
    two_studios_share_sign_in_limits(web_settings(tmp_path, login_free_failures=3))


def test_forgiven_counters_are_deleted_and_others_kept(tmp_path) -> None:
    db = prepare(web_settings(tmp_path))
    now = 10_000.0

    def admit(key: str, at: float) -> float:
        return db.write(lambda s: login_failures.admit(s, (key,), at, 1, 60.0))[0]

    for n in range(50):  # a spray of names, each failing once long ago
        admit(f"u:sprayed{n}", now - 61)
    for _ in range(3):
        admit("u:locked", now - 59)  # locked out, its last failure within the cap
    admit("u:recent", now)
    assert db.write(lambda s: login_failures.forget_old(s, now, 60.0)) == 50
    with db.session() as session:
        kept = session.scalars(select(LoginFailure.key)).all()
    assert sorted(kept) == ["u:locked", "u:recent"]
