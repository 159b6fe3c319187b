"""``python -m worker [celery worker options]``: a GPU worker for the settings in the environment.

Migrates the database, then consumes the GPU and campaign-rendering queues one task at a time
(solo pool, prefetch 1); the same as
``celery -A worker.celery_app worker -Q gpu,render --pool solo --concurrency 1``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app.core.settings import get_settings
from app.core.startup import prepare
from worker.celery_app import make_celery


def main(argv: Sequence[str] | None = None) -> None:
    """Start the worker; extra arguments go to ``celery worker``."""
    settings = get_settings()
    prepare(settings)
    queues = f"{settings.gpu_queue},{settings.render_queue}"
    options = ["-Q", queues, "--pool", "solo", "--concurrency", "1"]
    make_celery(settings).worker_main(["worker", *options, *(argv or sys.argv[1:])])


if __name__ == "__main__":
    main()
