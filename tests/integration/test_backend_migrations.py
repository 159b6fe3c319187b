"""The schema comes only from the migrations, and the migrations match the models."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from app.core import migrate
from app.core.db import Database
from app.core.models import Base
from tests.integration.conftest import new_postgres_database


def _check_round_trip(db: Database) -> None:
    assert migrate.current_revision(db) is None
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()
    assert migrate.schema_diff(db) == []
    assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())
    migrate.upgrade(db)  # a second upgrade is a no-op
    from alembic import command

    config = migrate.alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert not set(Base.metadata.tables) & set(inspect(db.engine).get_table_names())
    migrate.upgrade(db)
    assert migrate.schema_diff(db) == []


def test_migrations_match_models_on_sqlite(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    _check_round_trip(db)
    db.dispose()


def test_migrations_match_models_on_postgres(empty_postgres_url) -> None:
    db = Database(empty_postgres_url)
    _check_round_trip(db)
    db.dispose()


def test_schema_diff_sees_a_drifted_database(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    migrate.upgrade(db)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_votes_rater_id")
    assert any("ix_votes_rater_id" in str(diff) for diff in migrate.schema_diff(db))
    db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_alembic_command_line_uses_the_studio_settings(tmp_path, backend) -> None:
    with new_postgres_database() as pg_url:
        url = f"sqlite:///{tmp_path / 'cli.db'}" if backend == "sqlite" else pg_url
        env = {**os.environ, "SRPO_DATABASE_URL": url}
        alembic = [sys.executable, "-m", "alembic"]
        subprocess.run([*alembic, "upgrade", "head"], env=env, check=True, capture_output=True)
        shown = subprocess.run(
            [*alembic, "current"], env=env, check=True, capture_output=True, text=True
        )
        assert migrate.head_revision() in shown.stdout
        db = Database(url)
        assert migrate.schema_diff(db) == []
        db.dispose()
