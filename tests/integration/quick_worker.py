"""``python -m tests.integration.quick_worker [celery arguments]``: the real ``celery`` command
line, worker and queues, with the work inside two tasks made quick, for tests of how tasks
are scheduled (tests/integration/test_render_no_starvation.py).

- Rendering draws each image as a small PNG after ``QUICK_RENDER_SECONDS`` per chunk; the
  rest of a rendering task is real: the render lease, chunks of ``SRPO_RENDER_CHUNK``, the
  next chunk sent to the rendering queue, pairs stored at the end.
- Training claims the job (its run's ``started_at`` is when the task began), waits
  ``QUICK_TRAIN_SECONDS`` and finishes it as succeeded, without starting a trainer.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from celery.bin.celery import main as celery
from PIL import Image

from app.core import jobs
from app.core.db import Database
from app.core.models import JobState
from app.core.settings import Settings
from worker import rendering, supervisor


def quick_render(model, prompts, seeds, folder: Path, indices=None, on_step=None) -> None:
    """Write the chunk's images after a pause that stands for sampling."""
    time.sleep(float(os.environ.get("QUICK_RENDER_SECONDS", "0.2")))
    if on_step is not None:
        on_step(1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = indices if indices is not None else range(len(seeds))
    for index, seed in zip(numbers, seeds, strict=True):
        Image.new("RGB", (8, 8), (index % 256, 0, 0)).save(
            rendering.image_path(folder, index, seed)
        )


def quick_training(db: Database, settings: Settings, job_id: int) -> str:
    """Claim the job, stand for its training, finish it."""
    name = supervisor.worker_name()
    lease = db.write(lambda s: jobs.claim(s, job_id, name, settings))
    if lease is None:
        return "not claimed"
    time.sleep(float(os.environ.get("QUICK_TRAIN_SECONDS", "0.5")))
    db.write(lambda s: jobs.finish(s, lease, JobState.SUCCEEDED, step=1))
    return "succeeded"


if __name__ == "__main__":
    rendering.render = quick_render
    supervisor.run_training = quick_training
    sys.argv[0] = "celery"
    celery()
