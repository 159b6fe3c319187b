"""What every studio process does first: hubs offline unless allowed, folders, migrations to
head, the first admin."""

from __future__ import annotations

import os

from sqlalchemy.exc import DatabaseError

from app.core import dbcheck
from app.core.db import Database, database
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.core.users import bootstrap_admin


def stay_offline(settings: Settings) -> None:
    """Unless ``SRPO_ALLOW_HUB`` is set, set ``HF_HUB_OFFLINE`` (and
    ``TRANSFORMERS_OFFLINE``) for this process, so nothing it loads reaches a model hub."""
    if not settings.allow_hub:
        os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"


def prepare(settings: Settings) -> Database:
    """Create the data and storage folders, migrate the database, add the first admin.

    A damaged database stops it with :class:`app.core.dbcheck.DatabaseDamaged` (one line:
    what is wrong, and to restore a backup or run ``srpo db check``).

    Unless ``SRPO_ALLOW_HUB`` is set, ``HF_HUB_OFFLINE`` is set for this process (and the
    settings pass it to every process the worker starts), so nothing reaches a model hub.
    """
    stay_offline(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.storage.mkdir(parents=True, exist_ok=True)
    db = database(settings.database)
    try:
        upgrade(db)
    except DatabaseError as error:
        if (damaged := dbcheck.damage(db, error)) is not None:
            raise damaged from None
        raise
    if (damaged := dbcheck.damage(db)) is not None:  # a truncated file migrates fine
        raise damaged
    db.write(lambda session: bootstrap_admin(session, settings))
    return db
