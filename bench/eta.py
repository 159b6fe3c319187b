"""How far the training ETA is from the truth after 20 % of the steps, on the tiny demo.

Trains the ``tiny-demo`` preset (40 steps, samples and a checkpoint every 10) in a temporary
folder with a callback that keeps every progress report. The truth at a step is the time
from that report to the end of ``train()``; the error is ``(ETA - truth) / truth``. Printed
as one JSON object: total seconds, the ETA and the truth at 20 % of the steps, the error
there (goal: within 15 %), and the same at every reported step for a look at how it
settles. ``--steps`` shortens the run (checkpoints and samples stay every 10 steps).

    PYTHONPATH=. .venv/bin/python bench/eta.py [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from srpo.config import preset
from srpo.train import Callback, Progress, train


class Recorder(Callback):
    """Keeps (time, progress) of every report."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Progress]] = []

    def on_progress(self, progress: Progress) -> None:
        self.seen.append((time.perf_counter(), progress))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    config = preset("tiny-demo", steps=args.steps)
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="srpo-eta-") as folder:
        began = time.perf_counter()
        train(config, Path(folder) / "run", callbacks=[recorder], show_progress=False)
        ended = time.perf_counter()
    rows = []
    for at, progress in recorder.seen:
        truth = ended - at
        error = (progress.eta_seconds - truth) / truth if truth > 0 else None
        rows.append(
            {
                "step": progress.step,
                "eta": round(progress.eta_seconds, 2),
                "truth": round(truth, 2),
                "error": None if error is None else round(error, 3),
            }
        )
    fifth = next(r for r in rows if r["step"] >= max(1, round(0.2 * config.steps)))
    print(
        json.dumps(
            {
                "steps": config.steps,
                "seconds": round(ended - began, 1),
                "at_20_percent": fifth,
                "within_15_percent": fifth["error"] is not None and abs(fifth["error"]) <= 0.15,
                "every_step": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
