"""Sampling on the CPU from any thread: one part of the batch per core, each on a long-lived
worker whose torch runs one intra-op thread.

Why not torch's own threads: PyTorch's CPU kernels parallelise with OpenMP (libgomp), which
keeps one team of threads per calling thread. With a single team in the process, its threads
spin up to about 300,000 times at every barrier: fast on idle cores, many times slower when
other processes hold them (the team burns its time slices waiting for a preempted peer).
Once a second thread has its own team, as every Gradio handler thread beside the main thread
does, libgomp counts more team threads than cores and spins only ~100 times before sleeping
on a futex, so each of a sampler's thousands of small parallel regions pays a wake-up: the
tiny world's 8 images sampled 2.3 times slower in a handler thread than on the main thread.
Workers with one intra-op thread never start a parallel region, so neither happens, and the
parts run side by side whatever the load.
"""

from __future__ import annotations

import contextvars
import math
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import torch

from srpo.flow import StepCallback
from srpo.models.base import Generator
from srpo.sampling import sample_images, seeded_noise

_lock = threading.Lock()
_workers: list[_Worker] = []
os.register_at_fork(after_in_child=_workers.clear)  # a forked child has none of the threads


class _Worker(threading.Thread):
    """A daemon thread that runs submitted calls with one torch intra-op thread."""

    def __init__(self, index: int) -> None:
        super().__init__(name=f"srpo-sampler-{index}", daemon=True)
        self.ready = threading.Event()
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future]] = queue.SimpleQueue()

    def run(self) -> None:
        torch.get_num_threads()  # torch's per-thread setup first, so it keeps the one below
        torch.set_num_threads(1)
        self.ready.set()
        while True:
            call, future = self._calls.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:  # handed to the caller through the future
                    future.set_exception(error)

    def submit(self, call: Callable[[], object]) -> Future:
        """Run ``call`` (in a copy of the caller's context) on this worker."""
        future: Future = Future()
        context = contextvars.copy_context()
        self._calls.put((lambda: context.run(call), future))
        return future


def workers(count: int) -> list[_Worker]:
    """``count`` single-threaded workers, started on first use and kept for the process."""
    with _lock:
        if len(_workers) < count:
            default = torch.get_num_threads()
            started = [_Worker(n) for n in range(len(_workers), count)]
            for worker in started:
                worker.start()
                worker.ready.wait()
            # set_num_threads also sets the default of threads that start torch later:
            # give them back the caller's count (each worker keeps its own one thread)
            torch.set_num_threads(default)
            _workers.extend(started)
        return _workers[:count]


def parts_for(count: int, size: int) -> list[range]:
    """``size`` items cut into at most ``count`` contiguous parts of near-equal length."""
    step = math.ceil(size / max(1, min(count, size)))
    return [range(start, min(start + step, size)) for start in range(0, size, step)]


def sample_split(
    generator: Generator,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    shift: float,
    on_step: StepCallback | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """:func:`srpo.sampling.sample_images`, with a CPU generator's batch split over
    ``threads`` single-threaded workers (default: the caller's torch thread count).
    ``on_step(done, total)`` counts the denoising steps of all parts together, called from the
    workers one at a time, in the caller's context. A GPU generator, one image or one thread
    samples as :func:`sample_images` does, on the calling thread."""
    count = torch.get_num_threads() if threads is None else threads
    on_cpu = seeded_noise(generator, list(seeds[:1])).device.type == "cpu" if seeds else False
    if count < 2 or len(seeds) < 2 or not on_cpu:
        return sample_images(generator, prompts, seeds, steps, shift, on_step=on_step)
    if len(prompts) != len(seeds):
        raise ValueError(f"one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    parts = parts_for(count, len(seeds))
    generator.encode_prompts(list(dict.fromkeys(prompts)))  # a lazy text encoder loads once
    done = [0] * len(parts)
    totals = [0] * len(parts)
    told = threading.Lock()

    def part(index: int, chosen: range) -> torch.Tensor:
        def heard(step: int, total: int) -> None:
            with told:
                done[index], totals[index] = step, total
                if on_step is not None:  # a part not heard from yet counts as long as the others
                    on_step(sum(done), sum(t or max(totals) for t in totals))

        return sample_images(
            generator,
            [prompts[n] for n in chosen],
            [seeds[n] for n in chosen],
            steps,
            shift,
            on_step=heard,
        )

    futures = [
        worker.submit(lambda n=n, chosen=chosen: part(n, chosen))
        for n, (worker, chosen) in enumerate(zip(workers(len(parts)), parts, strict=True))
    ]
    return torch.cat([future.result() for future in futures])
