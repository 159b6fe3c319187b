"""Paths under the storage root: what the database records is always relative to it."""

from __future__ import annotations

from pathlib import Path

from app.core.errors import NotFound


def job_dir(storage: Path, job_id: int) -> Path:
    """The folder of one job's checkpoints, samples and logs."""
    return storage / "jobs" / str(job_id)


def relative(storage: Path, path: Path) -> str:
    """``path`` relative to the storage root (POSIX form, as stored in the database)."""
    return Path(path).resolve().relative_to(storage.resolve()).as_posix()


def resolve(storage: Path, stored: str) -> Path:
    """The file a stored relative path names; refuses anything that leaves the storage root."""
    root = storage.resolve()
    candidate = (root / stored).resolve()
    if Path(stored).is_absolute() or not candidate.is_relative_to(root):
        raise NotFound(f"no such file: {stored}")
    return candidate
