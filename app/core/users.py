"""Users with roles, argon2-hashed passwords, server-side web sessions and bearer tokens
(only sha256 digests of session values and tokens are kept).

Logging out ends one session; a password change, a role change or disabling a user ends
all of that user's sessions at once. A disabled user's tokens stop working; tokens may
expire. User names are unique without regard to case.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound, StudioError
from app.core.models import ApiToken, Role, User, WebSession, utcnow
from app.core.settings import Settings

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# The most used passwords of at least eight characters (lists of breached passwords agree).
COMMON_PASSWORDS = frozenset(
    [
        "password",
        "password1",
        "password12",
        "password123",
        "passw0rd",
        "12345678",
        "123456789",
        "1234567890",
        "11111111",
        "00000000",
        "87654321",
        "12341234",
        "qwertyui",
        "qwertyuiop",
        "qwerty123",
        "1q2w3e4r",
        "1qaz2wsx",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome",
        "welcome1",
        "letmein1",
        "abc12345",
        "abcd1234",
        "admin123",
        "administrator",
        "trustno1",
        "superman",
        "starwars",
        "whatever",
        "michael1",
        "computer",
        "changeme",
        "default1",
        "secret123",
        "zaq12wsx",
        "asdfghjk",
        "asdfasdf",
        "aaaaaaaa",
        "qazwsxedc",
    ]
)
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def check_password(password: str, username: str) -> None:
    """Refuse a password that is short, blank, common, repetitive or the user's name."""
    if len(password) < MIN_PASSWORD:
        raise StudioError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StudioError(f"password: at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise StudioError("password: must not be only spaces")
    folded = password.casefold()
    if username and username.casefold() in folded:
        raise StudioError("password: must not contain the user name")
    if folded in COMMON_PASSWORDS:
        raise StudioError("password: one of the most common passwords; choose another")
    if len(set(folded)) < 4:
        raise StudioError("password: use at least 4 different characters")


def find_user(session: Session, username: str) -> User | None:
    """The user called ``username`` (without regard to case), or None."""
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def get_user(session: Session, username: str) -> User:
    """The user called ``username``, or :class:`NotFound`."""
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise StudioError(f"role: one of {', '.join(r.value for r in Role)}") from None


def create_user(session: Session, username: str, password: str, role: Role | str) -> User:
    """Add a user; refuses bad names, weak passwords, unknown roles and taken names (in any
    case: ``ALICE`` is taken when ``alice`` exists)."""
    if not USERNAME.match(username):
        raise StudioError("username: 1-64 letters, digits or _.@-")
    check_password(password, username)
    role = _role(role)
    if find_user(session, username) is not None:
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise Conflict(f"username {username!r} is taken") from None
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, else None."""
    user = find_user(session, username) if USERNAME.match(username) else None
    if user is None or not user.active or len(password) > MAX_PASSWORD:
        _hasher.hash(password[:MAX_PASSWORD])  # same work either way: no enumeration by timing
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def end_sessions(session: Session, user_id: int) -> int:
    """End every open web session of a user; returns how many were open."""
    done = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return done.rowcount


def set_password(session: Session, user: User, password: str) -> None:
    """Change a user's password (policy checked) and end their sessions."""
    check_password(password, user.username)
    user.password_hash = hash_password(password)
    end_sessions(session, user.id)


def set_active(session: Session, user: User, active: bool) -> None:
    """Enable or disable a user; disabling ends their sessions (their tokens stop working)."""
    user.active = active
    if not active:
        end_sessions(session, user.id)


def set_role(session: Session, user: User, role: Role | str) -> None:
    """Change a user's role and end their sessions (they sign in again with the new role)."""
    user.role = _role(role)
    end_sessions(session, user.id)


def change_user(
    session: Session,
    username: str,
    by: int | None,
    role: Role | str | None = None,
    active: bool | None = None,
    password: str | None = None,
) -> User:
    """Change a user's password, role or status, as the admin ``by`` asked (the API's
    ``PATCH /users`` and the studio's Admin tab). Admins may not demote or disable
    themselves: the studio could be left with no admin."""
    user = get_user(session, username)
    demoted = role is not None and _role(role) != Role.ADMIN
    if by == user.id and (demoted or active is False):
        raise Conflict("you cannot demote or disable yourself; another admin can")
    if password is not None:
        set_password(session, user, password)
    if role is not None and _role(role) != user.role:
        set_role(session, user, role)
    if active is not None and active != user.active:
        set_active(session, user, active)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(session: Session, user: User, seconds: float) -> str:
    """A new web session for ``user``; returns its random value (kept only as sha256)."""
    value = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=seconds)
    session.add(WebSession(user_id=user.id, token_hash=_digest(value), expires_at=expires))
    session.flush()
    return value


def session_user(session: Session, value: str) -> User | None:
    """The active user of an open, unexpired web session, else None."""
    found = session.scalar(
        select(WebSession).where(
            WebSession.token_hash == _digest(value),
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > utcnow(),
        )
    )
    if found is None:
        return None
    user = session.get(User, found.user_id)
    return user if user is not None and user.active else None


def end_session(session: Session, value: str) -> None:
    """End one web session (logout)."""
    session.execute(
        update(WebSession)
        .where(WebSession.token_hash == _digest(value), WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def create_token(
    session: Session, user: User, name: str, expires_at: datetime | None = None
) -> str:
    """A new bearer token for ``user`` (expiring at ``expires_at`` if given); the plain
    token is returned once and never stored."""
    token = "srpo_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            user_id=user.id,
            name=name[:100] or "token",
            token_hash=_digest(token),
            expires_at=expires_at,
        )
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a non-revoked, unexpired token belongs to, else None."""
    found = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    )
    if found is None or not found.user.active:
        return None
    if found.expires_at is not None and found.expires_at <= utcnow():
        return None
    found.last_used_at = utcnow()
    return found.user


def token_rows(session: Session, user_id: int | None = None) -> list[dict]:
    """Tokens (of one user, or everyone's) as plain values, oldest first; never the token.
    ``active``: the token lets its user in (not revoked, not expired, the user not disabled)."""
    query = select(ApiToken, User.username, User.active).join(User, User.id == ApiToken.user_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    now = utcnow()

    def when(value: datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value else None

    return [
        {
            "id": token.id,
            "user": username,
            "name": token.name,
            "created_at": when(token.created_at),
            "last_used_at": when(token.last_used_at),
            "expires_at": when(token.expires_at),
            "revoked_at": when(token.revoked_at),
            "user_active": user_active,
            "active": token.revoked_at is None
            and (token.expires_at is None or token.expires_at > now)
            and user_active,
        }
        for token, username, user_active in session.execute(query.order_by(ApiToken.id))
    ]


def revoke_token(session: Session, user: User | None, token_id: int) -> None:
    """Revoke one of ``user``'s tokens (any user's token when ``user`` is None: admins)."""
    found = session.get(ApiToken, token_id)
    if found is None or (user is not None and found.user_id != user.id):
        raise NotFound(f"token {token_id} not found")
    found.revoked_at = found.revoked_at or utcnow()


def bootstrap_admin(session: Session, settings: Settings) -> User | None:
    """Create the first admin from ``SRPO_ADMIN_USERNAME``/``SRPO_ADMIN_PASSWORD`` if none exists."""
    if settings.admin_password is None:
        return None
    if session.scalar(select(User.id).where(User.role == Role.ADMIN).limit(1)) is not None:
        return None
    password = settings.admin_password.get_secret_value()
    return create_user(session, settings.admin_username, password, Role.ADMIN)
