"""Sign-in failure counters and lockouts, shared through the database by every studio process.

Each attempt touches two counters (:class:`~app.core.models.LoginFailure` rows): its user
name's and its client address's. :func:`admit` refuses an attempt while either is locked
out; otherwise it counts the attempt as a failure *before* its password is checked, so
attempts still being checked, in this process or any other, count as failures and a
burst of concurrent guesses gets no more checks than the same guesses one after another
(an attempt whose process dies stays counted). :func:`settle` takes a sign-in's count
back: the user name's counter is cleared, the address's loses this attempt.

The rules, for ``free`` free failures and a cap of ``max_lockout`` seconds: past the free
failures, each further failure locks the counter for 1, 2, 4, ... seconds (at most the
cap), from when it was counted. A counter whose last failure and lockout ended more than
``max_lockout`` seconds ago starts again from zero. Times are seconds since the epoch from
the caller's clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.core.models import LoginFailure

MAX_KEY = 200


def _locked(session: Session, keys: Sequence[str]) -> list[LoginFailure]:
    """The counters of ``keys``, created if new, locked for this transaction (PostgreSQL:
    row locks taken in key order; SQLite: the ``BEGIN IMMEDIATE`` write lock)."""
    ordered = sorted(set(keys))
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    rows = [{"key": k, "failures": 0, "locked_until": 0.0, "last_failure": 0.0} for k in ordered]
    session.execute(dialect.insert(LoginFailure).values(rows).on_conflict_do_nothing())
    query = select(LoginFailure).where(LoginFailure.key.in_(ordered)).order_by(LoginFailure.key)
    found = session.scalars(query.with_for_update().execution_options(populate_existing=True))
    return list(found)


def wait_of(row: LoginFailure, now: float) -> float:
    """Seconds until ``row`` lets an attempt through (0: now)."""
    return max(0.0, row.locked_until - now)


def admit(
    session: Session, keys: Sequence[str], now: float, free: int, max_lockout: float
) -> tuple[float, dict[str, float]]:
    """Admit one attempt for ``keys``: returns ``(wait, lockouts)``. A ``wait`` above 0
    refuses it (nothing counted); 0 admits it, counted as a failure of each key.
    ``lockouts`` holds each key's lockout end now (a later attempt waits for it)."""
    rows = _locked(session, [key[:MAX_KEY] for key in keys])
    wait = max(wait_of(row, now) for row in rows)
    if wait == 0:
        for row in rows:
            if now - max(row.last_failure, row.locked_until) > max_lockout:
                row.failures = 0  # failures this old are forgiven
            row.failures += 1
            row.last_failure = now
            over = row.failures - free
            if over > 0:
                row.locked_until = now + min(max_lockout, 2.0 ** (over - 1))
    return wait, {row.key: row.locked_until for row in rows}


def settle(session: Session, keys: Sequence[str], free: int) -> None:
    """A sign-in with ``keys`` (user name first) succeeded: clear the user name's counter and
    take this attempt back from the others, lifting a lockout that no longer has the
    failures past ``free`` to hold it. Rows are locked in the order :func:`admit` locks
    them, so the two never deadlock."""
    user = keys[0][:MAX_KEY]
    for row in _locked(session, [key[:MAX_KEY] for key in keys]):
        if row.key == user:
            session.delete(row)
            continue
        row.failures = max(0, row.failures - 1)
        if row.failures <= free:
            row.locked_until = 0.0


def forget_old(session: Session, now: float, max_lockout: float) -> int:
    """Delete the counters that are forgiven anyway (their last failure and lockout ended more
    than ``max_lockout`` seconds ago); returns how many. Keeps the table small under a spray
    of user names or addresses."""
    before = now - max_lockout
    gone = session.execute(
        delete(LoginFailure).where(
            LoginFailure.last_failure < before, LoginFailure.locked_until < before
        )
    )
    return gone.rowcount or 0
