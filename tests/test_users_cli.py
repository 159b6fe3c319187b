"""``srpo users`` (add, list, passwd, role, disable, enable, tokens) on a new studio data
folder (SQLite)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from app.core.db import database
from app.core.models import Role, User
from app.core.settings import Settings
from app.core.users import (
    authenticate,
    create_session,
    create_token,
    get_user,
    session_user,
    user_for_token,
)
from srpo.cli import main

SRPO = Path(sys.executable).with_name("srpo")
PASSWORD = "correct-horse-battery"


def users(data_dir: Path) -> list[tuple[str, Role, str]]:
    """(username, role, password hash) of every user stored in ``data_dir``'s database."""
    with database(Settings(data_dir=data_dir).database).session() as session:
        return [
            (u.username, u.role, u.password_hash)
            for u in session.scalars(select(User).order_by(User.id))
        ]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new studio data folder that the ``SRPO_*`` environment points to (and nothing else)."""
    for name in list(os.environ):
        if name.startswith("SRPO_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "data"
    monkeypatch.setenv("SRPO_DATA_DIR", str(folder))
    return folder


def add(monkeypatch: pytest.MonkeyPatch, stdin: str, *args: str) -> int:
    """Run ``srpo users add ARGS --password-stdin`` in-process with ``stdin``."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["users", "add", *args, "--password-stdin"])


