"""Users, roles, argon2 passwords and bearer tokens on a migrated database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.core.db import database
from app.core.errors import Conflict, StudioError
from app.core.models import ApiToken, Role, User
from app.core.settings import Settings
from app.core.startup import prepare
from app.core.users import authenticate, create_token, create_user, revoke_token, user_for_token


def test_passwords_are_hashed_and_checked(sqlite_settings) -> None:
    db = database(sqlite_settings.database)
    db.write(lambda s: create_user(s, "tara", "long enough", "trainer"))
    with db.session() as session:
        user = session.scalar(select(User).where(User.username == "tara"))
        assert user.role == Role.TRAINER and "long enough" not in user.password_hash
        assert user.password_hash.startswith("$argon2id$")
        assert authenticate(session, "tara", "long enough").id == user.id
        assert authenticate(session, "tara", "wrong password") is None
        assert authenticate(session, "nobody", "long enough") is None


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("bad name!", "long enough", "rater", "username"),
        ("ok", "short", "rater", "password"),
        ("ok", "long enough", "superuser", "role"),
    ],
)
def test_bad_users_are_refused(sqlite_settings, name, password, role, message) -> None:
    db = database(sqlite_settings.database)
    with pytest.raises(StudioError, match=message):
        db.write(lambda s: create_user(s, name, password, role))
    assert db.write(lambda s: s.scalar(select(func.count()).select_from(User))) == 0


def test_a_taken_username_is_a_conflict(sqlite_settings) -> None:
    db = database(sqlite_settings.database)
    db.write(lambda s: create_user(s, "sam", "long enough", "rater"))
    with pytest.raises(Conflict, match="taken"):
        db.write(lambda s: create_user(s, "sam", "other password", "admin"))


def test_tokens_are_stored_hashed_and_can_be_revoked(sqlite_settings) -> None:
    db = database(sqlite_settings.database)

    def make(session):
        user = create_user(session, "api", "long enough", "trainer")
        session.flush()
        return user.id, create_token(session, user, "ci")

    user_id, token = db.write(make)
    with db.session() as session:
        stored = session.scalar(select(ApiToken))
        assert token not in stored.token_hash
        assert user_for_token(session, token).id == user_id
        assert user_for_token(session, token + "x") is None
        revoke_token(session, session.get(User, user_id), stored.id)
    with db.session() as session:
        assert user_for_token(session, token) is None


def test_the_first_admin_comes_from_the_settings_once(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, admin_username="root", admin_password="bootstrap pw")
    db = prepare(settings)
    prepare(settings)  # a restart adds nobody
    with db.session() as session:
        admins = session.scalars(select(User).where(User.role == Role.ADMIN)).all()
        assert [a.username for a in admins] == ["root"]
        assert authenticate(session, "root", "bootstrap pw") is not None
