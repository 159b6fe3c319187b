"""The embedded mode's worker: a Celery worker and the maintenance loop inside the studio.

The worker consumes the GPU, rendering and default queues over the configured broker (the SQLAlchemy
broker on SQLite by default) with the solo pool, so training jobs start exactly as they do on
a distributed worker: in their own process group, with a lease and heartbeats.
"""

from __future__ import annotations

import socket
import threading

from celery.worker import WorkController

from app.core.db import database
from app.core.maintenance import Maintenance
from app.core.settings import Settings
from worker.celery_app import make_celery


class _Controller(WorkController):
    def __init__(self, *args, **kwargs) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        self.ready.set()


class EmbeddedWorker:
    """Start with :meth:`start`, stop with :meth:`stop` (also a context manager)."""

    def __init__(self, settings: Settings, maintenance: bool = True) -> None:
        self.settings = settings
        self.celery = make_celery(settings)
        self.controller = _Controller(
            app=self.celery,
            pool="solo",
            concurrency=1,
            queues=[settings.gpu_queue, settings.render_queue, settings.default_queue],
            hostname=f"embedded@{socket.gethostname()}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self.thread = threading.Thread(target=self._run, name="srpo-worker", daemon=True)
        self.maintenance = (
            Maintenance(database(settings.database), settings) if maintenance else None
        )

    def _run(self) -> None:
        self.celery.set_current()  # the solo pool runs tasks through the thread's current app
        self.controller.start()

    def start(self, timeout: float = 60.0) -> EmbeddedWorker:
        """Start the worker thread (and the maintenance loop) and wait until it consumes."""
        self.thread.start()
        if not self.controller.ready.wait(timeout):
            raise RuntimeError(f"the embedded worker did not start within {timeout:.0f} s")
        if self.maintenance is not None:
            self.maintenance.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the maintenance loop and the worker (a running job is killed and resumes later)."""
        if self.maintenance is not None and self.maintenance.is_alive():
            self.maintenance.stop()
        self.controller.stop(in_sighandler=False)
        self.thread.join(timeout)

    def __enter__(self) -> EmbeddedWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
