"""What Ray adds to a training job: the tiny-demo config as a 2-worker job, two ways.

1. Locally: ``accelerate launch --multi_gpu --num_processes 2`` on this machine (gloo on CPUs),
   the ``local`` launcher's command.
2. On a 2-node local Ray cluster (``ray.cluster_utils.Cluster``, one CPU per node): a Ray Train
   ``TorchTrainer`` of 2 workers spread over the nodes, as the ``ray`` launcher runs it.

Both run the same ``srpo.train.train`` loop (no sample grids, one final checkpoint) with a
callback on rank 0 that stamps each update. Seconds per update are measured from the end of
the first update to the end of the last (start-up, the first update's warm-up excluded); the
start-up (launch to the end of the first update; for Ray, the cluster's own start is reported
apart) is printed separately. Prints both, and the ratio ray / local (goal: at most 1.25).

    .venv/bin/python bench/ray_overhead.py [--json] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def job_config(steps: int) -> dict[str, Any]:
    """The tiny-demo preset as a 2-worker job: no sample grids, a checkpoint at the end."""
    from srpo.config import preset

    options = {"steps": steps, "sample_every": 0, "checkpoint_every": steps}
    return preset("tiny-demo", **options).model_dump(mode="json")


def train_and_stamp(config: dict[str, Any], output: str, stamps: str) -> None:
    """One rank of the job: ``srpo.train.train``; rank 0 writes the time of each update."""
    import torch

    from srpo.config import make_config
    from srpo.train import Callback, Progress, train

    class Stamps(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_progress(self, progress: Progress) -> None:
            self.times.append(time.time())

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    stamp = Stamps()
    train(make_config(config), output, callbacks=[stamp])
    if stamp.times:  # only the main process gets callbacks called
        Path(stamps).write_text(json.dumps(stamp.times))


def _rank_main(args: argparse.Namespace) -> None:
    """Under ``accelerate launch``: one rank of the local run."""
    train_and_stamp(json.loads(Path(args.rank).read_text()), args.output, args.stamps)


def _summary(began: float, times: list[float]) -> dict[str, float]:
    return {
        "startup_seconds": times[0] - began,
        "seconds_per_update": (times[-1] - times[0]) / (len(times) - 1),
        "updates": len(times),
    }


def run_local(config: dict[str, Any], folder: Path, threads: int) -> dict[str, float]:
    """The job under ``accelerate launch`` with two processes on this machine."""
    spec, stamps = folder / "config.json", folder / "local-stamps.json"
    spec.write_text(json.dumps(config))
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"),
        *("--num_processes", str(WORKERS), str(Path(__file__).resolve())),
        *("--rank", str(spec), "--output", str(folder / "local"), "--stamps", str(stamps)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    began = time.time()
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    return _summary(began, json.loads(stamps.read_text()))


def run_ray(config: dict[str, Any], folder: Path, threads: int) -> dict[str, float]:
    """The job as a Ray Train job of two workers, one on each node of a local 2-node cluster."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    began = time.time()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    ray.init(address=cluster.address, runtime_env={"env_vars": env}, log_to_driver=False)
    cluster_seconds = time.time() - began
    stamps = folder / "ray-stamps.json"

    def loop(_: dict[str, Any]) -> None:
        train_and_stamp(config, str(folder / "ray"), str(stamps))

    trainer = TorchTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=WORKERS, placement_strategy="STRICT_SPREAD"),
        run_config=RunConfig(name="ray-overhead", storage_path=str(folder / "ray-train")),
    )
    try:
        submitted = time.time()
        trainer.fit()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        **_summary(submitted, json.loads(stamps.read_text())),
        "cluster_seconds": cluster_seconds,
    }


def main() -> None:
    """Run both and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rank", help=argparse.SUPPRESS)  # internal: one rank, under accelerate
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--stamps", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank:
        _rank_main(args)
        return
    config = job_config(args.steps)
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        folder = Path(tmp)
        local = run_local(config, folder, args.threads)
        print(f"local: {json.dumps(local)}", file=sys.stderr, flush=True)  # kept if Ray fails
        on_ray = run_ray(config, folder, args.threads)
    ratio = on_ray["seconds_per_update"] / local["seconds_per_update"]
    result = {"steps": args.steps, "local": local, "ray": on_ray, "ratio": ratio}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, run in (("local (accelerate, 2 processes)", local), ("ray (2 nodes)", on_ray)):
        print(
            f"{name}: {run['seconds_per_update']:.3f} s/update over {run['updates']} updates; "
            f"start-up {run['startup_seconds']:.1f} s"
        )
    print(f"ray cluster start: {on_ray['cluster_seconds']:.1f} s (not in either number above)")
    print(f"ratio ray / local: {ratio:.2f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
