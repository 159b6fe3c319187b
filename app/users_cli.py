"""``srpo users``: manage the studio's users and their API tokens (an ``srpo.commands`` entry
point).

Every command uses the studio's settings (``SRPO_*``, or ``--data-dir``) and migrates the
database first, so ``srpo users add`` can make the first admin of a new studio::

    srpo users add alice --role admin                       # prompts for the password twice
    printf '%s\\n' "$PASSWORD" | srpo users add bob --role rater --password-stdin
    srpo users list
    srpo users passwd bob                                   # ends bob's web sessions
    srpo users role bob trainer                             # ends bob's web sessions
    srpo users disable bob                                  # sessions end, tokens stop working
    srpo users enable bob
    srpo users tokens list [bob]                            # every token, never the secret
    srpo users tokens new bob --name ci --days 30           # printed once
    srpo users tokens revoke 7

A studio process that serves the web app notices a change made here within its principal
cache (2 s); a change made through the REST API is seen there at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from getpass import getpass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import StudioError
from app.core.models import Role, User, utcnow
from app.core.settings import Settings, get_settings
from app.core.startup import prepare
from app.core.users import (
    create_token,
    create_user,
    get_user,
    revoke_token,
    set_active,
    set_password,
    set_role,
    token_rows,
)

MAX_TOKEN_DAYS = 3650


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="data folder (default: SRPO_DATA_DIR)")


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``users`` subcommand (add, list, passwd, role, disable, enable, tokens)."""
    users = commands.add_parser("users", help="manage the studio's users and API tokens")
    actions = users.add_subparsers(dest="users", required=True)
    roles = ", ".join(role.value for role in Role)
    add = actions.add_parser("add", help="add a user (the password is prompted for)")
    add.add_argument("username", help="1-64 letters, digits or _.@-")
    add.add_argument("--role", required=True, help=f"one of {roles}")
    _password_stdin(add)
    _data_dir(add)
    add.set_defaults(run=add_user)
    listing = actions.add_parser("list", help="every user with role and status")
    listing.add_argument("--json", action="store_true", help="one JSON object per user and line")
    _data_dir(listing)
    listing.set_defaults(run=list_users)
    passwd = actions.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("username")
    _password_stdin(passwd)
    _data_dir(passwd)
    passwd.set_defaults(run=change_password)
    role = actions.add_parser("role", help="change a user's role (ends their sessions)")
    role.add_argument("username")
    role.add_argument("role", help=f"one of {roles}")
    _data_dir(role)
    role.set_defaults(run=change_role)
    for name, active, what in (
        ("disable", False, "stop a user: sessions end, tokens stop working"),
        ("enable", True, "let a disabled user sign in again"),
    ):
        switch = actions.add_parser(name, help=what)
        switch.add_argument("username")
        _data_dir(switch)
        switch.set_defaults(run=set_enabled, active=active)
    tokens = actions.add_parser("tokens", help="list, create or revoke API tokens")
    token_actions = tokens.add_subparsers(dest="tokens", required=True)
    token_list = token_actions.add_parser("list", help="tokens of one user or of everyone")
    token_list.add_argument("username", nargs="?", help="only this user's tokens")
    token_list.add_argument("--json", action="store_true", help="one JSON object per token")
    _data_dir(token_list)
    token_list.set_defaults(run=list_tokens)
    token_new = token_actions.add_parser("new", help="a new token for a user (printed once)")
    token_new.add_argument("username")
    token_new.add_argument("--name", default="cli", help="a label to recognise it by")
    token_new.add_argument(
        "--days", type=float, default=None, help="expire after this many days (default: never)"
    )
    _data_dir(token_new)
    token_new.set_defaults(run=new_token)
    token_revoke = token_actions.add_parser("revoke", help="revoke a token by its id")
    token_revoke.add_argument("id", type=int)
    _data_dir(token_revoke)
    token_revoke.set_defaults(run=revoke)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(data_dir=Path(args.data_dir)) if args.data_dir else get_settings()


def _write(args: argparse.Namespace, work: Callable[[Session], Any]) -> Any:
    """Run ``work`` in one transaction of the studio's database; refusals become one line."""
    db = prepare(_settings(args))
    try:
        return db.write(work)
    except StudioError as error:
        raise ValueError(str(error)) from None


