"""GRPO as DanceGRPO trains FLUX (Xue et al., arXiv 2505.07818; ``train_grpo_flux.py``).

Each prompt gets a group of samples from the SDE sampler ``flux_step`` (the same initial noise
within a group, fresh SDE noise per sample and step); rewards are normalised within the group
into advantages (clipped to ``adv_clip``). Every sample is then trained on a random
``timestep_fraction`` of its steps (the last step is never trained, as in the official slicing),
one backward per timestep, with the PPO-clipped ratio of the step's Gaussian log-density.

DanceGRPO takes one optimizer step per ``gradient_accumulation_steps`` samples (4 of a group
of 12, so three per rollout, the later ones off-policy where the clip acts). Pass
``optimizer_step`` to reproduce that: it is called between chunks of ``samples_per_step``
samples and the trainer takes the last step. Without it the whole rollout accumulates into the
trainer's one step (the README's "update once per rollout" setting), every ratio is 1 and the
loss is normalised over all samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field

from srpo.baselines.common import check_batch, levels, schedule, score
from srpo.models.base import Conditioning, Generator
from srpo.section import Section
from srpo.update import Backward, Draw, UpdateInputs, UpdateStats, reward_texts


class GRPOConfig(Section):
    """DanceGRPO's FLUX defaults (XueZeyue/DanceGRPO ``scripts/finetune/finetune_flux_grpo.sh``
    with ``fastvideo/train_grpo_flux.py``): ``--sampling_steps 16 --eta 0.3
    --num_generations 12 --timestep_fraction 0.6 --clip_range 1e-4 --adv_clip_max 5.0
    --init_same_noise --gradient_accumulation_steps 4`` (samples per optimiser step, train batch
    1). Its optimiser (lr 1e-5, grad clip 1.0) is GRPO's default in :mod:`srpo.methods`.
    ``steps`` None: the trainer's ``rollout_steps``."""

    steps: int | None = Field(16, ge=2, le=1000)
    group_size: int = Field(12, ge=2, le=64)
    eta: float = Field(0.3, gt=0.0, le=2.0)
    timestep_fraction: float = Field(0.6, gt=0.0, le=1.0)
    clip: float = Field(1e-4, gt=0.0, le=1.0)
    adv_clip: float = Field(5.0, gt=0.0, le=100.0)
    init_same_noise: bool = True
    samples_per_step: int = Field(4, ge=1, le=1024)


