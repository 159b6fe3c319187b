"""What the studio adds on top of training: the tiny-demo config three ways, in one run.

1. ``srpo train`` on the command line (a YAML file of the ``tiny-demo`` preset without sample
   grids), timed from the command's start to its exit.
2. The same config as a studio job in the embedded mode (SQLite, Celery's SQLAlchemy broker,
   the in-process worker, as ``srpo studio`` runs it), timed from submit to succeeded.
3. The same studio job with the preset's sample grids (every 10 steps, and step 0).

Prints the seconds of each, the ratios, and where the studio's time goes: from submit to
the claim (broker polling), from the claim to the training process's first log line
(process start and the worker's imports), from there to the first step's metric (srpo's
imports, model loads, the step-0 grid, the first step), the steps, the final checkpoint,
and the bench noticing the end (its own polling). Also the fixed cost both paths pay:
importing the trainer and loading the models, timed in a fresh process.

    .venv/bin/python bench/job_overhead.py [--json] [--repeats 1] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from app.core import submission
from app.core.db import Database
from app.core.models import Job, JobMetric, JobRun, JobState
from app.core.settings import Settings
from app.core.startup import prepare
from app.core.storage import resolve
from srpo.config import PRESETS, deep_merge
from worker.embedded import EmbeddedWorker

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.05
FIXED_COSTS = """
import json, time
began = time.perf_counter()
from srpo.config import preset
from srpo.train import build_models
imported = time.perf_counter()
build_models(preset("tiny-demo"))
print(json.dumps({"imports": imported - began, "models": time.perf_counter() - imported}))
"""


def cli_seconds(folder: Path, overrides: dict[str, Any]) -> float:
    """Wall seconds of ``srpo train`` on the preset with ``overrides``, as a new process."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-demo.yaml"
    path.write_text(yaml.safe_dump(deep_merge(PRESETS["tiny-demo"], overrides)), "utf-8")
    command = [sys.executable, "-m", "srpo.cli", "train", str(path), "--output", str(folder)]
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - began


def fixed_costs() -> dict[str, float]:
    """Seconds to import the trainer and to load the tiny world's models, in a new process."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", FIXED_COSTS], cwd=ROOT, check=True, capture_output=True, text=True
    )
    costs = json.loads(done.stdout.strip().splitlines()[-1])
    return {**costs, "process_total": time.perf_counter() - began}


def _log_start(settings: Settings, run: JobRun) -> datetime | None:
    """When the training process wrote its first log line (after the worker's imports)."""
    path = resolve(settings.storage, run.log_path)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        return stamp.astimezone(UTC)
    return None


def studio_job(db: Database, settings: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    """Submit a tiny-demo job and wait for it; seconds from submit to succeeded, by phase."""
    submitted = datetime.now(UTC)
    began = time.perf_counter()
    job_id = submission.submit_job(db, settings, overrides, preset="tiny-demo", name="bench")
    while True:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job.state == JobState.SUCCEEDED:
                break
            if job.state in (JobState.FAILED, JobState.CANCELLED):
                raise RuntimeError(f"job {job_id} {job.state.value}: {job.error}")
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - began
    noticed = datetime.now(UTC)
    with db.session() as session:
        job = session.get(Job, job_id)
        (run,) = job.runs
        metrics = session.scalars(
            select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step)
        ).all()
        started = _log_start(settings, run) or run.started_at
        first, last = metrics[0], metrics[-1]
        phases = {
            "submit_to_claim": (run.started_at - submitted).total_seconds(),
            "claim_to_process_log": (started - run.started_at).total_seconds(),
            "to_first_step": (first.created_at - started).total_seconds(),
            "steps_after_the_first": (last.created_at - first.created_at).total_seconds(),
            "last_step_to_succeeded": (job.finished_at - last.created_at).total_seconds(),
            "succeeded_to_noticed": (noticed - job.finished_at).total_seconds(),
        }
        per_step = statistics.median(m.seconds_per_step for m in metrics)
    return {"seconds": seconds, "phases": phases, "trainer_seconds_per_step": per_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians shown")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's 40")
    args = parser.parse_args()
    plain: dict[str, Any] = {"sample_every": 0}
    if args.steps is not None:
        plain["steps"] = args.steps
    grids = {key: value for key, value in plain.items() if key != "sample_every"}

    with tempfile.TemporaryDirectory(prefix="srpo-job-overhead-") as scratch:
        root = Path(scratch)
        costs = fixed_costs()
        settings = Settings(data_dir=root / "studio")
        db = prepare(settings)
        cli, studio, gridded = [], [], []
        with EmbeddedWorker(settings):
            # Interleaved, so a change in the machine's load hits all three alike.
            for n in range(args.repeats):
                cli.append(cli_seconds(root / f"cli-{n}", plain))
                studio.append(studio_job(db, settings, plain))
                gridded.append(studio_job(db, settings, grids))

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    def phases(runs: list[dict[str, Any]]) -> dict[str, float]:
        return {
            name: round(statistics.median(run["phases"][name] for run in runs), 2)
            for name in runs[0]["phases"]
        }

    cli_s, studio_s = statistics.median(cli), median(studio, "seconds")
    grids_s = median(gridded, "seconds")
    steps = args.steps or PRESETS["tiny-demo"]["steps"]
    renders = 1 + steps // PRESETS["tiny-demo"]["sample_every"]
    result = {
        "steps": steps,
        "repeats": args.repeats,
        "cli_seconds": round(cli_s, 1),
        "studio_seconds": round(studio_s, 1),
        "studio_with_grids_seconds": round(grids_s, 1),
        "studio_over_cli": round(studio_s / cli_s, 3),
        "grids_over_studio": round(grids_s / studio_s, 3),
        "grid_renders": renders,
        "seconds_per_grid": round((grids_s - studio_s) / renders, 2),
        "studio_phases": phases(studio),
        "studio_with_grids_phases": phases(gridded),
        "trainer_seconds_per_step": round(median(studio, "trainer_seconds_per_step"), 3),
        "fixed_costs": {k: round(v, 2) for k, v in costs.items()},
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"srpo train (CLI)        {result['cli_seconds']:7.1f} s")
    print(
        f"studio job              {result['studio_seconds']:7.1f} s"
        f"   studio / CLI  {result['studio_over_cli']:.3f}"
    )
    print(
        f"studio job with grids   {result['studio_with_grids_seconds']:7.1f} s"
        f"   grids / studio {result['grids_over_studio']:.3f}"
        f"   ({renders} renders, {result['seconds_per_grid']} s each)"
    )
    print("studio phases (s):", json.dumps(result["studio_phases"]))
    print("with grids (s):   ", json.dumps(result["studio_with_grids_phases"]))
    print("fixed costs (s):  ", json.dumps(result["fixed_costs"]))
    print(f"load average {result['load_average_1min']} on {result['cpus']} CPUs")


if __name__ == "__main__":
    main()
