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
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from srpo import flow
from srpo.baselines.common import check_batch, euler_rollout, levels, schedule, score
from srpo.models.base import Conditioning, Generator
from srpo.section import Section
from srpo.update import Backward, Draw, UpdateInputs, UpdateStats, reward_texts

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def refl_stop_range(steps: int, fraction: tuple[float, float]) -> tuple[int, int]:
    """Stop indices ``i`` with ``low*steps <= i < high*steps``, inclusive (40 steps: 30..39)."""
    low, high = fraction
    first = math.ceil(low * steps - 1e-9)
    last = min(math.ceil(high * steps - 1e-9) - 1, steps - 1)
    if first > last:
        raise ValueError(
            f"refl.stop_fraction {tuple(fraction)} holds no step index of a {steps}-step schedule"
        )
    return first, last


class ReFLConfig(Section):
    """ReFL at its authors' defaults (THUDM/ImageReward ``ReFL.py``).

    ``set_timesteps(40)``, stop step ``random.randint(30, 39)`` (the last quarter), loss
    ``relu(2 - r) * grad_scale`` with ``grad_scale`` 1e-3. ``steps`` None: the trainer's
    ``rollout_steps``.
    """

    steps: int | None = Field(40, ge=2, le=1000)
    stop_fraction: tuple[Unit, Unit] = (0.75, 1.0)
    threshold: float = Field(2.0, ge=-100.0, le=100.0)
    grad_scale: float = Field(1e-3, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _stops(self) -> ReFLConfig:
        low, high = self.stop_fraction
        if not low < high:
            raise ValueError(
                f"stop_fraction must be (low, high) with low < high, got {(low, high)}"
            )
        if self.steps is not None:
            refl_stop_range(self.steps, (low, high))
        return self


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


class ReFLUpdate:
    """One ReFL update: one stop step for the batch, reward loss backpropagated once."""

    def __init__(self, run: UpdateInputs) -> None:
        self.run = run

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        config, generator = self.run.config, self.run.generator
        settings = config.refl
        prompts, texts = draw.prompts, reward_texts(config, draw.prompts)
        check_batch(prompts, texts)
        sigmas = schedule(settings.steps, config.rollout_steps, config.shift)
        first, last = refl_stop_range(len(sigmas) - 1, tuple(settings.stop_fraction))
        cond = generator.encode_prompts(prompts)
        noise = generator.noise(len(prompts), draw.shared)
        stop = int(torch.randint(first, last + 1, (1,), generator=draw.shared))
        prediction = refl_predict(generator, cond, noise, sigmas, stop)
        rewards = score(generator, self.run.reward, prediction.x0_hat, texts)
        loss = F.relu(settings.threshold - rewards).mean() * settings.grad_scale
        backward(loss)
        return UpdateStats(loss.item(), rewards.detach().float().cpu())
