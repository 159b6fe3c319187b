"""The ``local`` launcher: a job's training process group on this worker's node.

``python -m worker.run_job ID``, under ``accelerate launch`` for several processes, runs in its
own process group with a per-attempt log file and dies with the worker (``PR_SET_PDEATHSIG``),
so a killed worker leaves no orphan training.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from app.core import jobs
from app.core.db import Database
from app.core.jobs import Lease
from app.core.models import Job
from app.core.settings import Settings
from app.core.storage import relative, resolve
from worker.process import die_with_parent, kill_group


@dataclass(frozen=True)
class Ended:
    """How a run's training ended: ``killed`` from outside (a signal, a lost node: the job may
    be retried), else with ``status`` (0: it wrote its own result); ``detail`` says more."""

    status: int
    killed: bool
    detail: str


def training_command(job_id: int, processes: int) -> list[str]:
    """``python -m worker.run_job ID``, under ``accelerate launch --multi_gpu`` for several
    processes (torch.distributed; NCCL on GPUs, gloo where there are none)."""
    if processes <= 1:
        return [sys.executable, "-m", "worker.run_job", str(job_id)]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--module",
        "worker.run_job",
        str(job_id),
    ]


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    try:
        text = path.read_bytes()[-20_000:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class LocalRun:
    """One attempt's training process group on this node."""

    def __init__(self, db: Database, settings: Settings, lease: Lease, job: Job) -> None:
        self.db, self.settings, self.lease, self.job = db, settings, lease, job
        folder = resolve(settings.storage, job.output_dir) / "logs"
        self.log_path = folder / f"attempt-{lease.attempt}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the training process group, logging to ``logs/attempt-N.log``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.settings.environment(),
            "SRPO_LEASE_TOKEN": self.lease.token,
            "SRPO_LEASE_ATTEMPT": str(self.lease.attempt),
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_path, "ab") as out:
            self.process = process = subprocess.Popen(
                training_command(self.job.id, self.job.num_processes),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=Path(__file__).resolve().parent.parent,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        stored = relative(self.settings.storage, self.log_path)
        self.db.write(
            lambda s: jobs.record_run_process(s, self.lease, process.pid, stored),
            self.settings.db_retry_seconds,
        )

    def wait(self, timeout: float) -> Ended | None:
        """How the process ended, or None if it still runs after ``timeout`` seconds."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if code < 0:
            return Ended(code, True, f"training process killed by signal {-code}")
        log = tail(self.log_path)
        return Ended(code, False, f"training process exited with status {code}; log tail:\n{log}")

    def kill(self) -> None:
        """Kill the whole training process group."""
        if self.process is not None:
            kill_group(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Make sure nothing of the run is left (the worker is stopping)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
            self.process.wait()
