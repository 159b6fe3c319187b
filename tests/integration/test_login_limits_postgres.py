"""Sign-in limits shared through PostgreSQL (issue 14, item 4): two studio apps on one
database lock out together, and concurrent attempts from many processes' threads are
counted exactly, each admitted only while the counters allow it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from app.core import login_failures
from app.core.db import Database
from app.core.models import LoginFailure
from app.core.startup import prepare
from app.web.factory import create_app
from app.web.throttle import LoginGuard
from tests.test_web_sessions import two_studios_share_sign_in_limits
from tests.web_support import web_settings


def test_two_studio_processes_on_postgresql_share_sign_in_limits(
    tmp_path, empty_postgres_url
) -> None:
    settings = web_settings(tmp_path, database_url=empty_postgres_url, login_free_failures=3)
    two_studios_share_sign_in_limits(settings)


def test_concurrent_attempts_are_each_counted_once_and_admitted_within_the_limit(
    tmp_path, empty_postgres_url
) -> None:
    settings = web_settings(tmp_path, database_url=empty_postgres_url)
    prepare(settings)
    engines = [Database(settings.database) for _ in range(4)]  # as four processes' pools
    now = time.time()

    def attempt(n: int) -> float:
        db = engines[n % len(engines)]
        keys = ("u:target", f"a:10.2.0.{n}")
        wait, _ = db.write(lambda s: login_failures.admit(s, keys, now, 5, 900.0))
        return wait

    with ThreadPoolExecutor(16) as pool:
        waits = list(pool.map(attempt, range(40)))
    admitted = waits.count(0.0)
    assert admitted == 6  # 5 free, then one more, then the name is locked out
    with engines[0].session() as session:
        assert session.get(LoginFailure, "u:target").failures == admitted
        assert session.get(LoginFailure, "u:target").locked_until == now + 1
    for db in engines:
        db.dispose()


def test_sign_ins_and_failures_on_one_name_and_address_at_once_never_deadlock(
    tmp_path, empty_postgres_url
) -> None:
    settings = web_settings(tmp_path, database_url=empty_postgres_url)
    prepare(settings)
    engines = [Database(settings.database) for _ in range(4)]
    keys, now = ("u:pat", "a:10.3.0.1"), time.time()

    def attempt(n: int) -> None:
        db = engines[n % len(engines)]
        if n % 2:  # a sign-in
            db.write(lambda s: login_failures.settle(s, keys, 1000))
        else:
            db.write(lambda s: login_failures.admit(s, keys, now, 1000, 900.0))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(attempt, range(200)))  # a deadlock would raise here
    for db in engines:
        db.dispose()


def test_names_with_nul_bytes_or_lone_surrogates_are_counted_not_a_500(
    tmp_path, empty_postgres_url
) -> None:
    settings = web_settings(tmp_path, database_url=empty_postgres_url, login_free_failures=1)
    app = create_app(settings)
    form = {"content-type": "application/x-www-form-urlencoded"}
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for body in ("username=a%00b&password=x", "username=%ED%A0%80&password=x"):
            answers = [client.post("/login", content=body, headers=form) for _ in range(3)]
            statuses = [answer.status_code for answer in answers]
            assert statuses[0] == 401 and statuses[2] == 429, answers[0].text  # counted
            app.state.login_guard.clock = lambda: time.time() + 10  # past the lockouts
    guard, keys = app.state.login_guard, LoginGuard.keys("x\ud800\x00", "10.4.0.1")
    assert guard.db.write(lambda s: login_failures.admit(s, keys, time.time(), 1, 60.0))[0] == 0
    guard.db.dispose()
