"""DRaFT-K and DRaFT-LV (Clark et al., arXiv 2309.17400) on a rectified flow.

DRaFT-K samples the whole chain and backpropagates the reward only through its last ``K``
Euler steps. DRaFT-LV lowers the variance of DRaFT-1's gradient. As the paper's Algorithm 1
states it (DRaFT-LV branch): the chain is sampled WITHOUT gradient, then its final sample
``sg(x0)`` is noised ``n`` times with fresh noise to the last step's level and denoised with
one step each, WITH gradient, and the ``n`` reward gradients are summed. The chain's own
sample gives no gradient; it is only what the copies are made from. (An independent SD1.5
reimplementation averages only the ``n`` copies the same way; FlowBP's FLUX.2 variant adds the
chain's last step as an extra sample, which is not the paper's algorithm.) The authors'
defaults: 50 sampling steps, ``K = 1``, ``n = 2``, loss ``-r``.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from srpo import flow
from srpo.baselines.common import check_batch, euler_rollout, levels, schedule, score
from srpo.models.base import Conditioning, Generator
from srpo.section import Section
from srpo.update import Backward, Draw, UpdateInputs, UpdateStats, reward_texts


class DRaFTConfig(Section):
    """DRaFT at its authors' defaults (Clark et al. 2023): 50 sampling steps, DRaFT-LV with
    ``k`` 1 and ``lv_samples`` 2 re-noised copies; ``lv_samples`` 0 gives DRaFT-K.
    ``steps`` None: the trainer's ``rollout_steps``."""

    steps: int | None = Field(50, ge=1, le=1000)
    k: int = Field(1, ge=1, le=50)
    lv_samples: int = Field(2, ge=0, le=16)

    @model_validator(mode="after")
    def _consistent(self) -> DRaFTConfig:
        if self.lv_samples and self.k != 1:
            raise ValueError(f"lv_samples: DRaFT-LV is defined for k 1, got k {self.k}")
        if self.steps is not None and self.k > self.steps:
            raise ValueError(f"k {self.k} exceeds steps {self.steps}")
        return self


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


class DRaFTUpdate:
    """One DRaFT-K update, or DRaFT-LV's when ``lv_samples > 0``.

    Each reward term is backpropagated on its own (the graphs are independent), which is the
    same gradient as one backward of their sum at a fraction of the memory.
    """

    def __init__(self, run: UpdateInputs) -> None:
        self.run = run

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        config, generator, reward = self.run.config, self.run.generator, self.run.reward
        settings = config.draft
        prompts, texts = draw.prompts, reward_texts(config, draw.prompts)
        check_batch(prompts, texts)
        sigmas = schedule(settings.steps, config.rollout_steps, config.shift)
        cond = generator.encode_prompts(prompts)
        noise = generator.noise(len(prompts), draw.shared)
        if not settings.lv_samples:
            x0 = draft_chain(generator, cond, noise, sigmas, settings.k)
            rewards = score(generator, reward, x0, texts)
            loss = -rewards.mean()
            backward(loss)
            return UpdateStats(loss.item(), rewards.detach().float().cpu())
        x0 = euler_rollout(generator, cond, noise, sigmas)
        with torch.no_grad():
            rewards = score(generator, reward, x0, texts)
        total, sigma_last = 0.0, float(sigmas[-2])
        for _ in range(settings.lv_samples):
            eps = generator.noise(len(prompts), draw.shared)
            copy = renoised_last_step(generator, cond, x0, eps, sigma_last)
            loss = -score(generator, reward, copy, texts).mean()
            backward(loss)
            total += loss.item()
        return UpdateStats(total, rewards.float().cpu())
