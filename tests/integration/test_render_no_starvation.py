"""Rendering never starves training on a real worker (issue 14): a training job submitted
while a big campaign renders starts after the chunk being rendered, not after the campaign.

The worker runs the ``docker-compose.yml`` worker service's command (with this test's queue
names) on the machine's PostgreSQL and Redis, the compose file's services. Its tasks
are real but their work is quick (``tests.integration.quick_worker``): what is tested is
which message the worker takes next, not sampling or training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import select

from app.core import arena, dispatch, submission
from app.core.models import Campaign, CampaignState, Comparison, JobRun
from app.core.settings import Settings
from app.core.startup import prepare
from tests.integration.conftest import distributed_settings, stop
from tests.integration.test_worker_embedded import job_state, tiny_job, wait_for
from tests.web_support import stored_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 2
PROMPTS = ["a red circle", "a blue square", "a green circle", "a red square"]
SEEDS = list(range(5))  # 2 models x 4 prompts x 5 seeds: 40 images, 20 chunks


def compose_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The worker service of ``docker-compose.yml``: its command, with the compose file's
    queue names swapped for this test's, run through the quick worker."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    env = {k: str(v) for k, v in service["environment"].items()}
    render_queue = env.get("SRPO_RENDER_QUEUE", Settings.model_fields["render_queue"].default)
    names = {env["SRPO_GPU_QUEUE"]: settings.gpu_queue, render_queue: settings.render_queue}
    command = list(service["command"])
    assert command[0] == "celery"
    queues = command.index("-Q") + 1
    command[queues] = ",".join(names.get(q, q) for q in command[queues].split(","))
    command[command.index("-n") + 1] = f"compose-{settings.gpu_queue}@%h"
    quiet = ["--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "INFO"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.quick_worker", *command[1:], *quiet],
            env={**os.environ, **settings.environment(), "QUICK_RENDER_SECONDS": "0.3"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def rendered(folder: Path) -> list[datetime]:
    """When each of the campaign's images was written."""
    found = folder.rglob("*.png") if folder.is_dir() else []
    return [datetime.fromtimestamp(p.stat().st_mtime, UTC) for p in found]


def test_a_job_submitted_mid_campaign_starts_after_the_chunk_being_rendered(
    tmp_path, empty_postgres_url, redis_url
) -> None:
    settings = distributed_settings(tmp_path, empty_postgres_url, redis_url, render_chunk=CHUNK)
    db = prepare(settings)
    _, checkpoint, _ = stored_checkpoint(db, settings)
    models = ["base", f"checkpoint:{checkpoint}"]
    campaign_id = db.write(
        lambda s: arena.create_campaign(s, "big", models, PROMPTS, SEEDS, ["overall"]).id
    )
    folder = settings.storage / "campaigns" / str(campaign_id)
    total = len(models) * len(PROMPTS) * len(SEEDS)
    worker = compose_worker(settings, tmp_path / "worker.log")
    try:
        dispatch.send(settings, dispatch.PAIRS_TASK, [campaign_id])
        wait_for(lambda: len(rendered(folder)) >= CHUNK, 60, "the first chunk")
        at_submit = len(rendered(folder))
        job_id = submission.submit_job(db, settings, tiny_job(steps=1))
        wait_for(lambda: job_state(db, job_id), 60, "the training job")

        def ready() -> bool:
            with db.session() as session:
                found = session.get(Campaign, campaign_id)
                assert found.state != CampaignState.FAILED, found.error
                return found.state == CampaignState.READY

        wait_for(ready, 60, "the campaign")
    finally:
        stop(worker)
    with db.session() as session:
        started = session.scalar(select(JobRun.started_at).where(JobRun.job_id == job_id))
        pairs = session.scalar(
            select(Comparison.id).where(Comparison.campaign_id == campaign_id).limit(1)
        )
    times = rendered(folder)
    before = sum(1 for t in times if t < started.astimezone(UTC))
    assert len(times) == total and pairs is not None  # every image once, then the pairs
    # The job came while a chunk rendered (or just after): that chunk, and at most the one the
    # worker had already taken, came first; not the remaining chunks of the campaign.
    assert at_submit <= before <= at_submit + 2 * CHUNK < total, (at_submit, before)
