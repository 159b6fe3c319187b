"""The trainer callback that writes progress, metrics, samples, the hacking monitor's points
and checkpoints to the database.

It runs on the main process only. Every write is guarded by the job's lease: if the lease is
gone (the job was reaped and may run elsewhere), :class:`app.core.jobs.LeaseLost` is raised, which
stops training at once, without saving, so two runs never write the same job. A hacking
warning, read from the job's stored monitor series, goes into the job log once, at the step
it fires.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from sqlalchemy.orm import Session

from app.core import jobs, monitoring, outputs
from app.core.db import Database
from app.core.jobs import Lease, LeaseLost, LeaseStatus
from app.core.settings import Settings
from srpo.checkpoints import Checkpoint
from srpo.train import Callback, Progress, Samples

log = logging.getLogger(__name__)
# the job log gets a progress line per step, or one per this many seconds when steps are fast
LOG_EVERY_SECONDS = 5.0


def progress_line(progress: Progress) -> str:
    """One step as the job log shows it: step, loss, reward, seconds per step and the ETA."""
    eta = progress.eta_seconds
    left = "–" if eta is None or eta != eta else f"{eta:.0f} s"
    return (
        f"step {progress.step}/{progress.total} · loss {progress.loss:.4f} · reward "
        f"{progress.reward_mean:.4f} ± {progress.reward_std:.4f} · "
        f"{progress.seconds_per_step:.2f} s/step · ETA {left}"
    )


class StudioCallback(Callback):
    """Reports one job's training to the studio database."""

    def __init__(self, db: Database, settings: Settings, lease: Lease, output: Path) -> None:
        self.db, self.settings, self.lease, self.output = db, settings, lease, output
        self._logged_at: float | None = None

    def _write(self, work: Callable[[Session], object]) -> None:
        self.db.write(work, self.settings.db_retry_seconds)

    def on_progress(self, progress: Progress) -> None:
        values = {
            "step": progress.step,
            "loss": progress.loss,
            "reward_mean": progress.reward_mean,
            "eta_seconds": progress.eta_seconds,
        }

        def work(session: Session) -> None:
            jobs.record_progress(session, self.lease, values)
            outputs.record_metric(session, self.lease.job_id, progress.step, vars(progress))

        self._write(work)
        now = time.monotonic()
        last = progress.step in (1, progress.total)
        if last or self._logged_at is None or now - self._logged_at >= LOG_EVERY_SECONDS:
            log.info("job %s: %s", self.lease.job_id, progress_line(progress))
            self._logged_at = now

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        log.info(
            "job %s: checkpoint at step %s saved (%s, %s)",
            self.lease.job_id,
            checkpoint.step,
            checkpoint.format,
            checkpoint.path.name,
        )
        self._write(
            lambda session: outputs.record_checkpoint(
                session,
                self.settings.storage,
                self.lease.job_id,
                checkpoint.path,
                checkpoint.step,
                checkpoint.format,
                checkpoint.manifest["files"],
            )
        )

    def on_samples(self, samples: Samples) -> None:
        folder = samples.path.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        cells = list(zip(samples.images, samples.prompts, samples.seeds, strict=True))
        saved = []
        for index, (image, prompt, seed) in enumerate(cells):
            path = folder / f"{index:03d}-seed{int(seed)}.png"
            save_png(image, path)
            saved.append((path, prompt, int(seed), (image.shape[-1], image.shape[-2])))

        def work(session: Session) -> dict | None:
            for path, prompt, seed, size in saved:
                outputs.record_sample(
                    session,
                    self.settings.storage,
                    path,
                    model=f"job:{self.lease.job_id}",
                    prompt=prompt,
                    seed=seed,
                    size=size,
                    job_id=self.lease.job_id,
                    step=samples.step,
                )
            if jobs.lease_status(session, self.lease) is LeaseStatus.LOST:
                raise LeaseLost(f"job {self.lease.job_id}: lease lost; stopping without saving")
            monitoring.record_point(session, self.lease.job_id, samples.step, samples.metrics)
            return monitoring.warning(session, self.lease.job_id)

        found = self.db.write(work, self.settings.db_retry_seconds)
        if found is not None and found["step"] == samples.step:
            log.warning("job %s: %s", self.lease.job_id, found["message"])

    def should_cancel(self) -> bool:
        status = self.db.write(
            lambda session: jobs.lease_status(session, self.lease), self.settings.db_retry_seconds
        )
        if status is LeaseStatus.LOST:
            raise LeaseLost(f"job {self.lease.job_id}: lease lost; stopping without saving")
        return status is LeaseStatus.CANCEL_REQUESTED


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write a ``[3, H, W]`` image in [0, 1] as PNG, atomically."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu()
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array.numpy()).save(tmp, format="PNG")
    os.replace(tmp, path)
