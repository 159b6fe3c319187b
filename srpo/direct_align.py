"""Direct-Align (method.md): one model step with gradient from a noised clean latent, then
analytic recovery of the clean latent with the known noise.

The denoise branch evaluates the model at ``s* + d`` and steps down to ``s*``; the inversion
branch evaluates at ``s* - d`` and steps up to ``s*``. Both recover
``x0_hat = (x' - s* eps) / (1 - s*)``, so ``d x0_hat / d v_hat = -+ d / (1 - s*)``.
:func:`srpo_objective` scores the recovered images with the SRP reward and a discount ``k(s*)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from srpo import flow
from srpo.models.base import Conditioning, Generator
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import LossKind, SRPScorer, reward_loss

SigmaSampling = Literal["sigma", "index"]


@dataclass(frozen=True)
class Discount:
    """A discount ``k(s)`` linear in sigma from ``clean`` (s = 0) to ``noisy`` (s = 1)."""

    clean: float
    noisy: float

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.clean + (self.noisy - self.clean) * sigma


@dataclass(frozen=True)
class BranchResult:
    """What one branch returns: the recovered latent and how it was made."""

    x0_hat: torch.Tensor
    velocity: torch.Tensor
    sigma_model: torch.Tensor
    sigma_target: torch.Tensor


def _levels(x0: torch.Tensor, s_star: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(s_star, dtype=torch.float32, device=x0.device).expand(x0.shape[0])


def denoise_branch(
    generator: Generator,
    x0: torch.Tensor,
    eps: torch.Tensor,
    s_star: torch.Tensor | float,
    d: float,
    cond: Conditioning,
) -> BranchResult:
    """Noise to ``s* + d`` without grad, one Euler step down with grad, recover ``x0``."""
    s = _levels(x0, s_star)
    s_model = s + d
    with torch.no_grad():
        x_hi = flow.add_noise(x0, eps, s_model)
    velocity = generator.velocity(x_hi, s_model, cond)
    x_target = flow.euler_step(x_hi, velocity, s_model, s)
    return BranchResult(flow.recover_x0(x_target, eps, s), velocity, s_model, s)


def inversion_branch(
    generator: Generator,
    x0: torch.Tensor,
    eps: torch.Tensor,
    s_star: torch.Tensor | float,
    d: float,
    cond: Conditioning,
) -> BranchResult:
    """Noise to ``s* - d`` without grad, one Euler step up with grad, recover ``x0``."""
    s = _levels(x0, s_star)
    s_model = s - d
    with torch.no_grad():
        x_lo = flow.add_noise(x0, eps, s_model)
    velocity = generator.velocity(x_lo, s_model, cond)
    x_target = flow.euler_step(x_lo, velocity, s_model, s)
    return BranchResult(flow.recover_x0(x_target, eps, s), velocity, s_model, s)


def check_sigma_range(sigma_range: tuple[float, float], d: float) -> None:
    """Raise ``ValueError`` unless ``d < low <= high <= 1 - d`` (both branches stay in (0, 1))."""
    low, high = sigma_range
    if not 0 < low <= high < 1:
        raise ValueError(f"sigma range must satisfy 0 < low <= high < 1, got {sigma_range}")
    if d <= 0:
        raise ValueError(f"slice d must be positive, got {d}")
    if not (d < low and high + d <= 1):
        raise ValueError(
            f"slice d={d} is too large for sigma range {sigma_range}: need d < {low} and "
            f"d <= {1 - high:.4g}"
        )


def sample_target_sigma(
    batch: int,
    sigma_range: tuple[float, float],
    d: float,
    mode: SigmaSampling = "sigma",
    num_steps: int = 25,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``s*`` for each sample.

    ``sigma``: uniform in the range. ``index``: uniform over the sampling schedule's levels
    (``num_steps`` Euler steps with ``shift``) that fall inside the range, as the official
    code draws a timestep index.
    """
    check_sigma_range(sigma_range, d)
    low, high = sigma_range
    if mode == "sigma":
        return low + (high - low) * torch.rand(batch, generator=generator)
    if mode == "index":
        levels = flow.sigma_schedule(num_steps, shift)
        levels = levels[(levels >= low) & (levels <= high)]
        if levels.numel() == 0:
            raise ValueError(
                f"no level of the {num_steps}-step schedule (shift {shift}) lies in {sigma_range}"
            )
        return levels[torch.randint(len(levels), (batch,), generator=generator)]
    raise ValueError(f"sigma sampling must be 'sigma' or 'index', got {mode!r}")


@dataclass(frozen=True)
class DirectAlignSettings:
    """The knobs of one Direct-Align / SRPO update (paper's FLUX defaults)."""

    d: float = 0.022
    discount_denoise: Discount = field(default_factory=lambda: Discount(0.1, 0.25))
    discount_inversion: Discount = field(default_factory=lambda: Discount(0.3, 0.01))
    inversion: bool = True
    loss: LossKind = "negative"
    threshold: float = 0.0


@dataclass
class Objective:
    """Loss to backpropagate and per-branch rewards (detached) for logging."""

    loss: torch.Tensor
    rewards: dict[str, torch.Tensor]
    images: dict[str, torch.Tensor]


def srpo_objective(
    generator: Generator,
    reward: TextImageReward,
    x0: torch.Tensor,
    eps: torch.Tensor,
    cond: Conditioning,
    prompts: Sequence[str],
    s_star: torch.Tensor,
    settings: DirectAlignSettings,
    words: tuple[str, str] | None = None,
) -> Objective:
    """The Direct-Align loss of a batch.

    With control ``words = (positive, negative)`` this is SRPO: the denoise branch maximises
    the SRP reward with ``k_den(s*)`` and, if enabled, the inversion branch maximises the
    swapped reward with ``k_inv(s*)``. Without words it is plain Direct-Align: the denoise
    branch maximises the reward of the prompt itself.
    """
    if words is None and settings.inversion:
        raise ValueError("the inversion branch needs control words (it scores with them swapped)")
    rewards: dict[str, torch.Tensor] = {}
    images: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=x0.device)
    branches = [("denoise", denoise_branch, settings.discount_denoise, False)]
    if settings.inversion:
        branches.append(("inversion", inversion_branch, settings.discount_inversion, True))
    scorer = SRPScorer(reward) if words else None
    for name, branch, discount, swapped in branches:
        result = branch(generator, x0, eps, s_star, settings.d, cond)
        pixels = generator.decode(result.x0_hat)
        if scorer is None:
            value = reward.score(pixels, prompts)
        else:
            k = discount(result.sigma_target).to(pixels.device)
            value = scorer.score(pixels, prompts, words[0], words[1], k, swapped=swapped)
        total = total + reward_loss(value, settings.loss, settings.threshold)
        rewards[name] = value.detach()
        images[name] = pixels.detach()
    return Objective(total, rewards, images)
