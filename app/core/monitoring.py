"""The hacking monitor's record: its numbers at every sample step of a job, the warning read
from them, and the drift at each checkpoint.

The worker's trainer callback writes one point per sample step (:func:`record_point`); the
warning is read from the stored series (so a resumed job is judged on its whole run, not on
what its last attempt saw) by :func:`srpo.monitor.hacking_warning`, and names the last
checkpoint saved before the hacking began. The REST API and the Train and Checkpoints tabs
read :func:`job_monitor` and :func:`checkpoint_monitor`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import Checkpoint, Job, MonitorPoint, utcnow
from app.core.upsert import upsert
from srpo.monitor import Point, drifts, hack_drift, hacking_warning, monitor_name


def record_point(session: Session, job_id: int, step: int, metrics: dict[str, float]) -> None:
    """Store one sample step's numbers (``train_reward`` and ``gold`` among them, when
    measured); a resumed run repeating a step replaces them."""
    values = {name: float(value) for name, value in metrics.items()}
    row = {
        "job_id": job_id,
        "step": step,
        "train_reward": values.get("train_reward"),
        "gold": values.get("gold"),
        "metrics": values,
        "created_at": utcnow(),
    }
    changing = ("train_reward", "gold", "metrics", "created_at")
    upsert(session, MonitorPoint, row, ("job_id", "step"), changing)


def points(session: Session, job_id: int) -> list[Point]:
    """The job's sample steps in step order, as :mod:`srpo.monitor` reads them."""
    rows = session.scalars(
        select(MonitorPoint).where(MonitorPoint.job_id == job_id).order_by(MonitorPoint.step)
    )
    return [Point(r.step, r.train_reward, dict(r.metrics)) for r in rows]


def _checkpoint_at_or_before(session: Session, job_id: int, step: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.step <= step)
        .order_by(Checkpoint.step.desc())
        .limit(1)
    )


def warning(session: Session, job_id: int, series: list[Point] | None = None) -> dict | None:
    """The job's hacking warning, or None: the step it fired at, the last step before the
    hacking began, why, the last checkpoint at or before that step (None if there is none)
    and a one-line ``message`` naming it."""
    series = points(session, job_id) if series is None else series
    found = hacking_warning(series)
    if found is None:
        return None
    before = _checkpoint_at_or_before(session, job_id, found.last_good_step)
    named = (
        f"the last checkpoint before it is step {before.step} (checkpoint {before.id})"
        if before
        else "no checkpoint was saved before it"
    )
    return {
        "step": found.step,
        "last_good_step": found.last_good_step,
        "reason": found.reason,
        "checkpoint": {"id": before.id, "step": before.step} if before else None,
        "message": f"Possible reward hacking at step {found.step}: {found.reason}; {named}.",
    }


def _row(point: Point, first: Point) -> dict[str, Any]:
    changes = drifts(first.metrics, point.metrics)
    shown = hack_drift(changes)
    gold, base = point.metrics.get("gold"), first.metrics.get("gold")
    return {
        "step": point.step,
        "train_reward": point.reward,
        "gold": gold,
        "gold_change": None if gold is None or base is None else gold - base,
        "drift": changes,
        "hack_drift": shown[1] if shown else None,
        "metrics": point.metrics,
    }


def series_rows(series: list[Point]) -> list[dict[str, Any]]:
    """Each sample step as JSON: training reward, gold signal and its change from the first
    step, each watched statistic's drift, the hack drift the studio shows, every metric."""
    return [_row(point, series[0]) for point in series]


def job_monitor(session: Session, job: Job) -> dict[str, Any]:
    """What the job detail carries: the gold signal's name, the series, the warning."""
    from srpo.config import make_config

    series = points(session, job.id)
    return {
        "gold_signal": monitor_name(make_config(job.config)),
        "points": series_rows(series),
        "warning": warning(session, job.id, series),
    }


def checkpoint_monitor(session: Session, job_id: int, step: int) -> dict[str, Any] | None:
    """The monitor at a checkpoint: its row at the newest sample step at or before ``step``
    (``measured_at``), or None when the job logged no sample step by then."""
    series = points(session, job_id)
    measured = [p for p in series if p.step <= step]
    if not measured:
        return None
    row = _row(measured[-1], series[0])
    row["measured_at"] = row.pop("step")
    return row


def checkpoint_report(session: Session, found: Checkpoint) -> dict[str, Any]:
    """What a checkpoint's model card says of reward hacking: the gold signal's name, the
    monitor at the checkpoint (:func:`checkpoint_monitor`), each drift's threshold, and the
    job's warning with whether this checkpoint comes after the step it fired at."""
    from srpo.config import make_config
    from srpo.monitor import DRIFT_THRESHOLD

    job = session.get(Job, found.job_id)
    series = points(session, found.job_id)
    fired = warning(session, found.job_id, series)
    return {
        "gold_signal": monitor_name(make_config(job.config)),
        "at_checkpoint": checkpoint_monitor(session, found.job_id, found.step),
        "thresholds": dict(DRIFT_THRESHOLD),
        "warning": fired,
        "after_warning": fired is not None and found.step > fired["last_good_step"],
    }
