"""One training run of a studio job: ``python -m worker.run_job JOB_ID``.

Started by the worker (plainly for one process, under ``accelerate launch`` for several),
with the lease in ``SRPO_LEASE_TOKEN``/``SRPO_LEASE_ATTEMPT``. The main process reports to
the database and writes the final state; training resumes from the newest checkpoint.
Exit status: 0 finished (succeeded or cancelled), 1 failed, 75 lease lost.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from app.core import jobs, outputs
from app.core.db import Database
from app.core.jobs import Lease, LeaseLost
from app.core.models import Job, JobState
from app.core.settings import Settings, get_settings
from app.core.storage import resolve
from worker.process import die_with_parent

LEASE_LOST = 75
# The exit status of a process of a multi-process run whose peer is gone (its process or node
# lost): it failed on a collective, which is a lost worker for the launcher to judge and
# retry, not the job's own failure, so it does not write the job's final state.
PEER_LOST = 76
PEER_LOST_ERRORS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL")
log = logging.getLogger("srpo.run_job")


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` says a peer of a distributed run is gone (gloo and NCCL errors)."""
    import torch.distributed as dist

    backend = getattr(dist, "DistBackendError", None)
    return (backend is not None and isinstance(error, backend)) or any(
        text in str(error) for text in PEER_LOST_ERRORS
    )


def register_checkpoints(db: Database, settings: Settings, job_id: int, output: Path) -> int:
    """Register verified checkpoint folders the database does not know yet (a run may have
    died between saving one and recording it); returns how many were added."""
    from srpo.checkpoints import verify

    known = db.write(lambda s: outputs.checkpoint_steps(s, job_id), settings.db_retry_seconds)
    added = 0
    for folder in sorted((output / "checkpoints").glob("step-*")):
        checkpoint = verify(folder)
        if checkpoint is None or checkpoint.step in known:
            continue
        db.write(
            lambda s, c=checkpoint: outputs.record_checkpoint(
                s, settings.storage, job_id, c.path, c.step, c.format, c.manifest["files"]
            ),
            settings.db_retry_seconds,
        )
        added += 1
    return added


def failure_line(job_id: int, attempt: int, message: str) -> str:
    """The job log's last line when a run fails."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return f"job {job_id} FAILED (attempt {attempt}): {first}"


def run(job_id: int, lease: Lease, settings: Settings) -> int:
    """Train the job under ``lease``; returns the exit status."""
    from srpo.config import make_config
    from srpo.train import train
    from worker.callback import StudioCallback

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    main = rank == 0
    log.info("job %s attempt %s: process %s of %s", job_id, lease.attempt, rank + 1, world)
    db = Database(settings.database)
    job = db.write(lambda s: s.get(Job, job_id), settings.db_retry_seconds)
    if job is None:
        log.error("job %s not found", job_id)
        return 1
    output = resolve(settings.storage, job.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    try:
        config = make_config(job.config)
        callbacks = []
        if main:
            added = register_checkpoints(db, settings, job_id, output)
            log.info("job %s attempt %s: %s checkpoint(s) registered", job_id, lease.attempt, added)
            callbacks = [StudioCallback(db, settings, lease, output)]
        result = train(config, output, callbacks=callbacks)
    except LeaseLost as error:
        log.error("%s", error)
        return LEASE_LOST
    except Exception as error:
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
        if world > 1 and lost_peer(error):
            log.error("%s", failure_line(job_id, lease.attempt, f"lost a peer: {message}"))
            return PEER_LOST
        # the traceback above is for debugging; the log's last line says what happened
        log.error("%s", failure_line(job_id, lease.attempt, message))
        if main:
            db.write(
                lambda s: jobs.finish(s, lease, JobState.FAILED, error=message),
                settings.db_retry_seconds,
            )
        return 1
    if main:
        state = JobState.CANCELLED if result.cancelled else JobState.SUCCEEDED
        db.write(
            lambda s: jobs.finish(s, lease, state, step=result.step), settings.db_retry_seconds
        )
        log.info("job %s %s at step %s", job_id, state.value, result.step)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the training process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id", type=int)
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    lease = Lease(
        args.job_id, os.environ["SRPO_LEASE_TOKEN"], int(os.environ["SRPO_LEASE_ATTEMPT"])
    )
    return run(args.job_id, lease, get_settings())


if __name__ == "__main__":
    sys.exit(main())
