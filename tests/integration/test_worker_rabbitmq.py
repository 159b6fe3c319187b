"""RabbitMQ as the broker: a tiny job goes through the machine's RabbitMQ and finishes."""

from __future__ import annotations

import os
import uuid

from kombu import Connection, Queue

from app.core import submission
from app.core.models import Job, JobState
from app.core.settings import Settings
from app.core.startup import prepare
from tests.integration.test_worker_embedded import job_state, tiny_job, wait_for
from worker.embedded import EmbeddedWorker

RABBITMQ_URL = os.environ.get("SRPO_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def test_a_job_runs_over_rabbitmq(tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=tmp_path,
        broker_url=RABBITMQ_URL,
        gpu_queue=f"gpu-{tag}",
        default_queue=f"default-{tag}",
        heartbeat_seconds=0.5,
    )
    db = prepare(settings)
    try:
        with EmbeddedWorker(settings, maintenance=False):
            job_id = submission.submit_job(db, settings, tiny_job(steps=1))
            wait_for(lambda: job_state(db, job_id), what="the job over RabbitMQ")
    finally:
        with Connection(RABBITMQ_URL) as connection:
            for name in (settings.gpu_queue, settings.default_queue):
                Queue(name).bind(connection.default_channel).delete()
    with db.session() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.step, job.attempts) == (JobState.SUCCEEDED, 1, 1)
