"""Jobs that span nodes, on a real local Ray cluster: two nodes of one CPU each, gloo.

One cluster (``ray.cluster_utils.Cluster``) serves every test of the module; the studio side
is real too: PostgreSQL, the supervisor (and, where a worker is killed, Celery worker
processes over Redis). Each job's two Ray Train workers land on the two nodes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
from celery.utils.log import LoggingProxy
from safetensors.torch import load_file
from sqlalchemy import select

from app.core import dispatch, jobs, reads, storage
from app.core.db import Database
from app.core.maintenance import Maintenance
from app.core.models import TERMINAL, Checkpoint, Job, JobRun, JobState, RunOutcome, utcnow
from app.core.settings import Settings
from app.core.startup import prepare
from srpo.checkpoint_store import remote_steps
from srpo.checkpoints import LORA_FILE, latest_checkpoint
from srpo.config import make_config
from srpo.files import sha256_file
from tests.integration.conftest import alive, distributed_settings, start_worker, stop
from tests.integration.test_worker_embedded import wait_for
from tests.test_distributed import ddp_run_options, one_process_on_the_global_batch
from worker.launch_ray import connect
from worker.supervisor import run_training

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

WORKERS = 2
TIMEOUT = 240.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and one worker node, one CPU each; node deaths are noticed within seconds."""
    quick = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    head = {"num_cpus": 1, "include_dashboard": False, "_system_config": quick}
    found = Cluster(initialize_head=True, head_node_args=head)
    found.add_node(num_cpus=1)
    found.wait_for_nodes()
    yield found
    found.shutdown()


def ddp_config(smoke_world, **overrides) -> dict:
    """tests/test_distributed.py's run: the same weights are expected from any launcher."""
    options = {
        **ddp_run_options(smoke_world),
        "steps": 4,
        "checkpoint_every": 1,
        "launcher": "ray",
        "num_workers": WORKERS,
        "nodes": WORKERS,
    }
    return make_config({**options, **overrides}).model_dump(mode="json")


@pytest.fixture
def studio(tmp_path, cluster, postgres_url, redis_url) -> Iterator[tuple[Settings, Database]]:
    """Studio settings on PostgreSQL and the cluster, in a Ray namespace of their own."""
    settings = distributed_settings(
        tmp_path,
        postgres_url,
        redis_url,
        ray_address=cluster.address,
        ray_namespace=f"test-{uuid.uuid4().hex[:8]}",
        ray_use_gpu=False,
        lease_seconds=10,  # a takeover waits for it; shorter ones expired on a loaded machine
        heartbeat_seconds=0.5,
        maintenance_seconds=0.5,
        cancel_grace_seconds=2,
    )
    db = prepare(settings)
    yield settings, db
    db.dispose()


def submit(db: Database, settings: Settings, config: dict) -> int:
    return db.write(lambda s: jobs.submit(s, settings, config).id)


def job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def runs(db: Database, job_id: int) -> list[JobRun]:
    with db.session() as session:
        query = select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt)
        return list(session.scalars(query))


def ranks(db: Database, job_id: int, attempt: int) -> list[dict] | None:
    """Where attempt ``attempt``'s ranks run, once they all started."""
    found = [r for r in runs(db, job_id) if r.attempt == attempt]
    return found[0].nodes if found and found[0].nodes else None


class Worker(threading.Thread):
    """The supervisor in a loop, as a Celery worker would run each (re)sent message."""

    def __init__(self, db: Database, settings: Settings, job_id: int) -> None:
        super().__init__(daemon=True)
        self.db, self.settings, self.job_id, self.outcomes = db, settings, job_id, []

    def run(self) -> None:
        while job(self.db, self.job_id).state not in TERMINAL:
            self.db.write(jobs.reap_expired)
            self.outcomes.append(run_training(self.db, self.settings, self.job_id))
            time.sleep(0.2)


def lora(folder) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(folder).path / LORA_FILE))


def assert_same_weights(found: dict, reference: dict) -> None:
    assert found.keys() == reference.keys()
    for key, value in reference.items():  # tests/test_distributed.py's tolerance
        assert torch.allclose(found[key], value, atol=1e-4), key


def checkpoint_rows_have_files(db: Database, settings: Settings, job_id: int) -> list[int]:
    with db.session() as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all()
    for row in rows:
        folder = storage.resolve(settings.storage, row.path)
        assert sha256_file(folder / row.weights_file) == row.sha256, row.path
    return sorted(row.step for row in rows)


