"""What every baseline shares: the sigma schedule, no-grad rollouts, scoring, batch checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from srpo import flow
from srpo.models.base import Conditioning, Generator
from srpo.rewards.base import TextImageReward


def schedule(steps: int | None, rollout_steps: int, shift: float) -> torch.Tensor:
    """The Euler sigmas of a method: its own step count, or the trainer's when ``None``."""
    return flow.sigma_schedule(rollout_steps if steps is None else steps, shift)


def levels(sigma: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` tensor of sigmas on the latents' device."""
    return torch.as_tensor(sigma, dtype=torch.float32, device=like.device).expand(batch)


@torch.no_grad()
def euler_rollout(
    generator: Generator, cond: Conditioning, x: torch.Tensor, sigmas: torch.Tensor
) -> torch.Tensor:
    """Integrate from ``sigmas[0]`` to ``sigmas[-1]`` without gradients."""
    return flow.euler_sample(lambda z, s: generator.velocity(z, s, cond), x, sigmas)


def score(
    generator: Generator,
    reward: TextImageReward,
    latents: torch.Tensor,
    texts: Sequence[str],
) -> torch.Tensor:
    """Decode latents and score them against ``texts`` (differentiable if the latents are)."""
    return reward.score(generator.decode(latents), list(texts))


def check_batch(prompts: Sequence[str], reward_texts: Sequence[str]) -> None:
    """Raise ``ValueError`` unless there is one reward text per prompt and at least one."""
    if not prompts:
        raise ValueError("a baseline update needs at least one prompt")
    if len(prompts) != len(reward_texts):
        raise ValueError(
            f"one reward text per prompt: got {len(prompts)} prompts, {len(reward_texts)} texts"
        )
