"""Direct-Align and SRPO (method.md): one model step with gradient from a noised clean latent,
then analytic recovery of the clean latent with the known noise.

The denoise branch evaluates the model at ``s* + d`` and steps down to ``s*``; the inversion
branch evaluates at ``s* - d`` and steps up to ``s*``. Both recover
``x0_hat = (x' - s* eps) / (1 - s*)``, so ``d x0_hat / d v_hat = -+ d / (1 - s*)``. All of
this flow math is float32 (or wider): the model's dtype applies only inside its forward.
:func:`srpo_objective` scores the recovered images with the SRP reward and the discount ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from srpo import flow
from srpo.models.base import Conditioning, Generator, cfg_scale_set
from srpo.rewards.base import Reward
from srpo.rewards.srp import ControlWords, LossKind, SRPScorer, reward_loss
from srpo.section import Section
from srpo.update import Backward, Draw, UpdateInputs, UpdateStats, reward_texts

SigmaSampling = Literal["sigma", "index"]
Direction = Literal["denoise", "inversion"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Discount(Section):
    """``k(s)``, linear in sigma across the training window: ``low`` at its clean end.

    The official code indexes ``linspace(low, high)`` by position in the window (sigma
    0.75..0.96 for FLUX), not across sigma 0..1. ``k`` may be negative: the maintainers suggest
    a negative early ``k_den`` against reward hacking.
    """

    low: float = Field(ge=-10.0, le=10.0)
    high: float = Field(ge=-10.0, le=10.0)

    def at(self, sigma: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
        """``k`` at each sigma; levels outside the window take the nearer end's value."""
        lo, hi = window
        position = ((sigma - lo) / (hi - lo)).clamp(0.0, 1.0) if hi > lo else sigma * 0
        return self.low + (self.high - self.low) * position


