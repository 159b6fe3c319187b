"""Checking the studio database: at startup (fail closed, with one line that says what is
wrong and how to recover) and in full with ``srpo db check``.

A damaged SQLite file (a corrupt header, a truncated file) stops startup with
:class:`DatabaseDamaged`. A single row whose JSON cannot be decoded does not: it reads as
empty (:class:`app.core.models.TolerantJSON`) so the rest of the UI keeps working, and
:func:`report` names it.
"""

from __future__ import annotations

import json

from sqlalchemy import JSON, inspect, select, text
from sqlalchemy.exc import DatabaseError, OperationalError

from app.core.db import Database
from app.core.errors import StudioError
from app.core.models import Base

RECOVER = "restore a backup of it, or run `srpo db check` for details"


class DatabaseDamaged(StudioError, ValueError):
    """The studio database cannot be read (the CLI prints it as one line)."""


def _where(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=True)


def _sqlite_problems(db: Database, full: bool) -> list[str]:
    pragma = "integrity_check" if full else "quick_check"
    with db.engine.connect() as connection:
        rows = [row[0] for row in connection.exec_driver_sql(f"PRAGMA {pragma}")]
    return [] if rows == ["ok"] else rows


def damage(db: Database, error: BaseException | None = None) -> DatabaseDamaged | None:
    """The refusal for a database that cannot be read (``error`` if startup hit one), or
    None if it reads. Only a file the driver calls damaged counts: an unreachable server is
    an :class:`OperationalError`, retried elsewhere, not damage."""
    reason = None
    if isinstance(error, DatabaseError) and not isinstance(error, OperationalError):
        reason = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
    elif db.url.startswith("sqlite"):
        try:
            problems = _sqlite_problems(db, full=False)
        except DatabaseError as checking:
            problems = [str(checking.orig).splitlines()[0]]
        reason = problems[0] if problems else None
    if reason is None:
        return None
    return DatabaseDamaged(f"the studio database {_where(db)} is damaged ({reason}); {RECOVER}")


def _json_columns() -> list[tuple[str, list[str]]]:
    found = []
    for table in Base.metadata.sorted_tables:
        names = [c.name for c in table.columns if isinstance(c.type, JSON) or _tolerant(c.type)]
        if names:
            found.append((table.name, names))
    return found


def _tolerant(kind: object) -> bool:
    return isinstance(getattr(kind, "impl", None), JSON)


def report(db: Database) -> list[str]:
    """Every problem found, one line each (empty when the database is sound): the file's
    integrity (SQLite), the schema revision, and rows whose JSON does not decode."""
    from app.core.migrate import current_revision, head_revision

    problems: list[str] = []
    try:
        if db.url.startswith("sqlite"):
            problems += [f"integrity: {line}" for line in _sqlite_problems(db, full=True)]
        if problems:
            return problems
        revision, head = current_revision(db), head_revision()
        if revision != head:
            problems.append(f"schema: at revision {revision}, the code expects {head}")
        tables = set(inspect(db.engine).get_table_names())
        with db.engine.connect() as connection:
            for table, columns in _json_columns():
                if table not in tables:
                    continue
                key = Base.metadata.tables[table].primary_key.columns.values()[0].name
                query = select(*(text(c) for c in (key, *columns))).select_from(text(table))
                for row in connection.execute(query):
                    for column, value in zip(columns, row[1:], strict=True):
                        if isinstance(value, str):
                            try:
                                json.loads(value)
                            except ValueError:
                                problems.append(
                                    f"row: {table} {key}={row[0]}: {column} is not valid JSON"
                                )
    except DatabaseError as error:
        problems.append(f"unreadable: {str(error.orig).splitlines()[0]}")
    return problems