def read_password(from_stdin: bool) -> str:
    """The new password: stdin's first line, or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        password = getpass("password: ")
        again = getpass("password again: ")
    except EOFError:
        raise ValueError("no password given") from None
    if password != again:
        raise ValueError("the two passwords differ")
    return password


def add_user(args: argparse.Namespace) -> int:
    """Create the user; a refusal (bad name, role or password, taken name) exits with 2."""
    db = prepare(_settings(args))
    password = read_password(args.password_stdin)

    def store(session: Session) -> tuple[int, str]:
        user = create_user(session, args.username, password, args.role)
        session.flush()
        return user.id, user.role.value

    try:
        user_id, role = db.write(store)
    except StudioError as error:
        raise ValueError(str(error)) from None
    print(f"added {role} {args.username!r} (id {user_id})")
    return 0


def list_users(args: argparse.Namespace) -> int:
    """Print every user, oldest first."""
    db = prepare(_settings(args))
    with db.session() as session:
        rows = [
            {
                "id": user.id,
                "username": user.username,
                "role": user.role.value,
                "active": user.active,
                "created_at": user.created_at.isoformat(timespec="seconds"),
            }
            for user in session.scalars(select(User).order_by(User.id))
        ]
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            status = "active" if row["active"] else "disabled"
            print(f"{row['id']:>5}  {row['username']:<24} {row['role']:<8} {status}")
    return 0


def change_password(args: argparse.Namespace) -> int:
    """Set a user's password (the policy applies) and end their web sessions."""
    _settings(args)  # a bad SRPO_* value fails before the prompt
    password = read_password(args.password_stdin)

    def store(session: Session) -> str:
        user = get_user(session, args.username)
        set_password(session, user, password)
        return user.username

    print(f"changed the password of {_write(args, store)!r}; their sessions ended")
    return 0


def change_role(args: argparse.Namespace) -> int:
    """Give a user another role and end their web sessions."""

    def store(session: Session) -> tuple[str, str]:
        user = get_user(session, args.username)
        set_role(session, user, args.role)
        return user.username, user.role.value

    username, role = _write(args, store)
    print(f"{username!r} is now a {role}; their sessions ended")
    return 0


def set_enabled(args: argparse.Namespace) -> int:
    """Disable (sessions end, tokens stop working) or enable a user."""

    def store(session: Session) -> str:
        user = get_user(session, args.username)
        set_active(session, user, args.active)
        return user.username

    username = _write(args, store)
    print(f"enabled {username!r}" if args.active else f"disabled {username!r}; sessions ended")
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    """Print tokens (id, user, label, dates, whether it still works); never the token."""

    def load(session: Session) -> list[dict]:
        user_id = get_user(session, args.username).id if args.username else None
        return token_rows(session, user_id)

    for row in _write(args, load):
        if args.json:
            print(json.dumps(row))
        else:
            state = (
                "active"
                if row["active"]
                else "revoked"
                if row["revoked_at"]
                else "user disabled"
                if not row["user_active"]
                else "expired"
            )
            until = row["expires_at"] or "never"
            print(
                f"{row['id']:>5}  {row['user']:<24} {row['name']:<16} {state:<8} "
                f"expires {until}  last used {row['last_used_at'] or 'never'}"
            )
    return 0


def new_token(args: argparse.Namespace) -> int:
    """Create a token for a user and print it (the only time it is shown)."""
    if args.days is not None and not 0 < args.days <= MAX_TOKEN_DAYS:
        raise ValueError(f"--days: more than 0 and at most {MAX_TOKEN_DAYS}")
    expires = utcnow() + timedelta(days=args.days) if args.days is not None else None

    def store(session: Session) -> str:
        return create_token(session, get_user(session, args.username), args.name, expires)

    print(_write(args, store))
    return 0


def revoke(args: argparse.Namespace) -> int:
    """Revoke any user's token by id."""
    _write(args, lambda session: revoke_token(session, None, args.id))
    print(f"revoked token {args.id}")
    return 0
