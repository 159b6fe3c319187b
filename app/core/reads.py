"""The read side of jobs and checkpoints: what the REST API and the Train and Checkpoints
tabs show, as plain JSON rows (jobs with queue position and progress, metrics, the hacking
monitor, sample images, logs, checkpoints), and the checkpoint files a download may serve.

Nothing here writes; the writes are :mod:`app.core.jobs` (state) and
:mod:`app.core.outputs` (what runs produce).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import jobs, monitoring
from app.core.errors import NotFound
from app.core.models import Checkpoint, Job, JobMetric, JobRun, SampleImage
from app.core.settings import Settings
from app.core.storage import resolve

LOG_TAIL_BYTES = 20_000


def job_row(session: Session, job: Job) -> dict[str, Any]:
    """A job as plain JSON values, with its queue position and progress."""
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "queue_position": jobs.queue_position(session, job),
        "step": job.step,
        "total_steps": job.total_steps,
        "progress": job.step / job.total_steps if job.total_steps else 0.0,
        "eta_seconds": job.eta_seconds,
        "loss": job.loss,
        "reward_mean": job.reward_mean,
        "attempts": job.attempts,
        "error": job.error,
        "dispatch_error": job.dispatch_error,
        "cancel_requested": job.cancel_requested,
        "launcher": job.config.get("launcher", "local"),
        "num_workers": job.num_processes,
        "nodes": job.runs[-1].nodes if job.runs else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def job_detail(session: Session, job: Job) -> dict[str, Any]:
    """One job's row with its hacking monitor (gold signal, series per sample step, warning)."""
    return job_row(session, job) | {"monitor": monitoring.job_monitor(session, job)}


def job_rows(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """The newest jobs first."""
    found = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit))
    return [job_row(session, job) for job in found]


def metrics(session: Session, job_id: int) -> list[dict[str, float]]:
    """A job's per-step numbers in step order."""
    rows = session.scalars(
        select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step)
    )
    return [
        {"step": m.step, "loss": m.loss, "reward_mean": m.reward_mean, "reward_std": m.reward_std}
        for m in rows
    ]


def sample_steps(session: Session, job_id: int) -> list[int]:
    """Steps at which the job rendered its fixed-seed samples (0 is the base model)."""
    found = session.scalars(
        select(SampleImage.step)
        .where(SampleImage.job_id == job_id, SampleImage.checkpoint_id.is_(None))
        .distinct()
    )
    return sorted(step for step in found if step is not None)


def samples_at(
    session: Session, settings: Settings, job_id: int, step: int
) -> list[tuple[Path, str]]:
    """The job's training samples at ``step``: (file, "prompt · seed") in order."""
    rows = session.scalars(
        select(SampleImage)
        .where(
            SampleImage.job_id == job_id,
            SampleImage.step == step,
            SampleImage.checkpoint_id.is_(None),
        )
        .order_by(SampleImage.path)
    )
    return [(resolve(settings.storage, r.path), f"{r.prompt} · seed {r.seed}") for r in rows]


def sample_cells(
    session: Session, settings: Settings, job_id: int
) -> dict[tuple[str, int], dict[int, Path]]:
    """The job's training samples by (prompt, seed), each with its file at every sample
    step: what the compare views put side by side."""
    rows = session.scalars(
        select(SampleImage)
        .where(SampleImage.job_id == job_id, SampleImage.checkpoint_id.is_(None))
        .order_by(SampleImage.path)
    )
    cells: dict[tuple[str, int], dict[int, Path]] = {}
    for row in rows:
        if row.step is not None:
            cell = cells.setdefault((row.prompt, row.seed), {})
            cell[row.step] = resolve(settings.storage, row.path)
    return cells


def sample_grid(session: Session, settings: Settings, job_id: int, step: int) -> Path | None:
    """The labelled grid PNG the trainer saved beside the samples of ``step``, if it exists
    (a step's images lie in ``samples/step-N/``; its grid is ``samples/step-N.png``)."""
    row = session.scalar(
        select(SampleImage.path)
        .where(
            SampleImage.job_id == job_id,
            SampleImage.step == step,
            SampleImage.checkpoint_id.is_(None),
        )
        .limit(1)
    )
    if row is None:
        return None
    grid = resolve(settings.storage, row).parent.with_suffix(".png")
    return grid if grid.is_file() else None


def job_log(session: Session, settings: Settings, job_id: int) -> str:
    """The tail of each attempt's log of a job, newest attempt last."""
    jobs.get(session, job_id)
    runs = session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt))
    parts = []
    for run in runs:
        text = "(no log yet)"
        if run.log_path:
            path = resolve(settings.storage, run.log_path)
            if path.is_file():
                with open(path, "rb") as handle:
                    handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                    text = handle.read().decode("utf-8", errors="replace")
        parts.append(f"--- attempt {run.attempt} on {run.worker} ({run.outcome.value}) ---\n{text}")
    return "\n".join(parts) or "(the job has not started yet)"


def checkpoint(session: Session, checkpoint_id: int) -> Checkpoint:
    """The checkpoint row, or :class:`NotFound`."""
    found = session.get(Checkpoint, checkpoint_id)
    if found is None:
        raise NotFound(f"checkpoint {checkpoint_id} not found")
    return found


def checkpoint_row(session: Session, found: Checkpoint) -> dict[str, Any]:
    """A checkpoint as plain JSON values, with the training reward at its step and the
    hacking monitor there (gold signal, drift from the first sample step)."""
    job = session.get(Job, found.job_id)
    reward = session.scalar(
        select(JobMetric.reward_mean).where(
            JobMetric.job_id == found.job_id, JobMetric.step == found.step
        )
    )
    return {
        "id": found.id,
        "job_id": found.job_id,
        "job_name": job.name if job else "",
        "step": found.step,
        "format": found.format,
        "weights_file": found.weights_file,
        "size_bytes": found.size_bytes,
        "sha256": found.sha256,
        "train_reward": reward,
        "monitor": monitoring.checkpoint_monitor(session, found.job_id, found.step),
        "created_at": found.created_at.isoformat(),
        "download_url": f"/api/v1/checkpoints/{found.id}/download",
    }


def checkpoint_rows(session: Session, job_id: int | None = None) -> list[dict[str, Any]]:
    """Every checkpoint (of one job, if given), newest first."""
    query = select(Checkpoint).order_by(Checkpoint.id.desc())
    if job_id is not None:
        query = query.where(Checkpoint.job_id == job_id)
    return [checkpoint_row(session, c) for c in session.scalars(query)]


def checkpoint_file(settings: Settings, found: Checkpoint, name: str | None = None) -> Path:
    """A file of a checkpoint that its manifest lists (the weights by default).

    Only names in the manifest are served, and the resolved path must stay inside the
    checkpoint folder under the storage root, so ``..``, absolute paths and links out are
    refused with :class:`NotFound`.
    """
    name = found.weights_file if name is None else name
    if name not in found.files:
        raise NotFound(f"checkpoint {found.id} has no file {name!r}")
    folder = resolve(settings.storage, found.path)
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise NotFound(f"checkpoint {found.id} has no file {name!r}")
    return path
