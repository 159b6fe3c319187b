"""Insert-or-update that works the same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(
    session: Session,
    model: type[Any],
    values: dict[str, Any],
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> Any | None:
    """Insert ``values``; on a conflict over ``keys`` update the ``update`` columns (or skip).

    Returns the row's ``id`` when it was inserted or updated, None when a conflict skipped it.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).values(**values)
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: values[name] for name in update}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    return session.scalar(statement.returning(model.id))
