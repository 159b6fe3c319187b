"""Training seconds each method needs to reach the same judged shift on the tiny world.

Every method (SRPO, Direct-Align, ReFL, DRaFT-LV, GRPO) fine-tunes the same generator from the
``tiny-demo`` preset: the same prompts, the same reward (SRPO the SRP reward of the preset's
word pair, the others the reward of ``"<positive word>. <prompt>"``), AdamW with the same
weight decay and clip, and the baselines at their authors' defaults (``config.Baselines``).

A callback keeps each method's clock: only the updates count (from the cancel check before an
update to the progress report after it), so checkpoint saves and probes are off the clock. At
growing intervals of that clock it judges a fixed held-out probe set with the checkpoint the
trainer just wrote, and stops the run when the judged positive-attribute rate reaches the
target (the base rate plus ``target_points``) or the method's budget is spent.

Each method races at every learning rate of one shared grid and its row is its best trial, so
no method is held back by a learning rate that suits another one.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from srpo.checkpoints import Checkpoint
from srpo.config import PRESETS, TrainConfig, preset
from srpo.evaluate import EVAL_SEED, EvalSet, eval_set, judged_rates
from srpo.models import apply_checkpoint, generator_for
from srpo.models.base import Generator
from srpo.sampling import sample_images
from srpo.train import Callback, Progress, train

METHODS = ("srpo", "direct_align", "refl", "draft", "grpo")
LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4)
PROBE_GROWTH = 1.15
GOAL_RATIO = 20.0
# DanceGRPO trains one prompt per GPU per rollout (train_batch_size 1), a group of 12 samples.
GRPO_PROMPTS_PER_ROLLOUT = 1


def method_config(
    method: str, lr: float, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The ``tiny-demo`` run of ``method`` at ``lr``, checkpointing every update, never ending."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    fields: dict[str, Any] = {
        "method": method,
        "direct_align": {"inversion": method == "srpo"},
        # The race's target is the judged rate of the positive word's attribute, so the
        # absolute-reward methods score r("<positive>. p") (Direct-Align's prompt augmentation).
        "reward_prefix": None if method == "srpo" else PRESETS["tiny-demo"]["positive_words"][0],
        "optimizer": {"lr": lr},
        "steps": 1_000_000,
        "checkpoint_every": 1,
        "sample_every": 0,
    }
    if method == "grpo":
        fields["batch_size"] = GRPO_PROMPTS_PER_ROLLOUT
    return preset("tiny-demo", **{**fields, **dict(overrides or {})})


def optimizer_steps_per_update(config: TrainConfig) -> int:
    """Optimiser steps in one trainer update (GRPO steps every ``grpo.samples_per_step``)."""
    if config.method != "grpo":
        return 1
    samples = config.batch_size * config.grpo.group_size
    return math.ceil(samples / config.grpo.samples_per_step)


class Judge:
    """Samples a probe set with a checkpoint's weights and returns the tiny-world judge's rates."""

    def __init__(self, config: TrainConfig, data: EvalSet) -> None:
        self.config, self.data = config, data
        self.positive, self.negative = config.positive_words[0], config.negative_words[0]
        self._generator: Generator | None = None

    def __call__(self, checkpoint: Checkpoint | None = None) -> dict[str, float]:
        """Rates of the base model (``None``) or of ``checkpoint``."""
        if self._generator is None or (checkpoint is not None and self.config.lora is not None):
            self._generator = generator_for(self.config)
        if checkpoint is not None:
            apply_checkpoint(self._generator, checkpoint, self.config)
        data = self.data
        images = sample_images(self._generator, data.prompts, data.seeds, data.steps, data.shift)
        return judged_rates(images, data.prompts, self.positive, self.negative)


@dataclass(frozen=True)
class Probe:
    """One judgement of the probe set, at a point of the method's training clock."""

    seconds: float
    cpu_seconds: float
    updates: int
    judged_positive_rate: float
    prompt_fidelity: float


