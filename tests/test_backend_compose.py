"""The Docker files line up with the settings: services, variables, volumes, GPU, health."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
STUDIO = ("app", "maintenance", "worker")
RAY = ("ray-head", "ray-worker")  # the ray profile: a cluster for jobs that span nodes


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def _mounts(service: str) -> dict[str, str]:
    return dict(m.split(":")[::-1] for m in SERVICES[service]["volumes"])


def test_services_are_all_there() -> None:
    assert set(SERVICES) == {"postgres", "redis", "app", "maintenance", "worker", *RAY}
    for name in (*STUDIO, *RAY):
        assert SERVICES[name]["build"] == "."
    for name in ("postgres", "redis", *STUDIO):
        assert "profiles" not in SERVICES[name], name  # `docker compose up` starts these


def test_every_srpo_variable_is_a_setting_and_the_same_everywhere() -> None:
    fields = {f"SRPO_{name.upper()}" for name in Settings.model_fields}
    for name in (*STUDIO, *RAY):
        env = _env(name)
        assert set(env) <= fields, set(env) - fields
        assert env == _env("app")
    env = _env("app")
    assert env["SRPO_MODE"] == "distributed"
    assert {"SRPO_DATABASE_URL", "SRPO_BROKER_URL", "SRPO_SECRET_KEY"} <= set(env)


def test_the_urls_point_at_the_compose_services() -> None:
    env = _env("app")
    database = urlsplit(env["SRPO_DATABASE_URL"].replace("${POSTGRES_PASSWORD:?", "x{"))
    assert database.scheme == "postgresql+psycopg" and database.hostname == "postgres"
    postgres = SERVICES["postgres"]["environment"]
    assert database.username == postgres["POSTGRES_USER"]
    assert database.path == "/" + postgres["POSTGRES_DB"]
    assert "POSTGRES_PASSWORD" in postgres["POSTGRES_PASSWORD"]
    for key in ("SRPO_BROKER_URL", "SRPO_RESULT_BACKEND"):
        assert urlsplit(env[key]).hostname == "redis"


def test_app_and_workers_share_the_storage_volume() -> None:
    env = _env("app")
    for name in (*STUDIO, *RAY):  # Ray nodes write checkpoints and logs into the same storage
        mounts = _mounts(name)
        assert mounts[env["SRPO_STORAGE_DIR"]] == "storage"
        assert mounts[env["SRPO_DATA_DIR"]] == "data"
    assert {"storage", "data", "pgdata", "redisdata"} <= set(COMPOSE["volumes"])
    assert _mounts("postgres")["/var/lib/postgresql/data"] == "pgdata"


def test_the_worker_consumes_the_gpu_and_render_queues_with_a_gpu_reservation() -> None:
    worker = SERVICES["worker"]
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    queues = command[command.index("-Q") + 1].split(",")
    # training first, and campaign rendering (else campaigns never render): issue 14
    assert queues == [_env("worker")["SRPO_GPU_QUEUE"], _env("worker")["SRPO_RENDER_QUEUE"]]
    assert command[command.index("--pool") + 1] == "solo"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["depends_on"]["app"]["condition"] == "service_healthy"
    for name in ("postgres", "redis"):
        assert SERVICES["app"]["depends_on"][name]["condition"] == "service_healthy"
        assert "healthcheck" in SERVICES[name]
    # Only the studio serves /healthz, the image's health check; the others turn it off.
    assert "healthcheck" not in SERVICES["app"]
    for name in ("worker", "maintenance"):
        assert SERVICES[name]["healthcheck"] == {"disable": True}


def test_dockerfile_is_cuda_non_root_and_checks_healthz() -> None:
    assert re.search(r"^FROM nvidia/cuda:\S+", DOCKERFILE, re.M)
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*?CMD (.+?)$", DOCKERFILE, re.M | re.S)
    assert health and "/healthz" in health.group(1)
    exposed = re.search(r"^EXPOSE (\d+)", DOCKERFILE, re.M).group(1)
    assert SERVICES["app"]["ports"] == [f"{exposed}:{exposed}"]
    assert f"--port {exposed}" in " ".join(SERVICES["app"]["command"])
    for path in ("srpo", "app", "worker", "migrations", "alembic.ini"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", DOCKERFILE, re.M), path


def test_the_ray_profile_is_a_head_and_gpu_worker_nodes_the_studio_can_reach() -> None:
    head, worker = (SERVICES[name] for name in RAY)
    assert head["profiles"] == worker["profiles"] == ["ray"]
    command = head["command"]
    assert command[:3] == ["ray", "start", "--head"] and "--block" in command
    gcs = next(c.split("=")[1] for c in command if c.startswith("--port="))
    client = next(c.split("=")[1] for c in command if c.startswith("--ray-client-server-port="))
    assert client == "10001"  # the port worker.launch_ray probes when SRPO_RAY_ADDRESS has none
    assert f"--address=ray-head:{gcs}" in worker["command"]
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in head and "--num-gpus=0" in command
    assert _env("app")["SRPO_RAY_ADDRESS"] == "${SRPO_RAY_ADDRESS:-}"