class RewardMultiplier(Section):
    """A factor on each branch's reward in the loss: ``scale * w(t)``, ``t`` the position of
    ``s*`` in the training window (0 at its clean end, 1 at its noisy end) and
    ``w(t) = shift t / (1 + (shift - 1) t)`` (``shift`` unset: ``w = 1``, a constant ``scale``).

    The official Qwen-Image run (``fastvideo/SRPO_Qwen.py``) maximises
    ``discount[index] * SRP_PickScore / 20`` with ``discount = sd3_time_shift(3,
    linspace(0, 1, 101))``: ``scale`` 0.05 and ``shift`` 3 (its ``index / 100`` and ``t`` here
    differ by under 0.01). Logged rewards stay unscaled.
    """

    scale: float = Field(1.0, gt=0.0, le=1000.0)
    shift: float | None = Field(None, gt=0.0, le=100.0)

    def at(self, sigma: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
        """The factor at each ``s*`` (levels outside the window take the nearer end's)."""
        lo, hi = window
        t = ((sigma - lo) / (hi - lo)).clamp(0.0, 1.0) if hi > lo else torch.ones_like(sigma)
        if self.shift is None:
            return torch.full_like(t, self.scale)
        return self.scale * self.shift * t / (1 + (self.shift - 1) * t)


def check_sigma_range(
    sigma_range: tuple[float, float], d: float, slice_clamp: bool = False
) -> None:
    """Raise ``ValueError`` unless ``d < low <= high <= 1 - d`` (both branches stay in (0, 1));
    with ``slice_clamp`` the slice shrinks near the ends instead, so only ``low < high``."""
    low, high = sigma_range
    if not 0 < low <= high < 1:
        raise ValueError(f"sigma range must satisfy 0 < low <= high < 1, got {sigma_range}")
    if d <= 0:
        raise ValueError(f"slice d must be positive, got {d}")
    if slice_clamp:
        if low == high:
            raise ValueError(f"slice_clamp needs a window with low < high, got {sigma_range}")
        return
    if not (d < low and high + d <= 1):
        raise ValueError(
            f"slice d={d} is too large for sigma range {sigma_range}: need d < {low} and "
            f"d <= {1 - high:.4g}"
        )


class DirectAlignConfig(Section):
    """Direct-Align / SRPO settings (the paper's FLUX.1-dev defaults).

    ``sigma_range`` is the training window of ``s*`` (official: schedule levels 5..25 of 50
    at shift 3, sigma 0.75..0.96), ``d`` the slice (official: 10 % of the window plus one
    position, about 0.022). ``discount_denoise`` is read at ``s*``, ``discount_inversion`` at
    the inversion branch's own level ``s* - d``, as the official code indexes them.

    ``slice_clamp`` shrinks the slice near the window's ends to ``min(d, s* - low, high - s*)``,
    so that ``s* + d`` and ``s* - d`` stay in the window, as the official code's
    ``k = min(k, index, N - index)`` does (the Qwen-Image run: window 0.2..0.9, ``d`` at most
    0.29, 41 of its 100 levels); off, ``d`` is fixed and must fit beside the window.
    ``reward_multiplier`` scales the reward in the loss by where ``s*`` lies
    (:class:`RewardMultiplier`); unset, the factor is 1.
    """

    sigma_range: tuple[Unit, Unit] = (0.75, 0.96)
    sigma_sampling: SigmaSampling = "sigma"
    d: float = Field(0.022, gt=0.0, lt=0.5)
    slice_clamp: bool = False
    reward_multiplier: RewardMultiplier | None = None
    discount_denoise: Discount = Discount(low=0.1, high=0.25)
    discount_inversion: Discount = Discount(low=0.3, high=0.01)
    inversion: bool = True
    loss: LossKind = "negative"
    threshold: float = Field(0.0, ge=-100.0, le=100.0)

    @model_validator(mode="after")
    def _window(self) -> DirectAlignConfig:
        check_sigma_range(tuple(self.sigma_range), self.d, self.slice_clamp)
        return self

    def slice_at(self, s_star: torch.Tensor) -> torch.Tensor:
        """The slice ``d`` of each ``s*``: fixed, or clamped into the window (``slice_clamp``)."""
        if not self.slice_clamp:
            return torch.full_like(s_star, self.d)
        low, high = self.sigma_range
        return torch.minimum(
            torch.minimum(s_star - low, high - s_star), torch.full_like(s_star, self.d)
        )

    def multiplier_at(self, s_star: torch.Tensor) -> torch.Tensor:
        """The reward's factor in the loss at each ``s*`` (1 without a multiplier)."""
        if self.reward_multiplier is None:
            return torch.ones_like(s_star)
        return self.reward_multiplier.at(s_star, tuple(self.sigma_range))

    def discount(self, direction: Direction) -> Discount:
        """The discount of a branch."""
        return self.discount_denoise if direction == "denoise" else self.discount_inversion


@dataclass(frozen=True)
class BranchResult:
    """What one branch returns: the recovered latent and how it was made."""

    x0_hat: torch.Tensor
    velocity: torch.Tensor
    sigma_model: torch.Tensor
    sigma_target: torch.Tensor


def branch(
    generator: Generator,
    x0: torch.Tensor,
    eps: torch.Tensor,
    s_star: torch.Tensor | float,
    d: torch.Tensor | float,
    cond: Conditioning,
    direction: Direction,
) -> BranchResult:
    """Noise to ``s* + d`` (denoise) or ``s* - d`` (inversion) without grad, take one Euler
    step to ``s*`` with grad, and recover ``x0`` with the known noise (``d`` a float or one
    slice per sample)."""
    if direction not in ("denoise", "inversion"):
        raise ValueError(f"direction must be 'denoise' or 'inversion', got {direction!r}")
    dtype = torch.promote_types(x0.dtype, torch.float32)
    x0, eps = x0.to(dtype), eps.to(dtype)
    s = torch.as_tensor(s_star, dtype=dtype, device=x0.device).expand(x0.shape[0])
    d = torch.as_tensor(d, dtype=dtype, device=x0.device).expand(x0.shape[0])
    s_model = s + d if direction == "denoise" else s - d
    with torch.no_grad():
        x_model = flow.add_noise(x0, eps, s_model)
    velocity = generator.velocity(x_model, s_model, cond).to(dtype)
    x_target = flow.euler_step(x_model, velocity, s_model, s)
    return BranchResult(flow.recover_x0(x_target, eps, s), velocity, s_model, s)


def sample_target_sigma(
    batch: int,
    sigma_range: tuple[float, float],
    d: float,
    mode: SigmaSampling = "sigma",
    num_steps: int = 25,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    slice_clamp: bool = False,
) -> torch.Tensor:
    """Draw ``s*`` for each sample.

    ``sigma``: uniform in the range. ``index``: uniform over the sampling schedule's levels
    (``num_steps`` Euler steps with ``shift``) that fall inside the range, as the official
    code draws a timestep index; with ``slice_clamp`` only levels strictly inside it (at an
    end the clamped slice would be 0).
    """
    check_sigma_range(sigma_range, d, slice_clamp)
    low, high = sigma_range
    if mode == "sigma":
        return low + (high - low) * torch.rand(batch, generator=generator)
    if mode == "index":
        levels = flow.sigma_schedule(num_steps, shift)
        if slice_clamp:
            levels = levels[(levels > low) & (levels < high)]
        else:
            levels = levels[(levels >= low) & (levels <= high)]
        if levels.numel() == 0:
            raise ValueError(
                f"no level of the {num_steps}-step schedule (shift {shift}) lies in {sigma_range}"
            )
        return levels[torch.randint(len(levels), (batch,), generator=generator)]
    raise ValueError(f"sigma sampling must be 'sigma' or 'index', got {mode!r}")


@dataclass
class Objective:
    """Loss (detached if the branches were backpropagated as they went) and per-branch
    rewards and images (detached) for logging."""

    loss: torch.Tensor
    rewards: dict[str, torch.Tensor]
    images: dict[str, torch.Tensor]


def srpo_objective(
    generator: Generator,
    reward: Reward,
    x0: torch.Tensor,
    eps: torch.Tensor,
    cond: Conditioning,
    prompts: Sequence[str],
    s_star: torch.Tensor,
    settings: DirectAlignConfig,
    words: tuple[str, str] | None = None,
    backward: Backward | None = None,
) -> Objective:
    """The Direct-Align loss of a batch.

    With control ``words = (positive, negative)`` this is SRPO: the denoise branch maximises
    the SRP reward with ``k_den(s*)`` and, if enabled, the inversion branch maximises the
    swapped reward with ``k_inv(s* - d)``. Without words it is plain Direct-Align: the denoise
    branch maximises the reward of ``prompts`` as given. With ``backward`` each branch is
    backpropagated as soon as it is scored (two backward passes, as the official code does,
    so only one branch's graph is alive at a time); the gradient equals that of the sum.
    Each branch's loss maximises its reward times ``settings.multiplier_at(s*)``.
    """
    if words is None and settings.inversion:
        raise ValueError("the inversion branch needs control words (it scores with them swapped)")
    scorer = SRPScorer(reward) if words else None
    total, rewards, images = torch.zeros((), device=x0.device), {}, {}
    dtype = torch.promote_types(x0.dtype, torch.float32)
    s_star = torch.as_tensor(s_star, dtype=dtype, device=x0.device).expand(x0.shape[0])
    d, multiplier = settings.slice_at(s_star), settings.multiplier_at(s_star)
    for direction in ("denoise", "inversion") if settings.inversion else ("denoise",):
        result = branch(generator, x0, eps, s_star, d, cond, direction)
        pixels = generator.decode(result.x0_hat)
        if scorer is None:
            value = reward.score(pixels, prompts)
        else:
            # Official code: discount[mid] for the denoise branch (its target s*), and
            # discount_inversion[mid - k] for the inversion branch (its own level s* - d).
            level = result.sigma_target if direction == "denoise" else result.sigma_model
            k = settings.discount(direction).at(level, tuple(settings.sigma_range))
            swapped = direction == "inversion"
            value = scorer.score(pixels, prompts, *words, k.to(pixels.device), swapped=swapped)
        # The multiplier weighs what the loss maximises; the logged reward stays unscaled.
        loss = reward_loss(value * multiplier.to(value), settings.loss, settings.threshold)
        if backward is not None:
            backward(loss)
            loss = loss.detach()
        total = total + loss
        rewards[direction], images[direction] = value.detach(), pixels.detach()
    return Objective(total, rewards, images)


class DirectAlignUpdate:
    """One SRPO / Direct-Align micro-batch, top to bottom."""

    def __init__(self, run: UpdateInputs) -> None:
        self.run = run
        self.config = config = run.config
        self.words = None
        if config.method == "srpo":
            self.words = ControlWords.of(
                config.positive_words, config.negative_words, config.word_mode
            )

    def clean_latents(self, draw: Draw) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """``(x0, eps, prompts)``: a rollout from the shared noise (at the rollout's guidance
        and CFG), or real images + fresh noise.

        An uncaptioned real image takes the empty prompt (the config can require captions).
        """
        cfg, generator, pool = self.config, self.run.generator, self.run.pool
        eps = generator.noise(cfg.batch_size, draw.shared)
        if pool is None:
            # The rollout at its own CFG: the prompts' empty-prompt branch is encoded with it.
            with cfg_scale_set(generator, cfg.rollout_cfg_scale):
                cond = generator.encode_prompts(draw.prompts)
                x0 = generator.sample(
                    cond, eps, cfg.rollout_steps, cfg.shift, cfg.effective_rollout_guidance
                )
            return x0, eps, draw.prompts
        index = [draw.rank.randrange(len(pool)) for _ in range(cfg.batch_size)]
        captions = [pool.captions[i] or "" for i in index]
        return pool.latents[index].to(eps), eps, captions

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        cfg, settings = self.config, self.config.direct_align
        # 1. The clean latent and its noise prior (the same noise on every rank).
        x0, eps, prompts = self.clean_latents(draw)
        cond = self.run.generator.encode_prompts(prompts)
        # 2. The target level s*, drawn per rank: one update over N ranks covers N levels.
        s_star = sample_target_sigma(
            cfg.batch_size,
            tuple(settings.sigma_range),
            settings.d,
            settings.sigma_sampling,
            cfg.rollout_steps,
            cfg.shift,
            generator=draw.local,
            slice_clamp=settings.slice_clamp,
        ).to(x0.device)
        # 3. This step's control words (SRPO) or the absolute reward's texts (Direct-Align).
        words = self.words.pick(step, cfg.seed) if self.words else None
        texts = prompts if words else reward_texts(cfg, prompts)
        # 4. Both branches at the train guidance, each scored and backpropagated.
        objective = srpo_objective(
            self.run.generator,
            self.run.reward,
            x0,
            eps,
            cond,
            texts,
            s_star,
            settings,
            words,
            backward,
        )
        return UpdateStats(objective.loss.item(), objective.rewards["denoise"].float().cpu())