@dataclass
class Race(Callback):
    """Times a method's updates, probes at growing intervals, stops at the target or budget.

    Probes fall on checkpoints (the trainer writes one per update): the first once the clock
    passes ``interval``, then whenever it passes ``max(last + interval, last * growth)``, and
    once more when the budget runs out. ``reached`` turns true at the first probe whose judged
    positive rate is at least ``target``; the next cancel check stops the run.
    """

    judge: Callable[[Checkpoint], dict[str, float]]
    target: float
    budget: float
    interval: float
    growth: float = PROBE_GROWTH
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    updates: int = 0
    reached: bool = False
    probes: list[Probe] = field(default_factory=list)
    _started: tuple[float, float] = (0.0, 0.0)
    _next: float | None = None

    def should_cancel(self) -> bool:
        stop = self.reached or self.seconds >= self.budget
        self._started = (time.perf_counter(), time.process_time())
        return stop

    def on_progress(self, progress: Progress) -> None:
        wall, cpu = self._started
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu
        self.updates = progress.step

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self.probes and self.probes[-1].updates == checkpoint.step:
            return
        due = self.interval if self._next is None else self._next
        if self.seconds < due and self.seconds < self.budget:
            return
        rates = self.judge(checkpoint)
        probe = Probe(
            self.seconds,
            self.cpu_seconds,
            checkpoint.step,
            rates["judged_positive_rate"],
            rates["prompt_fidelity"],
        )
        self.probes.append(probe)
        self.reached = probe.judged_positive_rate >= self.target - 1e-9
        self._next = max(self.seconds + self.interval, self.seconds * self.growth)


class KeepLatest(Callback):
    """Deletes each checkpoint once the next one is written (a race writes one per update)."""

    def __init__(self) -> None:
        self.previous: Path | None = None

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self.previous is not None and self.previous != checkpoint.path:
            shutil.rmtree(self.previous, ignore_errors=True)
        self.previous = checkpoint.path


def race(
    config: TrainConfig,
    judge: Callable[[Checkpoint], dict[str, float]],
    target: float,
    budget: float,
    interval: float,
    workdir: str | Path | None = None,
) -> Race:
    """Train ``config`` in a scratch folder until ``target`` is judged or ``budget`` is spent."""
    callback = Race(judge, target, budget, interval)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        train(config, Path(scratch) / "run", callbacks=[callback, KeepLatest()])
    return callback


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The fastest trial to the target; when none reached it, the highest judged rate.

    Ties go to the smaller learning rate.
    """
    reached = [t for t in trials if t["reached"]]
    if reached:
        return min(reached, key=lambda t: (t["seconds_to_target"], t["lr"]))
    return max(trials, key=lambda t: (t["best_judged_positive_rate"], -t["lr"]))


def race_grid(
    method: str,
    lrs: Sequence[float],
    data: EvalSet,
    target: float,
    budget: float,
    interval: float,
    overrides: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Race ``method`` at every lr of the grid, largest first; its row is the best trial.

    Once one lr reached the target, the next ones get that time as their budget: they count
    only if they are faster.
    """
    trials = []
    for lr in sorted(lrs, reverse=True):
        config = method_config(method, lr, overrides)
        reached = [t["seconds_to_target"] for t in trials if t["reached"]]
        cap = min([budget, *reached])
        run = race(config, Judge(config, data), target, cap, interval, workdir)
        trials.append(summary(run, config, cap))
    best = best_trial(trials)
    keys = ("lr", "reached", "seconds", "updates", "judged_positive_rate", "prompt_fidelity")
    return {**best, "budget_seconds": budget, "trials": [{k: t[k] for k in keys} for t in trials]}


def summary(run: Race, config: TrainConfig, budget: float) -> dict[str, Any]:
    """One method's row: time to target (or the time spent), updates, final judged rates."""
    last = run.probes[-1]
    before = run.probes[-2] if run.reached and len(run.probes) > 1 else None
    per_update = optimizer_steps_per_update(config)
    images = config.batch_size * (config.grpo.group_size if config.method == "grpo" else 1)
    return _rounded(
        {
            "lr": config.adamw()["lr"],
            "reached": run.reached,
            "seconds_to_target": last.seconds if run.reached else None,
            "cpu_seconds_to_target": last.cpu_seconds if run.reached else None,
            "previous_probe_seconds": before.seconds if before else (0.0 if run.reached else None),
            "seconds": run.seconds,
            "cpu_seconds": run.cpu_seconds,
            "budget_seconds": budget,
            "updates": run.updates,
            "optimizer_steps": run.updates * per_update,
            "images_per_update": images,
            "judged_positive_rate": last.judged_positive_rate,
            "best_judged_positive_rate": max(p.judged_positive_rate for p in run.probes),
            "prompt_fidelity": last.prompt_fidelity,
            "probes": len(run.probes),
        }
    )


