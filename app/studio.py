"""``srpo studio``: the studio process (an ``srpo.commands`` entry point of this package).

This is the one module that wires the web layer and the worker together: embedded mode (the
default) runs the web server with the Celery worker and the maintenance loop in-process, so
one command on one machine trains, rates and serves. Distributed mode runs only the web
server and the maintenance loop; GPU workers run elsewhere (``python -m worker``). Every other
module of ``app.web`` and ``worker`` depends only on ``app.core`` and ``srpo``
(``tests/test_architecture.py`` checks the imports).
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from sqlalchemy import select

from app.core.models import Role, User
from app.core.settings import Settings, get_settings
from app.core.startup import prepare
from app.core.users import create_user


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``studio`` subcommand to the ``srpo`` command."""
    studio = commands.add_parser("studio", help="run the studio (web UI, API, embedded worker)")
    studio.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    studio.add_argument("--port", type=int, default=7860, help="port to listen on")
    studio.add_argument("--data-dir", default=None, help="data folder (default: SRPO_DATA_DIR)")
    studio.add_argument(
        "--forwarded-allow-ips",
        default="",
        help="comma-separated addresses of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are trusted (default: none)",
    )
    studio.set_defaults(run=run)


def server_options(args: argparse.Namespace) -> dict:
    """uvicorn's options for the studio. The client address is the connection's unless it
    comes from a proxy listed in ``--forwarded-allow-ips``: uvicorn alone trusts
    X-Forwarded-For from 127.0.0.1, so on a shared machine any local user could pose as
    any address and sidestep the per-address sign-in limits."""
    proxies = args.forwarded_allow_ips.strip()
    return {
        "host": args.host,
        "port": args.port,
        "log_level": "warning",
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
    }


def first_admin(settings: Settings) -> str | None:
    """With no user at all and no ``SRPO_ADMIN_PASSWORD``, create ``admin`` with a random
    password, keep it in ``data_dir/admin_password`` (mode 600) and return it."""
    db = prepare(settings)

    def work(session) -> str | None:
        if session.scalar(select(User.id).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        create_user(session, settings.admin_username, password, Role.ADMIN)
        return password

    password = db.write(work)
    if password is not None:
        path = settings.data_dir / "admin_password"
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(password + "\n")
    return password


def run(args: argparse.Namespace) -> int:
    """Start the studio and serve until interrupted."""
    import uvicorn

    from app.core.db import database
    from app.core.maintenance import Maintenance
    from app.web.factory import create_app

    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else get_settings()
    password = first_admin(settings)
    app = create_app(settings)
    if settings.mode == "embedded":
        from worker.embedded import EmbeddedWorker

        background = EmbeddedWorker(settings)
    else:
        background = Maintenance(database(settings.database), settings)
    background.start()
    url = f"http://{args.host}:{args.port}/"
    print(f"SRPO Studio ({settings.mode}) at {url}  data: {settings.data_dir.resolve()}")
    if password is not None:
        print(f"first admin: {settings.admin_username} / {password} (also in data/admin_password)")
    try:
        uvicorn.run(app, **server_options(args))
    finally:
        background.stop()
    return 0
