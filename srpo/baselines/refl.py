"""ReFL (Xu et al., ImageReward, NeurIPS 2023) on a rectified flow.

The authors' ``ReFL.py`` samples 40 steps, stops at a random step of the last quarter
(``random.randint(30, 39)``), predicts ``x0`` in one step WITH gradient from there, decodes,
and minimises ``relu(2 - r) * grad_scale`` (``grad_scale`` 1e-3). Here the prediction is the
rectified-flow one-step estimate ``x0 = x_s - s v_hat``. The official script feeds the
integer index instead of the timestep to the UNet (its SDXL script fixes this); we evaluate
the model at the stop level, as the method intends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from srpo import flow
from srpo.baselines.common import (
    Backward,
    UpdateStats,
    check_batch,
    euler_rollout,
    levels,
    schedule,
    score,
)
from srpo.models.base import Conditioning, Generator
from srpo.rewards.base import TextImageReward

if TYPE_CHECKING:
    from srpo.config import Baselines


def refl_stop_range(steps: int, fraction: tuple[float, float]) -> tuple[int, int]:
    """Stop indices ``i`` with ``low*steps <= i < high*steps``, inclusive (40 steps: 30..39)."""
    low, high = fraction
    first = math.ceil(low * steps - 1e-9)
    last = min(math.ceil(high * steps - 1e-9) - 1, steps - 1)
    if first > last:
        raise ValueError(
            f"refl_stop_fraction {tuple(fraction)} holds no step index of a {steps}-step schedule"
        )
    return first, last


@dataclass(frozen=True)
class ReflPrediction:
    """The state at the stop step, the model's velocity there and the one-step ``x0``."""

    state: torch.Tensor
    sigma: torch.Tensor
    velocity: torch.Tensor
    x0_hat: torch.Tensor


def refl_predict(
    generator: Generator,
    cond: Conditioning,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    stop: int,
) -> ReflPrediction:
    """Run ``stop`` Euler steps without grad, then ``x0 = x_s - s v_hat`` with grad."""
    state = euler_rollout(generator, cond, noise, sigmas[: stop + 1])
    sigma = levels(sigmas[stop], state.shape[0], state)
    velocity = generator.velocity(state, sigma, cond)
    return ReflPrediction(state, sigma, velocity, flow.naive_x0(state, velocity, sigma))


def refl_update(
    generator: Generator,
    reward: TextImageReward,
    prompts: Sequence[str],
    reward_texts: Sequence[str],
    settings: Baselines,
    rollout_steps: int,
    shift: float,
    rng: torch.Generator,
    backward: Backward,
) -> UpdateStats:
    """One ReFL update: one stop step for the batch, reward loss backpropagated once."""
    check_batch(prompts, reward_texts)
    sigmas = schedule(settings.refl_steps, rollout_steps, shift)
    first, last = refl_stop_range(len(sigmas) - 1, tuple(settings.refl_stop_fraction))
    cond = generator.encode_prompts(prompts)
    noise = generator.noise(len(prompts), rng)
    stop = int(torch.randint(first, last + 1, (1,), generator=rng))
    prediction = refl_predict(generator, cond, noise, sigmas, stop)
    rewards = score(generator, reward, prediction.x0_hat, reward_texts)
    loss = F.relu(settings.refl_threshold - rewards).mean() * settings.refl_grad_scale
    backward(loss)
    return UpdateStats(loss.item(), rewards.detach().float().cpu())