def speedup(rows: Mapping[str, Mapping[str, Any]], key: str = "seconds") -> dict[str, Any]:
    """GRPO's seconds over SRPO's to the target; a lower bound when GRPO never reached it."""
    srpo, grpo = rows.get("srpo"), rows.get("grpo")
    if srpo is None or grpo is None:
        return {"ratio": None, "lower_bound": False, "note": "needs both srpo and grpo"}
    if not srpo["reached"]:
        return {"ratio": None, "lower_bound": False, "note": "SRPO did not reach the target"}
    grpo_seconds = grpo[f"{key}_to_target"] if grpo["reached"] else grpo[key]
    note = (
        "both reached the target"
        if grpo["reached"]
        else "GRPO did not reach the target within its budget: the ratio is a lower bound"
    )
    ratio = grpo_seconds / max(srpo[f"{key}_to_target"], 1e-9)
    return {"ratio": round(ratio, 2), "lower_bound": not grpo["reached"], "note": note}


def goal_budget(srpo: Mapping[str, Any] | None, floor: float) -> float:
    """``GOAL_RATIO`` times SRPO's seconds to the target, at least ``floor``."""
    if srpo is None or not srpo["reached"]:
        return floor
    return max(floor, GOAL_RATIO * srpo["seconds_to_target"])


def bench_methods(
    methods: Sequence[str] = METHODS,
    lrs: Sequence[float] = LR_GRID,
    budget_seconds: float = 60.0,
    grpo_budget_seconds: float | None = None,
    probe_prompts: int = 48,
    probe_seconds: float = 3.0,
    target_points: float = 30.0,
    threads: int = 1,
    overrides: Mapping[str, Any] | None = None,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Race every method to the same judged shift; one JSON-ready dict (see module doc).

    Every method gets ``budget_seconds`` of update time, except GRPO: ``grpo_budget_seconds``,
    or by default the time that decides the goal, ``GOAL_RATIO`` times SRPO's seconds to the
    target (at least ``budget_seconds``).
    ``overrides`` change the preset of every method (tests point it at a smaller world).
    ``threads`` sets torch's CPU threads.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {', '.join(METHODS)}; got {list(methods)}")
    if not lrs or budget_seconds <= 0 or probe_seconds <= 0:
        raise ValueError("need at least one lr and positive budget and probe seconds")
    began, load_before = time.perf_counter(), os.getloadavg()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reference = method_config(methods[0], lrs[0], overrides)
        data = eval_set(reference, probe_prompts)
        base = Judge(reference, data)()
        target = base["judged_positive_rate"] + target_points / 100
        rows: dict[str, Any] = {}
        for method in methods:
            budget = budget_seconds
            if method == "grpo":
                budget = grpo_budget_seconds or goal_budget(rows.get("srpo"), budget_seconds)
            rows[method] = race_grid(
                method, lrs, data, target, budget, probe_seconds, overrides, workdir
            )
    finally:
        torch.set_num_threads(previous_threads)
    goal = speedup(rows)
    goal["goal"] = GOAL_RATIO
    goal["goal_met"] = goal["ratio"] is not None and goal["ratio"] >= GOAL_RATIO
    return {
        "world": "tiny" if overrides is None else "tiny (overridden)",
        "positive_word": reference.positive_words[0],
        "negative_word": reference.negative_words[0],
        "threads": threads,
        "probe": {
            "prompts": probe_prompts,
            "seed": EVAL_SEED,
            "first_after_seconds": probe_seconds,
            "growth": PROBE_GROWTH,
        },
        "base": _rounded(base),
        "target": {"points": target_points, "judged_positive_rate": round(target, 4)},
        "lr": {
            "grid": sorted(lrs, reverse=True),
            "rule": "every method races at every lr (largest first; later ones get the best "
            "time so far as budget); its row is the fastest to the target, else the highest "
            "judged rate; ties to the smaller lr",
        },
        "methods": rows,
        "grpo_over_srpo": goal,
        "grpo_over_srpo_cpu": speedup(rows, "cpu_seconds"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - began, 1),
    }


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in values.items()}
