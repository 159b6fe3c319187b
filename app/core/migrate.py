"""Run the Alembic migrations from code, and compare the migrated schema with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.core.db import Database
from app.core.models import Base

ROOT = Path(__file__).resolve().parents[2]


def include_name(name: str | None, kind: str, parent_names: dict[str, Any]) -> bool:
    """Leave Celery's and kombu's own tables (result backend, SQL broker) out of comparisons."""
    return kind != "table" or not (name or "").startswith(("celery_", "kombu_"))


def alembic_config() -> Config:
    """The project's ``alembic.ini``, without touching the process's logging setup."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate ``db`` to ``revision`` (the studio and workers call this on start)."""
    config = alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(db: Database) -> str | None:
    """The revision ``db`` is at (None before the first migration)."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def schema_diff(db: Database) -> list[Any]:
    """What differs between the database's schema and the models (empty when they match)."""
    with db.engine.connect() as connection:
        options = {"compare_type": True, "include_name": include_name}
        context = MigrationContext.configure(connection, opts=options)
        return compare_metadata(context, Base.metadata)