@pytest.fixture(scope="module")
def uninterrupted(cluster, smoke_world, tmp_path_factory, postgres_url, redis_url):
    """A 2-worker Ray job of the DDP test's run, to its end: (settings, db, job id)."""
    tmp = tmp_path_factory.mktemp("ray-uninterrupted")
    settings = distributed_settings(
        tmp,
        postgres_url,
        redis_url,
        ray_address=cluster.address,
        ray_namespace=f"test-{uuid.uuid4().hex[:8]}",
        ray_use_gpu=False,
        heartbeat_seconds=0.5,
        checkpoint_url=(tmp / "shared").as_uri(),  # file://: what every node of it reaches
    )
    db = prepare(settings)
    job_id = submit(db, settings, ddp_config(smoke_world))
    assert run_training(db, settings, job_id) == "succeeded", job(db, job_id).error
    return settings, db, job_id


def test_a_two_node_job_matches_one_process_on_the_global_batch(
    uninterrupted, smoke_world, cluster
) -> None:
    settings, db, job_id = uninterrupted
    done = job(db, job_id)
    assert (done.state, done.step, done.attempts) == (JobState.SUCCEEDED, 4, 1)
    (run,) = runs(db, job_id)
    assert sorted(r["rank"] for r in run.nodes) == [0, 1]
    nodes = {n.node_id for n in cluster.list_all_nodes()}
    assert {r["node"] for r in run.nodes} == nodes  # one worker on each node
    with db.session() as session:
        row = reads.job_row(session, session.get(Job, job_id))
        log = reads.job_log(session, settings, job_id)
    assert row["launcher"] == "ray" and row["num_workers"] == 2 and row["nodes"] == run.nodes
    assert "process 1 of 2" in log and "succeeded at step 4" in log  # rank 0's log is shown
    output = storage.resolve(settings.storage, done.output_dir)
    assert "process 2 of 2" in (output / "logs" / "attempt-1-rank-1.log").read_text()
    assert checkpoint_rows_have_files(db, settings, job_id) == [1, 2, 3, 4]
    # rank 0 uploaded every checkpoint to the job's URL (a resume on any node reads it there)
    assert done.config["checkpoint_url"] == f"{settings.checkpoint_url}/jobs/{job_id}"
    assert remote_steps(done.config["checkpoint_url"]) == [4, 3, 2, 1]

    reference = one_process_on_the_global_batch(make_config(ddp_config(smoke_world)))
    found = lora(output)
    assert_same_weights(found, reference)
    moved = sum(int("lora_B" in k and v.abs().max() > 1e-2) for k, v in reference.items())
    assert moved, "training did not move the LoRA weights; the comparison would be vacuous"


def test_ray_unreachable_at_submit_leaves_the_job_queued(studio, smoke_world) -> None:
    settings, db = studio
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    away = settings.model_copy(update={"ray_address": closed})
    job_id = submit(db, away, ddp_config(smoke_world))
    before = job(db, job_id)
    assert run_training(db, away, job_id) == "ray unreachable"
    after = job(db, job_id)
    assert (after.state, after.attempts, after.lease_token) == (JobState.QUEUED, 0, None)
    assert after.config == before.config and runs(db, job_id) == []
    assert f"the Ray cluster at {closed} is unreachable" in after.dispatch_error
    with db.session() as session:
        assert reads.job_row(session, session.get(Job, job_id))["dispatch_error"]
        assert jobs.pending_dispatch(session, settings.redispatch_seconds) == [job_id]
    # Left queued, a later test's maintenance loop would send it to that test's workers.
    db.write(lambda s: jobs.cancel(s, job_id))


def test_a_celery_worker_joins_the_cluster(studio) -> None:
    """Celery replaces sys.stdout and sys.stderr with logging proxies without a descriptor."""
    settings, _ = studio
    proxy = LoggingProxy(logging.getLogger("celery.task"))
    with redirect_stdout(proxy), redirect_stderr(proxy):
        connect(settings)
    try:
        assert ray.get_runtime_context().namespace == settings.ray_namespace
    finally:
        ray.shutdown()


def test_cancel_stops_every_worker_on_every_node(studio, smoke_world) -> None:
    settings, db = studio
    job_id = submit(db, settings, ddp_config(smoke_world, steps=500, checkpoint_every=1000))
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run_training(db, settings, job_id)))
    thread.start()
    placed = wait_for(lambda: job(db, job_id).step >= 1 and ranks(db, job_id, 1), TIMEOUT)
    pids = [r["pid"] for r in placed]
    os.kill(pids[1], signal.SIGSTOP)  # a rank that hangs (say, in a collective) cannot stop
    db.write(lambda s: jobs.cancel(s, job_id))
    thread.join(TIMEOUT)
    assert outcome == ["cancelled"]
    wait_for(lambda: not any(alive(p) for p in pids), 30, "every rank to be gone")
    done = job(db, job_id)
    assert (done.state, done.error) == (JobState.CANCELLED, "killed after cancel")
    assert [r.outcome for r in runs(db, job_id)] == [RunOutcome.CANCELLED]


