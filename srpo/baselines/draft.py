"""DRaFT-K and DRaFT-LV (Clark et al., arXiv 2309.17400) on a rectified flow.

DRaFT-K samples the whole chain and backpropagates the reward only through its last ``K``
Euler steps. DRaFT-LV (``K = 1``) lowers the variance of that gradient: the final sample is
noised back to the last step's level ``n`` more times with fresh noise and denoised with one
step each, WITH gradient; the reward gradients of the chain's sample and the ``n`` copies are
summed. The authors' defaults: 50 sampling steps, ``K = 1``, ``n = 2``, loss ``-r``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

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


def draft_chain(
    generator: Generator,
    cond: Conditioning,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """The chain's clean latent, differentiable through its last ``k`` steps only."""
    steps = len(sigmas) - 1
    if not 1 <= k <= steps:
        raise ValueError(f"DRaFT-K needs 1 <= K <= {steps} steps, got K={k}")
    x = euler_rollout(generator, cond, noise, sigmas[: steps - k + 1])
    for i in range(steps - k, steps):
        velocity = generator.velocity(x, levels(sigmas[i], x.shape[0], x), cond)
        x = flow.euler_step(x, velocity, float(sigmas[i]), float(sigmas[i + 1]))
    return x


def renoised_last_step(
    generator: Generator,
    cond: Conditioning,
    x0: torch.Tensor,
    eps: torch.Tensor,
    sigma_last: float,
) -> torch.Tensor:
    """DRaFT-LV's copy: noise ``sg(x0)`` to the last level with ``eps``, one step down with grad."""
    state = flow.add_noise(x0.detach(), eps, sigma_last)
    velocity = generator.velocity(state, levels(sigma_last, state.shape[0], state), cond)
    return flow.euler_step(state, velocity, sigma_last, 0.0)


def draft_update(
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
    """One DRaFT-K (or DRaFT-LV when ``draft_lv_samples > 0``) update.

    Each reward term is backpropagated on its own (the graphs are independent), which is the
    same gradient as one backward of their sum at a fraction of the memory.
    """
    check_batch(prompts, reward_texts)
    if settings.draft_lv_samples and settings.draft_k != 1:
        raise ValueError("DRaFT-LV is defined for K = 1")
    sigmas = schedule(settings.draft_steps, rollout_steps, shift)
    cond = generator.encode_prompts(prompts)
    noise = generator.noise(len(prompts), rng)
    x0 = draft_chain(generator, cond, noise, sigmas, settings.draft_k)
    rewards = score(generator, reward, x0, reward_texts)
    loss = -rewards.mean()
    backward(loss)
    total = loss.item()
    sigma_last = float(sigmas[-2])
    for _ in range(settings.draft_lv_samples):
        eps = generator.noise(len(prompts), rng)
        copy = renoised_last_step(generator, cond, x0, eps, sigma_last)
        extra = -score(generator, reward, copy, reward_texts).mean()
        backward(extra)
        total += extra.item()
    return UpdateStats(total, rewards.detach().float().cpu())
