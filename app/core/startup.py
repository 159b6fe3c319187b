"""What every studio process does first: hubs offline unless allowed, folders, migrations to
head, the first admin."""

from __future__ import annotations

import os

from app.core.db import Database, database
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.core.users import bootstrap_admin


def prepare(settings: Settings) -> Database:
    """Create the data and storage folders, migrate the database, add the first admin.

    Unless ``SRPO_ALLOW_HUB`` is set, ``HF_HUB_OFFLINE`` is set for this process (and the
    settings pass it to every process the worker starts), so nothing reaches a model hub.
    """
    if not settings.allow_hub:
        os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.storage.mkdir(parents=True, exist_ok=True)
    db = database(settings.database)
    upgrade(db)
    db.write(lambda session: bootstrap_admin(session, settings))
    return db