def _column(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` sigma as ``[B, 1, ...]`` float32, broadcastable over ``like``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=like.device)
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class SDEStep:
    """One step of the sampler: its Gaussian mean and std, and the drawn sample (if any)."""

    mean: torch.Tensor
    std: torch.Tensor
    sample: torch.Tensor | None
    x0_hat: torch.Tensor


def sde_step(
    x: torch.Tensor,
    velocity: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None = None,
) -> SDEStep:
    """DanceGRPO's ``flux_step`` with ``sde_solver``, in float32.

    Mean: the Euler step plus ``-eta^2/2 * score * (s_next - s)`` with the score estimate
    ``-(x - (1 - s) x0_hat) / s^2`` and ``x0_hat = x - s v``; std ``eta * sqrt(s - s_next)``.
    """
    x, velocity = x.float(), velocity.float()
    s, s_next = _column(sigma, x), _column(sigma_next, x)
    x0_hat = x - s * velocity
    score_estimate = -(x - (1 - s) * x0_hat) / s**2
    mean = x + (s_next - s) * velocity - 0.5 * eta**2 * score_estimate * (s_next - s)
    std = eta * torch.sqrt(s - s_next)
    sample = None if noise is None else mean + std * noise.float()
    return SDEStep(mean, std, sample, x0_hat)


def step_log_prob(sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Gaussian log-density of ``sample`` per element, averaged over all but the batch ``[B]``.

    DanceGRPO drops the normalising constants (they cancel in the ratio); this keeps them.
    """
    log_density = (
        -((sample.float() - mean) ** 2) / (2 * std**2)
        - torch.log(std)
        - 0.5 * math.log(2 * math.pi)
    )
    return log_density.mean(dim=tuple(range(1, log_density.ndim)))


def group_advantages(rewards: torch.Tensor, group_size: int, clip: float) -> torch.Tensor:
    """``(r - mean) / (std + 1e-8)`` within consecutive groups, clipped to ``[-clip, clip]``."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-8)
    return normalised.reshape(-1).clamp(-clip, clip)


def clipped_loss(
    new_log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """Per-sample PPO loss ``max(-A r, -A clamp(r, 1 - c, 1 + c))`` with ``r = exp(new - old)``."""
    ratio = torch.exp(new_log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped)


@dataclass(frozen=True)
class Rollout:
    """Trajectories ``[B, n+1, ...]``, per-step log-probs ``[B, n]`` and final ``x0`` latents."""

    latents: torch.Tensor
    log_probs: torch.Tensor
    x0: torch.Tensor


@torch.no_grad()
def sde_rollout(
    generator: Generator,
    cond: Conditioning,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    eta: float,
    rng: torch.Generator,
) -> Rollout:
    """Sample with :func:`sde_step`; the image is the last step's ``x0_hat``, as in DanceGRPO."""
    x = noise.float()
    batch = x.shape[0]
    latents, log_probs = [x], []
    for i in range(len(sigmas) - 1):
        s, s_next = levels(sigmas[i], batch, x), levels(sigmas[i + 1], batch, x)
        velocity = generator.velocity(x, s, cond)
        fresh = torch.randn(x.shape, generator=rng, dtype=torch.float32).to(x.device)
        step = sde_step(x, velocity, s, s_next, eta, fresh)
        log_probs.append(step_log_prob(step.sample, step.mean, step.std))
        x = step.sample
        latents.append(x)
    return Rollout(torch.stack(latents, 1), torch.stack(log_probs, 1), step.x0_hat)


def policy_log_prob(
    generator: Generator,
    cond: Conditioning,
    rollout: Rollout,
    sigmas: torch.Tensor,
    index: torch.Tensor,
    step: torch.Tensor,
    eta: float,
) -> torch.Tensor:
    """Log-prob under the current model (with grad) of samples ``index`` taking step ``step``."""
    x = rollout.latents[index, step]
    s, s_next = sigmas[step].to(x.device), sigmas[step + 1].to(x.device)
    velocity = generator.velocity(x, s, cond.select(index))
    taken = sde_step(x, velocity, s, s_next, eta)
    return step_log_prob(rollout.latents[index, step + 1], taken.mean, taken.std)


class GRPOUpdate:
    """One DanceGRPO rollout of ``group_size`` samples per prompt and its policy updates.

    The noise is drawn per rank (DanceGRPO seeds each rank apart); with the run's
    ``optimizer_step`` it takes DanceGRPO's intermediate optimiser steps within a rollout.
    """

    def __init__(self, run: UpdateInputs) -> None:
        self.run = run

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        config, generator = self.run.config, self.run.generator
        settings, optimizer_step, rng = config.grpo, self.run.optimizer_step, draw.local
        prompts, reward_texts_ = draw.prompts, reward_texts(config, draw.prompts)
        check_batch(prompts, reward_texts_)
        group = settings.group_size
        sigmas = schedule(settings.steps, config.rollout_steps, config.shift)
        candidates = len(sigmas) - 2
        train_steps = int(candidates * settings.timestep_fraction)
        if train_steps < 1:
            raise ValueError(
                f"GRPO trains no timestep: {candidates} candidate steps x fraction "
                f"{settings.timestep_fraction} < 1; raise grpo.steps or the fraction"
            )
        cond = generator.encode_prompts(prompts).repeat_interleave(group)
        texts = [t for t in reward_texts_ for _ in range(group)]
        total = len(texts)
        if settings.init_same_noise:
            noise = generator.noise(len(prompts), rng).repeat_interleave(group, dim=0)
        else:
            noise = generator.noise(total, rng)
        chunks = torch.arange(total).split(settings.samples_per_step)
        # Roll out in the same chunks the policy pass uses: equal shapes give the same numerics,
        # so the on-policy ratio is 1 (DanceGRPO's README asks for equal batch sizes for this).
        parts = [
            sde_rollout(generator, cond.select(c), noise[c], sigmas, settings.eta, rng)
            for c in chunks
        ]
        rollout = Rollout(
            torch.cat([p.latents for p in parts]),
            torch.cat([p.log_probs for p in parts]),
            torch.cat([p.x0 for p in parts]),
        )
        with torch.no_grad():
            rewards = torch.cat(
                [
                    score(generator, self.run.reward, rollout.x0[c], [texts[i] for i in c])
                    for c in chunks
                ]
            ).float()
        advantages = group_advantages(rewards, group, settings.adv_clip).to(rollout.x0.device)
        order = torch.stack([torch.randperm(candidates, generator=rng) for _ in range(total)])
        logged = []
        for number, chunk in enumerate(chunks):
            if number and optimizer_step is not None:
                optimizer_step()
            norm = (len(chunk) if optimizer_step is not None else total) * train_steps
            for j in range(train_steps):
                taken = order[chunk, j]
                new = policy_log_prob(generator, cond, rollout, sigmas, chunk, taken, settings.eta)
                old = rollout.log_probs[chunk, taken]
                loss = clipped_loss(new, old, advantages[chunk], settings.clip).sum() / norm
                backward(loss)
                logged.append(loss.item())
        mean_loss = sum(logged) / (len(chunks) if optimizer_step is not None else 1)
        return UpdateStats(mean_loss, rewards.detach().cpu())