def test_celery_worker_killed_another_takes_the_job_over(studio, smoke_world, tmp_path) -> None:
    settings, db = studio
    workers = [start_worker(settings, f"ray{i}", tmp_path / f"w{i}.log") for i in range(2)]
    reaper = Maintenance(db, settings)
    reaper.start()
    try:
        job_id = submit(db, settings, ddp_config(smoke_world, steps=6, checkpoint_every=2))
        dispatch.dispatch(db, settings, job_id)
        first = wait_for(lambda: job(db, job_id).step >= 2 and ranks(db, job_id, 1), TIMEOUT)
        for rank in first:  # hold the job mid-way, however fast it trains
            os.kill(rank["pid"], signal.SIGSTOP)
        (run,) = runs(db, job_id)
        owner = next(w for w in workers if run.worker.endswith(f":{w.pid}"))
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_for(lambda: not any(alive(r["pid"]) for r in first), 60, "its Ray job to die")
        gone_at = utcnow()
        second = wait_for(lambda: ranks(db, job_id, 2), TIMEOUT, "the second attempt")
        # A message delivered again cannot start the job a second time.
        assert run_training(db, settings, job_id) == "not claimed"
        done = wait_for(lambda: job(db, job_id).state in TERMINAL and job(db, job_id), TIMEOUT)
    finally:
        reaper.stop()
        for worker in workers:
            stop(worker)
    assert (done.state, done.step, done.attempts) == (JobState.SUCCEEDED, 6, 2), done.error
    one, two = runs(db, job_id)
    assert (one.outcome, two.outcome) == (RunOutcome.LOST, RunOutcome.SUCCEEDED)
    assert one.worker != two.worker
    assert one.ended_at <= two.started_at and gone_at <= two.started_at
    assert not {r["pid"] for r in first} & {r["pid"] for r in second}
    output = storage.resolve(settings.storage, done.output_dir)
    for attempt in (1, 2):  # each attempt's Ray job started once: one start line per rank
        for rank in range(WORKERS):
            log = (output / "logs" / f"attempt-{attempt}-rank-{rank}.log").read_text()
            assert log.count(f"attempt {attempt}: process {rank + 1} of 2") == 1
    assert checkpoint_rows_have_files(db, settings, job_id) == [2, 4, 6]


def test_a_killed_raylet_resumes_from_the_checkpoint_to_the_same_weights(
    studio, smoke_world, cluster, uninterrupted
) -> None:
    settings, db = studio
    job_id = submit(db, settings, ddp_config(smoke_world))
    worker = Worker(db, settings, job_id)
    worker.start()
    (node,) = cluster.worker_nodes
    placed = wait_for(lambda: job(db, job_id).step >= 1 and ranks(db, job_id, 1), TIMEOUT)
    there = next(r for r in placed if r["node"] == node.node_id)
    os.kill(there["pid"], signal.SIGSTOP)  # hold the job mid-way while the node goes
    node.kill_raylet()
    os.kill(there["pid"], signal.SIGCONT)
    cluster.remove_node(node, allow_graceful=False)
    cluster.add_node(num_cpus=1)  # a replacement node, as an autoscaler would bring
    wait_for(lambda: not any(alive(r["pid"]) for r in placed), 60, "the first attempt to die")
    gone_at = utcnow()
    worker.join(TIMEOUT)
    done = job(db, job_id)
    assert (done.state, done.step, done.attempts) == (JobState.SUCCEEDED, 4, 2), done.error
    one, two = runs(db, job_id)
    assert (one.outcome, two.outcome) == (RunOutcome.REQUEUED, RunOutcome.SUCCEEDED)
    assert one.ended_at <= two.started_at and gone_at <= two.started_at
    with db.session() as session:
        kept = session.scalars(
            select(Checkpoint.step).where(
                Checkpoint.job_id == job_id, Checkpoint.created_at < two.started_at
            )
        ).all()
    assert kept and max(kept) < 4  # the second attempt resumed from the first one's checkpoint
    assert checkpoint_rows_have_files(db, settings, job_id) == [1, 2, 3, 4]
    output = storage.resolve(settings.storage, done.output_dir)
    first_settings, first_db, first_job = uninterrupted
    reference = storage.resolve(first_settings.storage, job(first_db, first_job).output_dir)
    assert_same_weights(lora(output), lora(reference))
