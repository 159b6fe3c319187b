"""What every studio process does first: folders, migrations to head, the first admin."""

from __future__ import annotations

from app.core.db import Database, database
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.core.users import bootstrap_admin


def prepare(settings: Settings) -> Database:
    """Create the data and storage folders, migrate the database, add the first admin."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.storage.mkdir(parents=True, exist_ok=True)
    db = database(settings.database)
    upgrade(db)
    db.write(lambda session: bootstrap_admin(session, settings))
    return db
