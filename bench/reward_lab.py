"""Reward Lab preview speed on the shipped tiny world; prints JSON.

Timed: one ``srpo.lab.preview`` of 8 tiny-world images with 3 text conditions (plain,
positive, negative) and the saliency map (wall-clock median and p90, and the median CPU
seconds of the process, which other load on the machine inflates less). Reported
separately: sampling the 8 images, and the preview with the reward's text cache cleared
before each call (every text encoded), and the 1-minute load average of the machine.

    .venv/bin/python bench/reward_lab.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from srpo import lab
from srpo.models import load_generator
from srpo.models.tiny import sampling_defaults
from srpo.rewards import load_reward

PROMPT = "a red circle"
SEEDS = list(range(8))


def _timed(call, repeats: int, before=None, clock=time.perf_counter) -> list[float]:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = clock()
        call()
        times.append(clock() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reward, generator = load_reward("tiny"), load_generator("tiny")
    defaults = sampling_defaults()
    steps, shift = int(defaults["steps"]), float(defaults["shift"])

    def sample() -> torch.Tensor:
        return lab.sample_lab_images(generator, PROMPT, SEEDS, steps, shift)

    pixels = sample()
    sampling = _timed(sample, 3)

    def run() -> lab.LabPreview:
        return lab.preview(reward, pixels, PROMPT, ["photo"], ["painting"], k=0.1)

    _timed(run, args.warmup)
    warm = _timed(run, args.repeats)
    cpu = _timed(run, args.repeats, clock=time.process_time)
    cold = _timed(run, args.repeats, before=reward._text_cache.clear)
    result = run()
    assert result.saliency is not None and result.saliency.shape == (8, 64, 64)
    print(
        json.dumps(
            {
                "images": len(SEEDS),
                "text_conditions": 3,
                "saliency": True,
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "preview_median_s": round(statistics.median(warm), 4),
                "preview_p90_s": round(sorted(warm)[int(0.9 * (len(warm) - 1))], 4),
                "preview_cpu_median_s": round(statistics.median(cpu), 4),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "preview_uncached_text_median_s": round(statistics.median(cold), 4),
                "sampling_median_s": round(statistics.median(sampling), 4),
                "sampling_steps": steps,
                "target_s": 0.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
