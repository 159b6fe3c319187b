"""Settings come from SRPO_* variables; the defaults are the embedded mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.settings import Settings, get_settings


def test_defaults_are_the_embedded_mode(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.mode == "embedded"
    assert settings.database == f"sqlite:///{tmp_path / 'data' / 'studio.db'}"
    assert settings.broker == f"sqla+sqlite:///{tmp_path / 'data' / 'broker.db'}"
    assert settings.storage == tmp_path / "data" / "storage"


def test_environment_variables_override_with_the_prefix(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SRPO_DATABASE_URL", "postgresql+psycopg://db/studio")
    monkeypatch.setenv("SRPO_BROKER_URL", "redis://broker:6379/0")
    monkeypatch.setenv("SRPO_STORAGE_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("SRPO_LEASE_SECONDS", "7.5")
    monkeypatch.setenv("DATABASE_URL", "ignored-without-prefix")
    settings = get_settings()
    assert settings.database == "postgresql+psycopg://db/studio"
    assert settings.broker == "redis://broker:6379/0"
    assert settings.storage == tmp_path / "shared"
    assert settings.lease_seconds == 7.5
    env = settings.environment()
    assert env["SRPO_DATABASE_URL"] == settings.database
    assert Settings(**{k.removeprefix("SRPO_").lower(): v for k, v in env.items()}).broker == (
        settings.broker
    )


def test_bad_values_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("SRPO_LEASE_SECONDS", "-1")
    monkeypatch.setenv("SRPO_MODE", "cluster")
    with pytest.raises(ValidationError) as error:
        Settings()
    text = str(error.value)
    assert "lease_seconds" in text and "mode" in text


def test_the_secret_key_is_generated_once_and_kept_private(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SRPO_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path)
    first = settings.secret()
    assert len(first) >= 32 and Settings(data_dir=tmp_path).secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path, secret_key="from-env").secret() == "from-env"
