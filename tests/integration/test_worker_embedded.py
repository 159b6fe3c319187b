"""The embedded mode end to end: SQLite, Celery's SQLAlchemy broker, an in-process worker.

One tiny training job runs for real (samples, metrics, checkpoints in the database), then a
campaign renders base vs the fine-tune as blind pairs that a rater votes on, a checkpoint's
grid is rendered, a long job is cancelled mid-run, and a job runs as two processes under
``accelerate launch`` (gloo on the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from app.core import arena, dispatch, jobs, monitoring, storage, submission
from app.core.db import Database
from app.core.dispatch import GRID_TASK, PAIRS_TASK
from app.core.errors import Conflict
from app.core.models import (
    Campaign,
    CampaignState,
    Checkpoint,
    Comparison,
    Job,
    JobMetric,
    JobState,
    Role,
    SampleImage,
)
from app.core.settings import Settings
from app.core.startup import prepare
from app.core.users import create_user
from srpo.config import preset
from srpo.files import sha256_file
from worker.embedded import EmbeddedWorker

TIMEOUT = 150.0


def tiny_job(**overrides) -> dict:
    """The tiny demo at a few steps: seconds on a CPU."""
    options = {"steps": 4, "rollout_steps": 2, "batch_size": 1, "checkpoint_every": 2}
    options["sample_every"] = 0  # the preset renders grids every 10 steps; these jobs none
    return preset("tiny-demo", **{**options, **overrides}).model_dump(mode="json")


def wait_for(check, timeout: float = TIMEOUT, what: str = "condition"):
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(db: Database, job_id: int, states=(JobState.SUCCEEDED,)) -> Job | None:
    """The job once it is in one of ``states``."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job.state in (JobState.FAILED,) and JobState.FAILED not in states:
            raise AssertionError(f"job {job_id} failed: {job.error}")
        return job if job.state in states else None


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[tuple[Settings, Database]]:
    """Migrated embedded-mode settings with a running in-process worker."""
    folder = tmp_path_factory.mktemp("embedded")
    settings = Settings(
        data_dir=folder / "data",
        lease_seconds=10,
        heartbeat_seconds=0.5,
        maintenance_seconds=0.5,
        cancel_grace_seconds=60,
    )
    db = prepare(settings)
    with EmbeddedWorker(settings):
        yield settings, db


@pytest.fixture(scope="module")
def finished_job(embedded) -> int:
    """A tiny job trained to the end by the embedded worker."""
    settings, db = embedded
    job_id = submission.submit_job(
        db, settings, tiny_job(sample_every=2, eval_prompts=["a red circle"], eval_seeds=[0, 1])
    )
    wait_for(lambda: job_state(db, job_id), what=f"job {job_id} to succeed")
    return job_id


def test_embedded_defaults_need_no_services(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database.startswith("sqlite:///")
    assert settings.broker.startswith("sqla+sqlite:///")
    assert settings.storage == (tmp_path / "storage").resolve()


def test_a_tiny_job_trains_and_writes_everything(embedded, finished_job) -> None:
    settings, db = embedded
    with db.session() as session:
        job = session.get(Job, finished_job)
        assert (job.state, job.step, job.error) == (JobState.SUCCEEDED, 4, None)
        assert job.dispatched_at is not None and job.dispatch_error is None
        steps = session.scalars(select(JobMetric.step).where(JobMetric.job_id == job.id)).all()
        assert sorted(steps) == [1, 2, 3, 4]
        checkpoints = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)).all()
        assert sorted(c.step for c in checkpoints) == [2, 4]
        for checkpoint in checkpoints:
            folder = storage.resolve(settings.storage, checkpoint.path)
            assert sha256_file(folder / checkpoint.weights_file) == checkpoint.sha256
            assert checkpoint.size_bytes == sum(p.stat().st_size for p in folder.rglob("*.*"))
            assert set(checkpoint.files) >= {checkpoint.weights_file, "optimizer.pt"}
        samples = session.scalars(select(SampleImage).where(SampleImage.job_id == job.id)).all()
        assert sorted({s.step for s in samples}) == [0, 2, 4]
        watched = monitoring.points(session, job.id)
        assert [p.step for p in watched] == [0, 2, 4] and watched[0].reward is None
        assert all(p.reward is not None for p in watched[1:])
        assert all({"gold", "hack_cast", "saturation"} <= set(p.metrics) for p in watched)
        assert all(storage.resolve(settings.storage, s.path).is_file() for s in samples)
        (run,) = job.runs
        log = storage.resolve(settings.storage, run.log_path).read_text()
        assert "succeeded at step 4" in log


