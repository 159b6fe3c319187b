"""Real services for the backend tests: the machine's PostgreSQL and Redis on 127.0.0.1.

Each test run gets its own PostgreSQL database (dropped afterwards) and its own Redis queue
names, so runs never see each other's data. A missing service fails the tests, it does not
skip them: CI has both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from app.core.settings import Settings
from app.core.startup import prepare

PG_ADMIN_URL = os.environ.get(
    "SRPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SRPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
RUN = uuid.uuid4().hex[:10]


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped on exit; yields its URL."""
    name = f"srpo_test_{RUN}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database shared by this test run's tests, migrated to head."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own, not migrated."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis (a database number the project keeps for tests)."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield REDIS_URL
    for key in client.scan_iter(f"*{RUN}*"):
        client.delete(key)
    client.close()


def distributed_settings(tmp: Path, database_url: str, broker_url: str, **extra) -> Settings:
    """Distributed-mode settings on the given services, with queue names unique to the test."""
    tag = f"{RUN}-{uuid.uuid4().hex[:6]}"
    return Settings(
        mode="distributed",
        data_dir=tmp / "data",
        storage_dir=tmp / "storage",
        database_url=database_url,
        broker_url=broker_url,
        result_backend=broker_url if broker_url.startswith("redis") else None,
        gpu_queue=f"gpu-{tag}",
        render_queue=f"render-{tag}",
        default_queue=f"default-{tag}",
        **extra,
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings in a temporary data folder, migrated."""
    settings = Settings(data_dir=tmp_path / "data")
    prepare(settings)
    return settings


def start_worker(
    settings: Settings, name: str, log: Path, module: bool = False
) -> subprocess.Popen[bytes]:
    """A real Celery worker process on the settings' GPU and rendering queues (solo pool, like
    a GPU node), started as ``celery -A worker.celery_app worker ...`` or, with ``module``,
    ``python -m worker``."""
    quiet = ["-n", f"{name}@%h", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    if module:
        command = [sys.executable, "-m", "worker", *quiet, "--loglevel", "INFO"]
    else:
        queues = f"{settings.gpu_queue},{settings.render_queue}"
        command = [
            *(sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"),
            *("-Q", queues, "--pool", "solo", "--concurrency", "1"),
            *quiet,
            *("--loglevel", "INFO"),
        ]
    env = {**os.environ, **settings.environment()}
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2]
        )


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a process this test started, if it still runs."""
    if process.poll() is None:
        process.kill()
        process.wait(30)
