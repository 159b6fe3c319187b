"""One entry point for the trainer: ``baseline_update(method, ...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from srpo.baselines.common import Backward, OptimizerStep, UpdateStats
from srpo.baselines.draft import draft_update
from srpo.baselines.grpo import grpo_update
from srpo.baselines.refl import refl_update
from srpo.models.base import Generator
from srpo.rewards.base import TextImageReward

if TYPE_CHECKING:
    from srpo.config import Baselines

METHODS = ("refl", "draft", "grpo")


def baseline_update(
    method: str,
    generator: Generator,
    reward: TextImageReward,
    prompts: list[str],
    reward_texts: list[str],
    settings: Baselines,
    rollout_steps: int,
    shift: float,
    rng: torch.Generator,
    backward: Backward,
    *,
    optimizer_step: OptimizerStep | None = None,
) -> UpdateStats:
    """Run one update of a baseline, calling ``backward`` on every loss it builds.

    All randomness comes from ``rng``. The trainer then clips and steps the optimizer once.
    ``optimizer_step`` (GRPO only; clip, step, zero the gradients) lets GRPO take DanceGRPO's
    intermediate optimizer steps inside one rollout; without it the rollout accumulates.
    """
    args = (generator, reward, prompts, reward_texts, settings, rollout_steps, shift, rng, backward)
    if method == "refl":
        return refl_update(*args)
    if method == "draft":
        return draft_update(*args)
    if method == "grpo":
        return grpo_update(*args, optimizer_step=optimizer_step)
    raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(METHODS)}")
