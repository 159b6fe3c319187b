"""The Celery app follows the settings: durable training tasks on the GPU queue."""

from __future__ import annotations

import os

from app.core.dispatch import GRID_TASK, PAIRS_TASK, TRAIN_TASK, client
from app.core.settings import Settings
from worker.celery_app import make_celery
from worker.tasks import settings_of


def test_tasks_are_durable_and_routed_to_the_gpu_and_render_queues(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path, gpu_queue="gpu-node", render_queue="draw", broker_url="redis://h:1/2"
    )
    celery = make_celery(settings)
    assert celery.conf.broker_url == "redis://h:1/2"
    assert celery.conf.worker_prefetch_multiplier == 1
    for name in (TRAIN_TASK, PAIRS_TASK, GRID_TASK):
        task = celery.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost
        wanted = "draw" if name == PAIRS_TASK else "gpu-node"
        assert celery.amqp.router.route({}, name)["queue"].name == wanted


def test_two_apps_keep_their_own_settings(tmp_path) -> None:
    first_settings, second_settings = (Settings(data_dir=tmp_path / n) for n in "ab")
    first, second = make_celery(first_settings), make_celery(second_settings)
    for name in (TRAIN_TASK, PAIRS_TASK, GRID_TASK):
        assert settings_of(first.tasks[name]) is first_settings
        assert settings_of(second.tasks[name]) is second_settings


def test_the_studio_sends_through_a_client_without_the_workers_tasks(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, gpu_queue="gpu-node", broker_url="redis://h:1/2")
    sender = client(settings)
    assert sender.conf.broker_url == "redis://h:1/2"
    assert not {TRAIN_TASK, PAIRS_TASK, GRID_TASK} & set(sender.tasks)
    assert sender.amqp.router.route({}, TRAIN_TASK)["queue"].name == "gpu-node"


def test_a_worker_process_goes_offline_unless_hub_ids_are_allowed(tmp_path, monkeypatch) -> None:
    """Issue 14 item 1: ``celery -A worker.celery_app worker`` (the compose worker) never runs
    the studio's start-up, yet it loads models in its own process to render campaigns."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    make_celery(Settings(data_dir=tmp_path, allow_hub=True))
    assert "HF_HUB_OFFLINE" not in os.environ
    make_celery(Settings(data_dir=tmp_path))
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
