"""The maintenance loop: reap expired leases, (re)send queued jobs the broker never got and
the rendering of pending campaigns.

It runs beside the studio (a thread) or alone (``python -m app.core.maintenance``). Several
copies may run at once: every step is a conditional update, and a duplicate task message
is harmless because a job can only be claimed while queued.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from app.core import arena_rendering, dispatch, jobs
from app.core.db import Database, database
from app.core.errors import BrokerUnavailable
from app.core.settings import Settings, get_settings

log = logging.getLogger("srpo.maintenance")


@dataclass
class Report:
    """What one maintenance pass did."""

    reaped: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    campaigns: list[int] = field(default_factory=list)
    broker_error: str | None = None


def maintain_once(
    db: Database, settings: Settings, campaigns_sent: dict[int, float] | None = None
) -> Report:
    """One pass: requeue jobs whose worker was lost, send every undelivered job, and send
    the next rendering task of each pending campaign this loop has not sent one for within
    ``redispatch_seconds`` (all of them on the first pass, as after a restart, whose killed
    worker took its rendering task with it). A campaign a task renders now (its render lease
    held) is left alone; one whose lease ran out is sent again after ``lease_seconds``.
    ``campaigns_sent`` (id: monotonic time) is the loop's memory; a duplicate rendering task
    ends at once and renders nothing twice."""
    report = Report(reaped=db.write(jobs.reap_expired))
    if campaigns_sent is not None:
        _send_campaigns(db, settings, campaigns_sent, report)
    if report.reaped:
        log.warning("requeued or failed jobs with expired leases: %s", report.reaped)
    pending = db.write(lambda s: jobs.pending_dispatch(s, settings.redispatch_seconds))
    for job_id in pending:
        try:
            dispatch.dispatch(db, settings, job_id)
        except BrokerUnavailable as error:
            report.broker_error = str(error)
            break
        report.dispatched.append(job_id)
    return report


def _send_campaigns(
    db: Database, settings: Settings, sent: dict[int, float], report: Report
) -> None:
    now = time.monotonic()
    waiting = db.write(
        arena_rendering.rendering_campaigns
    )  # a campaign a task renders now is left out
    for campaign_id in list(sent):
        if campaign_id not in waiting:
            del sent[campaign_id]
    for campaign_id, lost in waiting.items():
        # a task whose lease ran out was lost with its worker: send again after one lease
        wait = settings.lease_seconds if lost else settings.redispatch_seconds
        if now - sent.get(campaign_id, -math.inf) < wait:
            continue
        try:
            dispatch.send(settings, dispatch.PAIRS_TASK, [campaign_id])
        except BrokerUnavailable as error:
            report.broker_error = str(error)
            return
        sent[campaign_id] = now
        report.campaigns.append(campaign_id)


class Maintenance(threading.Thread):
    """Runs :func:`maintain_once` every ``maintenance_seconds`` until stopped."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(name="srpo-maintenance", daemon=True)
        self.db, self.settings = db, settings
        self.stopping = threading.Event()
        self.campaigns_sent: dict[int, float] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                maintain_once(self.db, self.settings, self.campaigns_sent)
            except Exception:
                log.exception("maintenance pass failed; trying again")
            self.stopping.wait(self.settings.maintenance_seconds)

    def stop(self) -> None:
        """Ask the loop to end and wait for it."""
        self.stopping.set()
        self.join()


def main() -> None:
    """Run the maintenance loop in the foreground."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    loop = Maintenance(database(settings.database), settings)
    loop.run()


if __name__ == "__main__":
    main()
