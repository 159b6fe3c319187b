"""The ``ray`` launcher: a job's attempt as a Ray Train job on the cluster at ``SRPO_RAY_ADDRESS``.

The Celery worker stays the job's owner: it claims the lease, connects to Ray as a driver
and starts the attempt's :class:`worker.ray_job.JobDriver` (named after the lease, so it
exists at most once), renews the lease while it runs, reads how it ended, and kills it on
cancel or when the lease is lost. The driver is owned by this worker process, so if the
worker dies its Ray job dies with it (Ray's fate sharing) and the reaper requeues the job;
before starting an attempt the worker also kills any driver an earlier attempt left, so
exactly one run of a job is ever active.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from app.core import jobs
from app.core.db import Database
from app.core.jobs import Lease, LeaseLost, LeaseStatus
from app.core.models import Job, JobRun
from app.core.settings import Settings
from app.core.storage import relative, resolve
from worker.launch_local import Ended, tail

PROBE_SECONDS = 5.0
FENCE_SECONDS = 60.0


class RayUnavailable(RuntimeError):
    """The Ray cluster cannot be reached (or refused the job): the job stays queued."""


def rank_log(output: str, attempt: int, rank: int) -> str:
    """Where rank ``rank`` of attempt ``attempt`` logs, under the job's folder."""
    return os.path.join(output, "logs", f"attempt-{attempt}-rank-{rank}.log")


def driver_name(token: str) -> str:
    """The Ray actor name of the driver of the run holding lease ``token``."""
    return f"srpo-run-{token}"


def check_reachable(settings: Settings) -> None:
    """Raise :class:`RayUnavailable` unless the cluster's address answers (a TCP probe)."""
    address = settings.ray_address
    if not address:
        raise RayUnavailable("launcher ray: no Ray cluster configured (set SRPO_RAY_ADDRESS)")
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or 10001
    except ValueError as error:
        raise RayUnavailable(f"SRPO_RAY_ADDRESS {address!r} is not host:port: {error}") from None
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as error:
        raise RayUnavailable(
            f"the Ray cluster at {address} is unreachable ({error}); "
            "the job stays queued and is sent again while it waits"
        ) from None


def connect(settings: Settings) -> None:
    """Connect this process to the cluster as a Ray driver, or raise :class:`RayUnavailable`."""
    import ray

    check_reachable(settings)
    if ray.is_initialized():
        return
    try:
        # ray.init needs real files (faulthandler takes stderr's descriptor); a Celery worker
        # has replaced sys.stdout/sys.stderr with logging proxies that have none.
        with redirect_stdout(sys.__stdout__), redirect_stderr(sys.__stderr__):
            ray.init(
                address=settings.ray_address,
                namespace=settings.ray_namespace,
                log_to_driver=False,
                logging_level="WARNING",
            )
    except (ConnectionError, RuntimeError, TimeoutError) as error:
        message = f"cannot join the Ray cluster at {settings.ray_address}: {error}"
        raise RayUnavailable(message) from None


class RayRun:
    """One attempt of a job as a Ray Train job (the Celery side of it)."""

    def __init__(self, db: Database, settings: Settings, lease: Lease, job: Job) -> None:
        self.db, self.settings, self.lease, self.job = db, settings, lease, job
        self.output = resolve(settings.storage, job.output_dir)
        self.log_path = Path(rank_log(str(self.output), lease.attempt, 0))
        self.driver = None
        self.result = None

    def _fence(self) -> None:
        """Kill the drivers earlier attempts of this job may have left, and wait for them.

        Only earlier ones: a later attempt exists only once this one's lease was lost, and it is
        the one that must run (this one stops at its next heartbeat)."""
        import ray

        tokens = self.db.write(
            lambda s: list(
                s.scalars(
                    select(JobRun.lease_token).where(
                        JobRun.job_id == self.job.id, JobRun.attempt < self.lease.attempt
                    )
                )
            ),
            self.settings.db_retry_seconds,
        )
        for token in tokens:
            deadline = time.monotonic() + FENCE_SECONDS
            while time.monotonic() < deadline:
                try:
                    ray.kill(ray.get_actor(driver_name(token)), no_restart=True)
                except ValueError:  # no such actor (any more)
                    break
                time.sleep(0.5)

    def start(self) -> None:
        """Start the attempt's driver; :class:`RayUnavailable` if the cluster refuses it,
        :class:`LeaseLost` if the lease was lost meanwhile."""
        from worker.ray_job import TRAIN_ENV, JobDriver

        connect(self.settings)
        self._fence()
        held = self.db.write(
            lambda s: jobs.lease_status(s, self.lease), self.settings.db_retry_seconds
        )
        if held is LeaseStatus.LOST:  # taken over while joining the cluster: start nothing
            raise LeaseLost(f"job {self.job.id}: lease {self.lease.token} lost before its start")
        spec = {
            "job_id": self.job.id,
            "token": self.lease.token,
            "attempt": self.lease.attempt,
            "output": str(self.output),
            "num_workers": self.job.num_processes,
            "nodes": self.job.config.get("nodes"),
            "use_gpu": self.settings.ray_use_gpu,
            "env": {
                **self.settings.environment(),
                "SRPO_LEASE_TOKEN": self.lease.token,
                "SRPO_LEASE_ATTEMPT": str(self.lease.attempt),
                "PYTHONUNBUFFERED": "1",
            },
        }
        self.driver = JobDriver.options(
            name=driver_name(self.lease.token),
            resources={"node:__internal_head__": 0.001},  # the head node: it stays up
            runtime_env={"env_vars": TRAIN_ENV},
        ).remote()
        self.result = self.driver.fit.remote(spec)
        stored = relative(self.settings.storage, self.log_path)
        self.db.write(
            lambda s: jobs.record_run_process(s, self.lease, None, stored),
            self.settings.db_retry_seconds,
        )

    def wait(self, timeout: float) -> Ended | None:
        """How the Ray job ended, or None while it runs (or waits for its workers)."""
        import ray

        ready, _ = ray.wait([self.result], timeout=timeout)
        if not ready:
            return None
        try:
            outcome = ray.get(self.result)
        except ray.exceptions.RayError as error:
            return Ended(-1, True, f"the Ray job's driver died: {error}"[-4000:])
        if not outcome["failed"]:
            return Ended(0, False, "the Ray job ended")
        if outcome["killed"]:
            return Ended(-1, True, f"the Ray job lost a worker: {outcome['error']}")
        log = tail(self.log_path)
        return Ended(1, False, f"the Ray job failed: {outcome['error']}; rank 0 log tail:\n{log}")

    def kill(self) -> None:
        """Kill the driver; Ray then kills its Train controller and every worker, on every node."""
        import ray

        if self.driver is not None:
            ray.kill(self.driver, no_restart=True)

    def close(self) -> None:
        """Kill the driver if it still runs and leave the cluster."""
        import ray

        if self.driver is not None and ray.is_initialized():
            ready, _ = ray.wait([self.result], timeout=0)
            if not ready:
                self.kill()
        if ray.is_initialized():
            ray.shutdown()
