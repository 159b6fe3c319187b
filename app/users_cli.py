"""``srpo users``: add and list the studio's users (an ``srpo.commands`` entry point).

Both commands use the studio's settings (``SRPO_*``, or ``--data-dir``) and migrate the
database first, so ``srpo users add`` can make the first admin of a new studio::

    srpo users add alice --role admin                       # prompts for the password twice
    printf '%s\\n' "$PASSWORD" | srpo users add bob --role rater --password-stdin
    srpo users list
"""

from __future__ import annotations

import argparse
import json
import sys
from getpass import getpass
from pathlib import Path

from sqlalchemy import select

from app.core.errors import StudioError
from app.core.models import Role, User
from app.core.settings import Settings, get_settings
from app.core.startup import prepare
from app.core.users import create_user


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``users`` subcommand (``add`` and ``list``) to the ``srpo`` command."""
    users = commands.add_parser("users", help="add or list the studio's users")
    actions = users.add_subparsers(dest="users", required=True)
    roles = ", ".join(role.value for role in Role)
    add = actions.add_parser("add", help="add a user (the password is prompted for)")
    add.add_argument("username", help="1-64 letters, digits or _.@-")
    add.add_argument("--role", required=True, help=f"one of {roles}")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    add.add_argument("--data-dir", default=None, help="data folder (default: SRPO_DATA_DIR)")
    add.set_defaults(run=add_user)
    listing = actions.add_parser("list", help="every user with role and status")
    listing.add_argument("--json", action="store_true", help="one JSON object per user and line")
    listing.add_argument("--data-dir", default=None, help="data folder (default: SRPO_DATA_DIR)")
    listing.set_defaults(run=list_users)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(data_dir=Path(args.data_dir)) if args.data_dir else get_settings()


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

    def store(session) -> tuple[int, str]:
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
