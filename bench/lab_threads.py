"""The Reward Lab's sampling (8 tiny-world images, 20 steps) on the main thread and in another
thread, as Gradio runs every handler; prints one JSON object.

Two ways, alternated round by round in one process so that the machine's load falls on both
alike: ``torch_threads`` is :func:`srpo.sampling.sample_images` on torch's own intra-op
threads (OpenMP: one team per calling thread), what the Lab did before issue 17;
``split`` is :func:`srpo.lab.sample_lab_images`, which splits the batch over single-threaded
workers (:mod:`srpo.cpu_sampling`). Each is timed on the main thread and in a fresh thread
(after the main thread ran torch, as in the studio); wall and process CPU seconds, medians,
and the 1-minute load average.

    .venv/bin/python bench/lab_threads.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable

from srpo import lab
from srpo.models import load_generator
from srpo.models.tiny import sampling_defaults
from srpo.sampling import sample_images

PROMPT = "a red circle"
SEEDS = list(range(8))


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def in_thread(call: Callable[[], object]) -> tuple[float, float]:
    """:func:`timed` in a fresh thread."""
    found: list[tuple[float, float]] = []
    worker = threading.Thread(target=lambda: found.append(timed(call)))
    worker.start()
    worker.join()
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    generator = load_generator("tiny")
    defaults = sampling_defaults()
    steps, shift = int(defaults["steps"]), float(defaults["shift"])
    ways = {
        "torch_threads": lambda: sample_images(generator, [PROMPT] * 8, SEEDS, steps, shift),
        "split": lambda: lab.sample_lab_images(generator, PROMPT, SEEDS, steps, shift),
    }
    for call in ways.values():  # warm both on both kinds of thread
        call()
        in_thread(call)
    times: dict[str, list[tuple[float, float]]] = {}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, call in ways.items():
            times.setdefault(f"{name}_main", []).append(timed(call))
            times.setdefault(f"{name}_thread", []).append(in_thread(call))
    medians = {
        name: {
            "wall_s": round(statistics.median(w for w, _ in found), 3),
            "cpu_s": round(statistics.median(c for _, c in found), 3),
        }
        for name, found in times.items()
    }
    ratio = medians["torch_threads_thread"]["wall_s"] / medians["torch_threads_main"]["wall_s"]
    print(
        json.dumps(
            {
                "images": len(SEEDS),
                "steps": steps,
                "rounds": args.rounds,
                **medians,
                "torch_threads_thread_over_main": round(ratio, 2),
                "split_thread_over_torch_threads_main": round(
                    medians["split_thread"]["wall_s"] / medians["torch_threads_main"]["wall_s"], 2
                ),
                "load_average_1min": [round(load, 2) for load in loads],
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
