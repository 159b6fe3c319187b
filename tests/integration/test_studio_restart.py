"""SIGKILL the studio (embedded mode, a real ``srpo studio`` process) mid-job and mid-campaign
rendering, start it again: nothing is lost, nothing is rendered twice, nothing is stuck
(issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.core import arena
from app.core.models import (
    Campaign,
    CampaignState,
    Checkpoint,
    Comparison,
    Job,
    JobMetric,
    JobState,
    Role,
)
from app.core.settings import Settings
from app.core.startup import prepare
from tests.web_support import PASSWORD, add_account, free_port

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4
TIMEOUT = 240.0


def wait_for(check, what: str, timeout: float = TIMEOUT):
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def studio(data: Path, port: int, log: Path) -> Iterator[subprocess.Popen]:
    """``srpo studio`` in its own process group; killed (SIGKILL) on exit if still running."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SRPO_ADMIN_PASSWORD": PASSWORD,
        "SRPO_LEASE_SECONDS": "3",
        "SRPO_HEARTBEAT_SECONDS": "0.5",
        "SRPO_MAINTENANCE_SECONDS": "0.5",
        "SRPO_REDISPATCH_SECONDS": "2",
        "SRPO_RENDER_CHUNK": "2",
    }
    command = [sys.executable, "-m", "srpo.cli", "studio", "--data-dir", str(data)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: _up(port) or process.poll() is not None, "the studio to listen")
        assert process.poll() is None, log.read_text()[-3000:]
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the studio and everything in its process group."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def images(folder: Path) -> dict[Path, tuple[int, int]]:
    """Each rendered image of a campaign with its inode and modification time."""
    found = folder.rglob("*.png") if folder.is_dir() else []
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in found}


@pytest.mark.slow
def test_a_killed_studio_resumes_its_job_and_its_campaign(tmp_path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "studio.log"
    settings = Settings(data_dir=data, admin_password=PASSWORD)
    db = prepare(settings)
    trainer = add_account(db, "tess", Role.TRAINER)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=trainer.headers, timeout=30)
    config = {"steps": STEPS, "rollout_steps": 2, "batch_size": 1, "checkpoint_every": 1}
    config |= {"sample_every": 0, "prompts": ["a red circle", "a blue square"]}

    def job() -> Job:
        with db.session() as session:
            return session.get(Job, job_id)

    with studio(data, port, log) as process:
        made = api.post("/api/v1/jobs", json={"preset": "tiny-demo", "config": config})
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        wait_for(lambda: job().step >= 2, "two steps")
        kill(process)  # mid-job
    with studio(data, port, log) as process:
        wait_for(lambda: job().state == JobState.SUCCEEDED or job().state == JobState.FAILED, "job")
        assert job().state == JobState.SUCCEEDED, job().error
        with db.session() as session:
            steps = session.scalars(select(JobMetric.step).where(JobMetric.job_id == job_id))
            assert sorted(steps) == list(range(1, STEPS + 1))  # every step, each once
            final = session.scalar(
                select(Checkpoint.id).where(Checkpoint.job_id == job_id, Checkpoint.step == STEPS)
            )
        campaign = {
            "name": "restarted",
            "models": ["base", f"checkpoint:{final}"],
            "prompts": ["a red circle", "a blue square"],
            "seeds": [0, 1],
        }
        made = api.post("/api/v1/campaigns", json=campaign)
        assert made.status_code == 201, made.text
        campaign_id = made.json()["id"]
        folder = settings.storage / "campaigns" / str(campaign_id)
        wait_for(lambda: len(images(folder)) >= 2, "some images rendered")
        kill(process)  # mid-rendering: 8 images in chunks of 2
    before = images(folder)
    assert 2 <= len(before) < 8
    with studio(data, port, log):

        def ready() -> bool:
            with db.session() as session:
                found = session.get(Campaign, campaign_id)
                assert found.state != CampaignState.FAILED, found.error
                return found.state == CampaignState.READY

        wait_for(ready, "the campaign to finish rendering")
        assert api.get("/api/v1/jobs").json()[0]["state"] == "succeeded"  # nothing stuck
    after = images(folder)
    assert len(after) == 8
    assert {p: after[p] for p in before} == before  # what was rendered was kept, not redone
    with db.session() as session:
        kinds = [
            arena.pair_kind(key)
            for key in session.scalars(
                select(Comparison.pair_key).where(Comparison.campaign_id == campaign_id)
            )
        ]
        assert kinds.count("pair") == 4
        assert session.scalar(select(func.count()).select_from(Job)) == 1
