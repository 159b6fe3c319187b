"""Engines, sessions and transactions that survive a database restart.

SQLite (embedded) runs in WAL mode with ``BEGIN IMMEDIATE`` transactions, so the studio,
the worker and the training process can write concurrently without "database is locked".
PostgreSQL connections are pinged before use; :meth:`Database.write` retries a unit of work
whose connection was lost, so every unit of work written through it must be idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and immediate transactions."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=60)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(connection, _record) -> None:
        connection.isolation_level = None
        cursor = connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=60000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_disconnect(error: BaseException) -> bool:
    """True when ``error`` means the database went away (worth retrying)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError)


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    def write(self, work: Callable[[Session], T], retry_seconds: float = 0.0) -> T:
        """Run ``work`` in one transaction, retrying it while the database is unreachable."""
        deadline = time.monotonic() + retry_seconds
        delay = 0.2
        while True:
            try:
                with self.session() as session:
                    return work(session)
            except DBAPIError as error:
                if not is_disconnect(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying in %.1f s", error.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_databases: dict[str, Database] = {}


def database(url: str) -> Database:
    """The process's shared :class:`Database` for ``url``."""
    if url not in _databases:
        _databases[url] = Database(url)
    return _databases[url]