def test_a_campaign_renders_blind_pairs_and_takes_one_vote_each(embedded, finished_job) -> None:
    settings, db = embedded

    def setup(session):
        final = session.scalar(
            select(Checkpoint).where(Checkpoint.job_id == finished_job, Checkpoint.step == 4)
        )
        refs = ["base", f"checkpoint:{final.id}"]
        prompts = ["a red circle"]
        campaign = arena.create_campaign(session, "demo", refs, prompts, [3, 4], ["overall"])
        session.flush()
        return campaign.id, create_user(session, "rita", "correct horse", Role.RATER).id

    campaign_id, rater_id = db.write(setup)
    dispatch.send(settings, PAIRS_TASK, [campaign_id])

    def ready(session=None):
        with db.session() as session:
            state = session.get(Campaign, campaign_id).state
            assert state != CampaignState.FAILED
            return state == CampaignState.READY

    wait_for(ready, what="the campaign's pairs")
    with db.session() as session:
        pairs = session.scalars(select(Comparison).where(Comparison.campaign_id == campaign_id))
        pairs = pairs.all()
        assert len(pairs) == 2
        for pair in pairs:
            assert {pair.left_model, pair.right_model} == {"base", pairs[0].pair_key.split("|")[1]}
            left = session.get(SampleImage, pair.left_image_id)
            assert left.model == pair.left_model and left.seed == pair.seed
            assert storage.resolve(settings.storage, left.path).is_file()

    def vote(session):
        return arena.cast_vote(session, rater_id, pairs[0].id, "overall", "left")

    db.write(vote)
    with pytest.raises(Conflict, match="already voted"):
        db.write(vote)
    rows = db.write(lambda s: arena.vote_rows(s, campaign_id))
    assert [(r["comparison_id"], r["choice"]) for r in rows] == [(pairs[0].id, "left")]


def test_a_checkpoint_grid_is_rendered(embedded, finished_job) -> None:
    settings, db = embedded
    with db.session() as session:
        checkpoint = session.scalar(
            select(Checkpoint).where(Checkpoint.job_id == finished_job, Checkpoint.step == 2)
        )
    dispatch.send(settings, GRID_TASK, [checkpoint.id])
    grid = storage.job_dir(settings.storage, finished_job) / "grids" / "step-000002.png"
    wait_for(grid.is_file, what="the grid")
    with db.session() as session:
        cells = session.scalars(
            select(SampleImage).where(SampleImage.model == f"checkpoint:{checkpoint.id}")
        ).all()
        assert len(cells) == 1 * 2  # eval prompts x eval seeds


def test_cancel_checkpoints_and_stops_a_running_job(embedded) -> None:
    settings, db = embedded
    job_id = submission.submit_job(db, settings, tiny_job(steps=500, checkpoint_every=1000))

    def started():
        with db.session() as session:
            return session.get(Job, job_id).step >= 2

    wait_for(started, what="the long job to make progress")
    db.write(lambda s: jobs.cancel(s, job_id))
    job = wait_for(lambda: job_state(db, job_id, (JobState.CANCELLED,)), what="the cancel")
    assert 2 <= job.step < 500
    with db.session() as session:
        steps = session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id)).all()
    assert steps == [job.step]


def test_a_two_process_job_runs_under_accelerate(embedded) -> None:
    settings, db = embedded
    job_id = submission.submit_job(db, settings, tiny_job(steps=2), num_processes=2)
    wait_for(lambda: job_state(db, job_id), what="the two-process job")
    with db.session() as session:
        job = session.get(Job, job_id)
        (run,) = job.runs
        steps = session.scalars(select(JobMetric.step).where(JobMetric.job_id == job_id)).all()
        checkpoints = session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id))
        assert sorted(steps) == [1, 2] and list(checkpoints) == [2]
    log = storage.resolve(settings.storage, run.log_path).read_text()
    assert "process 1 of 2" in log and "process 2 of 2" in log
