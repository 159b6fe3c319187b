"""``srpo users add`` and ``srpo users list`` on a new studio data folder (SQLite)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from app.core.db import database
from app.core.models import Role, User
from app.core.settings import Settings
from app.core.users import authenticate
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
