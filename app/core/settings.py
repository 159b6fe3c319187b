"""Every studio setting, read from the environment (prefix ``SRPO_``).

The defaults give the embedded mode: SQLite database, Celery over the SQLAlchemy broker on
SQLite, files under ``./data``. The distributed mode sets ``SRPO_DATABASE_URL``
(PostgreSQL), ``SRPO_BROKER_URL`` (Redis or RabbitMQ) and a shared ``SRPO_STORAGE_DIR``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Studio settings; each field ``name`` comes from the variable ``SRPO_NAME``."""

    model_config = SettingsConfigDict(env_prefix="SRPO_", extra="ignore", frozen=True)

    mode: Literal["embedded", "distributed"] = "embedded"
    data_dir: Path = Path("data")
    database_url: str | None = Field(None, description="default: SQLite in data_dir")
    broker_url: str | None = Field(None, description="default: SQLAlchemy broker on SQLite")
    result_backend: str | None = Field(None, description="default: SQLite in data_dir")
    storage_dir: Path | None = Field(None, description="default: data_dir/storage")
    secret_key: SecretStr | None = Field(None, description="default: generated in data_dir")

    admin_username: str = Field("admin", min_length=1)
    admin_password: SecretStr | None = None
    default_model: str = "tiny"
    default_reward: str = "tiny"

    gpu_queue: str = Field("gpu", min_length=1)
    default_queue: str = Field("default", min_length=1)
    gpus_per_job: int = Field(0, ge=0, le=1024, description="0 = one CPU process")
    ray_address: str | None = Field(None, description="Ray cluster of ray-launched jobs")
    ray_namespace: str = Field("srpo", min_length=1, description="Ray namespace of job drivers")
    ray_use_gpu: bool = Field(True, description="one GPU per Ray worker (false: CPU, gloo)")
    checkpoint_url: str | None = Field(
        None, description="fsspec URL every node reaches; jobs also keep checkpoints under it"
    )
    lease_seconds: float = Field(60.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    cancel_grace_seconds: float = Field(120.0, ge=0)
    max_attempts: int = Field(3, ge=1, le=100)
    maintenance_seconds: float = Field(5.0, gt=0)
    redispatch_seconds: float = Field(1800.0, gt=0, description="re-send a queued job after")
    db_retry_seconds: float = Field(60.0, ge=0, description="how long writes retry a lost DB")

    # Sharing one studio (docs/security.md says what each of these opens).
    path_roots: tuple[Path, ...] = Field(
        (), description="folders jobs may read besides data_dir (JSON list)"
    )
    allow_hub: bool = Field(False, description="allow hub repo ids (else HF_HUB_OFFLINE=1)")
    cors_origins: tuple[str, ...] = Field(
        (), description="origins allowed credentialed cross-origin requests"
    )
    job_sharing: Literal["own", "team"] = Field(
        "own", description="own: trainers manage their own jobs; team: any trainer's"
    )
    session_seconds: float = Field(12 * 3600.0, gt=0, le=30 * 86400)
    login_free_failures: int = Field(5, ge=1, le=1000, description="before backoff starts")
    login_max_lockout_seconds: float = Field(900.0, gt=0)
    login_concurrency: int = Field(2, ge=1, le=64, description="password checks at once")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest API request body")
    max_queued_jobs_per_user: int = Field(20, ge=1)
    max_processes_per_job: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=1024,
        description="what the workers have (default: this machine's CPU cores)",
    )
    max_prompts_per_job: int = Field(10_000, ge=1)
    max_campaign_pairs: int = Field(20_000, ge=1)
    max_campaign_renders: int = Field(5_000, ge=1)
    render_queue: str = Field("render", min_length=1, description="campaign rendering's queue")
    render_chunk: int = Field(32, ge=1, le=10_000, description="renders per rendering task")

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the studio database."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @property
    def broker(self) -> str:
        """The Celery broker URL."""
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def results(self) -> str:
        """The Celery result backend URL."""
        return self.result_backend or f"db+sqlite:///{(self.data_dir / 'results.db').resolve()}"

    @property
    def storage(self) -> Path:
        """The root folder of checkpoints, images and logs (shared by app and workers)."""
        return (self.storage_dir or self.data_dir / "storage").resolve()

    def secret(self) -> str:
        """The secret key: from the environment, else generated once and kept in data_dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "w") as out:
                out.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def environment(self) -> dict[str, str]:
        """These settings as ``SRPO_*`` variables, for processes the worker starts."""
        ray = {"RAY_ADDRESS": self.ray_address} if self.ray_address else {}
        values = {
            **ray,
            "RAY_NAMESPACE": self.ray_namespace,
            "RAY_USE_GPU": str(self.ray_use_gpu).lower(),
            "MODE": self.mode,
            "DATA_DIR": str(self.data_dir.resolve()),
            "DATABASE_URL": self.database,
            "BROKER_URL": self.broker,
            "RESULT_BACKEND": self.results,
            "STORAGE_DIR": str(self.storage),
            "GPU_QUEUE": self.gpu_queue,
            "DEFAULT_QUEUE": self.default_queue,
            "LEASE_SECONDS": str(self.lease_seconds),
            "HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            "DB_RETRY_SECONDS": str(self.db_retry_seconds),
            "RENDER_QUEUE": self.render_queue,
            "RENDER_CHUNK": str(self.render_chunk),
            "ALLOW_HUB": str(self.allow_hub).lower(),
        }
        found = {f"SRPO_{key}": value for key, value in values.items()}
        if not self.allow_hub:  # no process the studio starts may reach a model hub
            found |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        return found

    def roots(self) -> list[Path]:
        """Folders a job's paths may point into: the data folder, storage and path_roots."""
        found = [self.data_dir.resolve(), self.storage, *(p.resolve() for p in self.path_roots)]
        return list(dict.fromkeys(found))


def get_settings() -> Settings:
    """Settings read from the environment now."""
    return Settings()