def test_the_installed_command_adds_a_user_with_a_hashed_password(data_dir: Path) -> None:
    done = subprocess.run(
        [str(SRPO), "users", "add", "alice", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "added admin 'alice' (id 1)"
    [(username, role, password_hash)] = users(data_dir)
    assert (username, role) == ("alice", Role.ADMIN)
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash
    assert PasswordHasher().verify(password_hash, PASSWORD)
    with database(Settings(data_dir=data_dir).database).session() as session:
        assert authenticate(session, "alice", PASSWORD).role == Role.ADMIN
        assert authenticate(session, "alice", PASSWORD + "\n") is None


def test_the_password_is_prompted_twice_and_data_dir_overrides_the_environment(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("app.users_cli.getpass", typed)
    other = tmp_path / "other"
    assert main(["users", "add", "tina", "--role", "trainer", "--data-dir", str(other)]) == 0
    assert prompts == ["password: ", "password again: "]
    [(username, role, password_hash)] = users(other)
    assert (username, role) == ("tina", Role.TRAINER)
    assert PasswordHasher().verify(password_hash, PASSWORD)
    assert not data_dir.exists()


def test_passwords_that_differ_store_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("app.users_cli.getpass", lambda _: next(typed))
    assert main(["users", "add", "rita", "--role", "rater"]) == 2
    assert capsys.readouterr().err == "srpo: error: the two passwords differ\n"
    assert users(data_dir) == []


@pytest.mark.parametrize(
    ("username", "role", "password", "message"),
    [
        ("alice", "rater", PASSWORD, "username 'alice' is taken"),
        ("rita", "superuser", PASSWORD, "role: one of admin, trainer, rater"),
        ("rita", "rater", "short", "password: at least 8 characters"),
        ("rita", "rater", "", "password: at least 8 characters"),
        ("bad name!", "rater", PASSWORD, "username: 1-64 letters, digits or _.@-"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_stores_nothing(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    username: str,
    role: str,
    password: str,
    message: str,
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "alice", "--role", "admin") == 0
    before = users(data_dir)
    capsys.readouterr()
    assert add(monkeypatch, password + "\n", username, "--role", role) == 2
    captured = capsys.readouterr()
    assert captured.err == f"srpo: error: {message}\n" and captured.out == ""
    assert users(data_dir) == before
    assert [name for name, _, _ in before] == ["alice"]


def test_list_shows_every_user_oldest_first(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "alice", "--role", "admin") == 0
    assert add(monkeypatch, PASSWORD + "\n", "rita", "--role", "rater") == 0
    capsys.readouterr()
    assert main(["users", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["username"], r["role"], r["active"]) for r in rows] == [
        (1, "alice", "admin", True),
        (2, "rita", "rater", True),
    ]
    assert main(["users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["1", "alice", "admin", "active"],
        ["2", "rita", "rater", "active"],
    ]


def test_the_first_admin_from_the_settings_is_created_before_the_new_user(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRPO_ADMIN_USERNAME", "root")
    monkeypatch.setenv("SRPO_ADMIN_PASSWORD", PASSWORD)
    assert add(monkeypatch, PASSWORD + "\n", "rita", "--role", "rater") == 0
    assert [(name, role) for name, role, _ in users(data_dir)] == [
        ("root", Role.ADMIN),
        ("rita", Role.RATER),
    ]


def test_weak_passwords_and_names_taken_in_another_case_are_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "alice", "--role", "admin") == 0
    capsys.readouterr()
    for username, password, message in [
        ("rita", "password", "password: one of the most common passwords; choose another"),
        ("rita", " " * 8, "password: must not be only spaces"),
        ("rita1234", "rita1234", "password: must not contain the user name"),
        ("rita", "RITA-rita-RITA", "password: must not contain the user name"),
        ("rita", "abababab", "password: use at least 4 different characters"),
        ("ALICE", PASSWORD, "username 'ALICE' is taken"),
    ]:
        assert add(monkeypatch, password + "\n", username, "--role", "rater") == 2
        assert capsys.readouterr().err == f"srpo: error: {message}\n"
    assert [name for name, _, _ in users(data_dir)] == ["alice"]


def signed_in(data_dir: Path, username: str) -> tuple[str, str]:
    """A web session and an API token of ``username``, opened as the studio opens them."""

    def work(session) -> tuple[str, str]:
        user = get_user(session, username)
        return create_session(session, user, 3600), create_token(session, user, "t")

    return database(Settings(data_dir=data_dir).database).write(work)


def still_valid(data_dir: Path, session_value: str, token: str) -> tuple[bool, bool]:
    """Whether the web session and the token still let their user in."""
    with database(Settings(data_dir=data_dir).database).session() as session:
        return session_user(session, session_value) is not None, (
            user_for_token(session, token) is not None
        )


def test_passwd_role_and_disable_end_the_users_sessions_at_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "bob", "--role", "trainer") == 0
    web, token = signed_in(data_dir, "bob")
    assert still_valid(data_dir, web, token) == (True, True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a new, better passphrase\n"))
    assert main(["users", "passwd", "BOB", "--password-stdin"]) == 0
    assert still_valid(data_dir, web, token) == (False, True)
    with database(Settings(data_dir=data_dir).database).session() as session:
        assert authenticate(session, "bob", "a new, better passphrase") is not None
        assert authenticate(session, "bob", PASSWORD) is None

    web, token = signed_in(data_dir, "bob")
    assert main(["users", "role", "bob", "rater"]) == 0
    assert still_valid(data_dir, web, token) == (False, True)
    assert users(data_dir)[0][1] == Role.RATER

    web, token = signed_in(data_dir, "bob")
    assert main(["users", "disable", "bob"]) == 0
    assert still_valid(data_dir, web, token) == (False, False)
    with database(Settings(data_dir=data_dir).database).session() as session:
        assert authenticate(session, "bob", "a new, better passphrase") is None
    assert main(["users", "enable", "bob"]) == 0
    assert still_valid(data_dir, web, token) == (False, True)  # the session stays ended
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    assert capsys.readouterr().out.split() == ["1", "bob", "rater", "active"]


def test_passwd_keeps_the_policy_and_names_must_exist(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "bob", "--role", "trainer") == 0
    before = users(data_dir)
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("password\n"))
    assert main(["users", "passwd", "bob", "--password-stdin"]) == 2
    assert capsys.readouterr().err.startswith("srpo: error: password: one of the most common")
    assert main(["users", "disable", "nobody"]) == 2
    assert capsys.readouterr().err == "srpo: error: no user 'nobody'\n"
    assert main(["users", "role", "bob", "root"]) == 2
    assert capsys.readouterr().err == "srpo: error: role: one of admin, trainer, rater\n"
    assert users(data_dir) == before


def test_tokens_are_listed_without_the_secret_expire_and_are_revoked(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "bob", "--role", "trainer") == 0
    assert add(monkeypatch, PASSWORD + "\n", "tim", "--role", "trainer") == 0
    capsys.readouterr()
    assert main(["users", "tokens", "new", "bob", "--name", "ci", "--days", "30"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("srpo_")
    assert main(["users", "tokens", "new", "tim"]) == 0
    other = capsys.readouterr().out.strip()
    assert main(["users", "tokens", "list", "bob", "--json"]) == 0
    listed = capsys.readouterr().out
    assert token not in listed
    [row] = [json.loads(line) for line in listed.splitlines()]
    assert (row["user"], row["name"], row["active"]) == ("bob", "ci", True)
    expires = datetime.fromisoformat(row["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert main(["users", "tokens", "list"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["bob", "tim"]

    assert main(["users", "tokens", "revoke", str(row["id"])]) == 0
    with database(Settings(data_dir=data_dir).database).session() as session:
        assert user_for_token(session, token) is None
        assert user_for_token(session, other).username == "tim"
    capsys.readouterr()
    assert main(["users", "tokens", "list", "bob"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["users", "tokens", "revoke", "99"]) == 2
    assert main(["users", "tokens", "new", "bob", "--days", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "srpo: error: token 99 not found",
        "srpo: error: --days: more than 0 and at most 3650",
    ]


def test_a_disabled_users_token_is_listed_as_not_active(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "bob", "--role", "trainer") == 0
    assert main(["users", "tokens", "new", "bob", "--name", "ci"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["users", "disable", "bob"]) == 0
    with database(Settings(data_dir=data_dir).database).session() as session:
        assert user_for_token(session, token) is None  # it lets nobody in
    capsys.readouterr()
    assert main(["users", "tokens", "list", "bob", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["active"], row["user_active"], row["revoked_at"]) == (False, False, None)
    assert main(["users", "tokens", "list"]) == 0
    assert "user disabled" in capsys.readouterr().out


def test_an_expired_token_lets_nobody_in(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert add(monkeypatch, PASSWORD + "\n", "bob", "--role", "trainer") == 0
    db = database(Settings(data_dir=data_dir).database)
    past = datetime.now(UTC) - timedelta(seconds=1)
    token = db.write(lambda s: create_token(s, get_user(s, "bob"), "old", past))
    with db.session() as session:
        assert user_for_token(session, token) is None
