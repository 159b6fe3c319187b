"""What runs on the Ray cluster for a ``ray``-launched job: its driver actor and the loop of
each Ray Train worker.

The driver (:class:`JobDriver`, on the head node, no CPU of its own) runs a Ray Train
``TorchTrainer`` of ``num_workers`` workers; Ray Train sets up torch.distributed (gloo on CPUs,
NCCL on GPUs) and each worker runs :func:`worker.run_job.run`, the very function a local
training process runs, so training is the same ``srpo.train.train`` loop: rank 0 reports to
the database through the studio callback under the job's lease and writes the final state.
Each rank logs to ``logs/attempt-N-rank-R.log`` in the job's folder (storage every node
reaches). Ray Train does not retry a failed worker group itself (``max_failures=0``): the
studio's worker requeues the job and the next attempt resumes from the newest checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Any

import ray

from app.core import jobs
from app.core.db import Database
from app.core.jobs import Lease
from app.core.settings import get_settings
from worker.launch_ray import rank_log
from worker.run_job import PEER_LOST

# The Ray Train knobs each job's driver runs with (passed on to its controller and workers).
TRAIN_ENV = {
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # ranks write their own log files
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


class TrainingExited(RuntimeError):
    """A rank's training returned a non-zero status (it failed, or lost its lease)."""


def _log_to(path: str) -> None:
    """Send this process's stdout and stderr (file descriptors too) to ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    os.close(handle)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )


def train_loop(spec: dict[str, Any]) -> None:
    """One Ray Train worker: log to its rank's file, record where it runs, train."""
    import torch.distributed as dist
    from ray import train

    from worker.run_job import run

    os.environ.update(spec["env"])
    if not spec["use_gpu"]:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    lease = Lease(spec["job_id"], spec["token"], spec["attempt"])
    _log_to(rank_log(spec["output"], lease.attempt, rank))
    here = {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
    }
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, here)
    settings = get_settings()
    if rank == 0:
        db = Database(settings.database)
        db.write(lambda s: jobs.record_run_nodes(s, lease, nodes), settings.db_retry_seconds)
        db.dispose()
    status = run(lease.job_id, lease, settings)
    sys.stdout.flush()
    if status != 0:
        raise TrainingExited(f"rank {rank} ended with status {status}")


def _exited(failure: BaseException) -> bool:
    cause = getattr(failure, "cause", None)
    return isinstance(failure, TrainingExited) or isinstance(cause, TrainingExited)


# A rank whose peer is gone (its node or process lost) exits with PEER_LOST, and Ray may report
# that exit before it notices the lost node. A run that failed so is a lost worker if one of
# the cluster's nodes dies within NODE_LOSS_WAIT_S (Ray's default health check marks a node
# dead after about 15 s).
NODE_LOSS_WAIT_S = 30.0


def _alive_nodes() -> set[str]:
    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def _lost_a_node(before: set[str], failures: list[BaseException]) -> bool:
    """Whether a node alive when the run started died, waiting for Ray to notice when a rank
    exited for a lost peer."""
    peer = f"with status {PEER_LOST}"
    waited = any(peer in f"{f} {getattr(f, 'cause', '')}" for f in failures)
    deadline = time.monotonic() + (NODE_LOSS_WAIT_S if waited else 0.0)
    while not before - _alive_nodes():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


@ray.remote(num_cpus=0, max_restarts=0)
class JobDriver:
    """Runs one attempt of a job as a Ray Train job (see the module docstring)."""

    def fit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Train to the end; says whether it ``failed`` and whether a worker was ``killed``
        (a node or process lost: the job may be retried) rather than exiting with a status."""
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

        spread = spec["nodes"] is not None and spec["nodes"] == spec["num_workers"]
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=spec,
            scaling_config=ScalingConfig(
                num_workers=spec["num_workers"],
                use_gpu=spec["use_gpu"],
                placement_strategy="STRICT_SPREAD" if spread else "PACK",
            ),
            run_config=RunConfig(
                name=f"job-{spec['job_id']}-attempt-{spec['attempt']}",
                storage_path=os.path.join(spec["output"], "ray"),
                failure_config=FailureConfig(max_failures=0),
            ),
        )
        nodes = _alive_nodes()
        try:
            trainer.fit()
        except WorkerGroupError as error:
            failures = list(error.worker_failures.values())
            killed = not failures or not all(_exited(f) for f in failures)
            killed = killed or _lost_a_node(nodes, failures)
            return {"failed": True, "killed": killed, "error": str(error)[-4000:]}
        except TrainingFailedError as error:
            return {"failed": True, "killed": True, "error": str(error)[-4000:]}
        return {"failed": False, "killed": False, "error": ""}
