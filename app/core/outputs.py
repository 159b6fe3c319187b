"""The write side of what runs produce: metrics per step, checkpoints and sample images.

The worker's trainer callback and rendering call these (every write is an upsert, so a
repeated or resumed run neither duplicates nor loses a row); :mod:`app.core.reads` reads
them back. A job's state and lease are written by :mod:`app.core.jobs` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import Checkpoint, JobMetric, SampleImage, utcnow
from app.core.storage import relative
from app.core.upsert import upsert

METRICS = ("loss", "reward_mean", "reward_std", "grad_norm", "seconds_per_step")


def record_metric(session: Session, job_id: int, step: int, values: dict[str, float]) -> None:
    """Store one step's numbers (a resumed run repeating a step replaces them)."""
    row = {"job_id": job_id, "step": step, "created_at": utcnow()}
    row |= {name: float(values[name]) for name in METRICS}
    upsert(session, JobMetric, row, ("job_id", "step"), (*METRICS, "created_at"))


def weights_file(files: dict[str, str]) -> str:
    """The main weights file of a checkpoint manifest (what a download serves)."""
    tensors = sorted(name for name in files if name.endswith(".safetensors"))
    if not tensors:
        raise ValueError("checkpoint manifest lists no .safetensors file")
    return tensors[0]


def record_checkpoint(
    session: Session,
    storage: Path,
    job_id: int,
    path: Path,
    step: int,
    fmt: str,
    files: dict[str, str],
) -> None:
    """Register a complete checkpoint folder; a re-save of the same step updates its row."""
    main = weights_file(files)
    row: dict[str, Any] = {
        "job_id": job_id,
        "step": step,
        "format": fmt,
        "path": relative(storage, path),
        "weights_file": main,
        "size_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
        "sha256": files[main],
        "files": dict(files),
        "created_at": utcnow(),
    }
    changing = ("format", "path", "weights_file", "size_bytes", "sha256", "files")
    upsert(session, Checkpoint, row, ("job_id", "step"), changing)


def checkpoint_steps(session: Session, job_id: int) -> set[int]:
    """Steps of the job's registered checkpoints."""
    return set(session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id)))


def record_sample(
    session: Session,
    storage: Path,
    path: Path,
    *,
    model: str,
    prompt: str,
    seed: int,
    size: tuple[int, int],
    job_id: int | None = None,
    checkpoint_id: int | None = None,
    step: int | None = None,
) -> int:
    """Register an image file (once per path); returns its row id."""
    stored = relative(storage, path)
    row = {
        "job_id": job_id,
        "checkpoint_id": checkpoint_id,
        "model": model,
        "step": step,
        "prompt": prompt,
        "seed": seed,
        "path": stored,
        "width": size[0],
        "height": size[1],
        "created_at": utcnow(),
    }
    upsert(session, SampleImage, row, ("path",))
    found = session.scalar(select(SampleImage.id).where(SampleImage.path == stored))
    assert found is not None
    return found
