"""Users with roles, argon2-hashed passwords and bearer tokens (only their sha256 is kept)."""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound, StudioError
from app.core.models import ApiToken, Role, User, utcnow
from app.core.settings import Settings

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str, role: Role | str) -> User:
    """Add a user; refuses bad names, short passwords, unknown roles and taken names."""
    if not USERNAME.match(username):
        raise StudioError("username: 1-64 letters, digits or _.@-")
    if len(password) < MIN_PASSWORD:
        raise StudioError(f"password: at least {MIN_PASSWORD} characters")
    try:
        role = Role(role)
    except ValueError:
        raise StudioError(f"role: one of {', '.join(r.value for r in Role)}") from None
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise Conflict(f"username {username!r} is taken") from None
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, else None."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        _hasher.hash(password)  # same work either way: no user enumeration by timing
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> str:
    """A new bearer token for ``user``; the plain token is returned once and never stored."""
    token = "srpo_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:100] or "token", token_hash=_digest(token)))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a non-revoked token belongs to, else None."""
    found = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    )
    if found is None or not found.user.active:
        return None
    found.last_used_at = utcnow()
    return found.user


def revoke_token(session: Session, user: User, token_id: int) -> None:
    """Revoke one of ``user``'s tokens."""
    found = session.get(ApiToken, token_id)
    if found is None or found.user_id != user.id:
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
