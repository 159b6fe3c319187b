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

    .venv/bin/python bench/job_overhead.py [--json] [--repeats 1] [--steps 40] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
POLL_SECONDS = 0.25  # how often the bench asks for the job's state (the Train tab: 2 s)
FIXED_COSTS = """
import json, time
began = time.perf_counter()
from srpo.config import preset
from srpo.train import build_models
imported = time.perf_counter()
build_models(preset("tiny-demo"))
print(json.dumps({"imports": imported - began, "models": time.perf_counter() - imported}))
"""


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def cli_run(folder: Path, overrides: dict[str, Any]) -> dict[str, float]:
    """Wall seconds of ``srpo train`` on the preset with ``overrides``, as a new process,
    and the CPU seconds that process used."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-demo.yaml"
    path.write_text(yaml.safe_dump(deep_merge(PRESETS["tiny-demo"], overrides)), "utf-8")
    command = [sys.executable, "-m", "srpo.cli", "train", str(path), "--output", str(folder)]
    own, children = _cpu()
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    seconds = time.perf_counter() - began
    own_after, children_after = _cpu()
    return {
        "seconds": seconds,
        "training_cpu_seconds": children_after - children,
        "bench_cpu_seconds": own_after - own,
    }


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
    own, children = _cpu()
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
        # The trainer writes "succeeded" just before it exits: its CPU time reaches this
        # process's children once the supervisor has reaped it.
        deadline = time.monotonic() + 60
        while Path(f"/proc/{run.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        own_after, children_after = _cpu()
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
    return {
        "seconds": seconds,
        "training_cpu_seconds": children_after - children,
        "bench_cpu_seconds": own_after - own,
        "phases": phases,
        "trainer_seconds_per_step": per_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians shown")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's 40")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for every training process (default: torch's own choice)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        # Inherited by the CLI's process and by the worker's training process alike.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
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
                cli.append(cli_run(root / f"cli-{n}", plain))
                studio.append(studio_job(db, settings, plain))
                gridded.append(studio_job(db, settings, grids))

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    def phases(runs: list[dict[str, Any]]) -> dict[str, float]:
        return {
            name: round(statistics.median(run["phases"][name] for run in runs), 2)
            for name in runs[0]["phases"]
        }

    cli_s, studio_s = median(cli, "seconds"), median(studio, "seconds")
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
        # CPU seconds move far less with other load than wall seconds do: the training
        # process's own, and the studio side's (this process: the embedded worker, the
        # supervisor's heartbeats, the maintenance loop, the bench's polling).
        "cpu_seconds": {
            name: {
                "training": round(median(runs, "training_cpu_seconds"), 1),
                "studio_side": round(median(runs, "bench_cpu_seconds"), 1),
            }
            for name, runs in (("cli", cli), ("studio", studio), ("studio_with_grids", gridded))
        },
        "fixed_costs": {k: round(v, 2) for k, v in costs.items()},
        "threads": args.threads,
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
    print("CPU seconds:      ", json.dumps(result["cpu_seconds"]))
    print(f"load average {result['load_average_1min']} on {result['cpus']} CPUs")


if __name__ == "__main__":
    main()
