"""``srpo db check``: every problem of the studio database, one line each (exit status 1 if
any): the file's integrity, the schema revision, rows whose stored JSON does not decode."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.core.db import database
from app.core.dbcheck import report
from app.core.settings import Settings, get_settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``db`` subcommand (``srpo db check``) to the ``srpo`` command."""
    db = commands.add_parser("db", help="check the studio database")
    actions = db.add_subparsers(dest="db_command", required=True)
    check = actions.add_parser("check", help="report damage: integrity, schema, bad rows")
    check.add_argument("--data-dir", default=None, help="data folder (default: SRPO_DATA_DIR)")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print the database's problems (or that it is sound); 1 if there are any."""
    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else get_settings()
    db = database(settings.database)
    where = db.engine.url.render_as_string(hide_password=True)
    problems = report(db)
    for line in problems:
        print(line)
    if problems:
        print(f"{where}: {len(problems)} problem(s); restore a backup of the database")
        return 1
    print(f"{where}: no problems found")
    return 0
