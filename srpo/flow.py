"""Rectified-flow math in the notation of method.md.

A noisy state is ``x_s = (1 - s) * x0 + s * eps`` with noise level ``s`` in [0, 1]; the
true velocity is ``v = eps - x0``. Sampling runs Euler steps from ``s = 1`` down to 0.
Every function broadcasts a per-sample sigma of shape ``[B]`` (or a float) over the
remaining dimensions of the state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

# Told (steps done, steps in all) as a sampler advances.
StepCallback = Callable[[int, int], None]

Sigma = torch.Tensor | float


def _expand(sigma: Sigma, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a float or a ``[B]`` tensor of sigmas over a ``[B, ...]`` state."""
    if not isinstance(sigma, torch.Tensor):
        return torch.tensor(sigma, dtype=like.dtype, device=like.device)
    sigma = sigma.to(dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(sigma.shape[0], *([1] * (like.ndim - 1)))


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """FLUX/SD3 time shift ``s' = shift * s / (1 + (shift - 1) * s)``; identity at shift 1."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def sigma_schedule(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """The ``num_steps + 1`` sigmas of an Euler sampler: ``linspace(1, 0)`` through the shift."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    return time_shift(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), shift).float()


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """The noisy state ``(1 - s) x0 + s eps`` for a given noise ``eps``."""
    s = _expand(sigma, x0)
    return (1 - s) * x0 + s * eps


def true_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The velocity ``eps - x0`` that a perfect predictor returns at every level."""
    return eps - x0


def euler_step(x: torch.Tensor, velocity: torch.Tensor, sigma_from: Sigma, sigma_to: Sigma):
    """One Euler step ``x + (s_to - s_from) v``: down when ``s_to < s_from``, up otherwise."""
    delta = _expand(sigma_to, x) - _expand(sigma_from, x)
    return x + delta * velocity


def recover_x0(x_s: torch.Tensor, eps: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Analytic recovery ``x0 = (x_s - s eps) / (1 - s)`` given the noise that made ``x_s``."""
    s = _expand(sigma, x_s)
    return (x_s - s * eps) / (1 - s)


def naive_x0(x_s: torch.Tensor, velocity: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """The one-step estimate ``x_s - s v_hat`` used by ReFL-style methods."""
    return x_s - _expand(sigma, x_s) * velocity


def recovery_error_ratio(sigma: float, d: float) -> float:
    """Error of Direct-Align recovery relative to the naive estimate, ``d / (s (1 - s + d))``.

    ``sigma`` is the level at which the model is evaluated (``s* + d`` for the denoise branch).
    """
    return d / (sigma * (1 - sigma + d))


def euler_sample(
    velocity_fn, x: torch.Tensor, sigmas: torch.Tensor, on_step: StepCallback | None = None
) -> torch.Tensor:
    """Integrate ``dx/ds = v`` along ``sigmas`` (descending) with Euler steps.

    ``velocity_fn(x, sigma)`` receives a ``[B]`` tensor of the current level;
    ``on_step(done, total)`` is told after each step (a progress bar's feed).
    """
    batch, total = x.shape[0], len(sigmas) - 1
    for done, (sigma_from, sigma_to) in enumerate(itertools.pairwise(sigmas), start=1):
        level = sigma_from.expand(batch).to(x.device)
        x = euler_step(x, velocity_fn(x, level), float(sigma_from), float(sigma_to))
        if on_step is not None:
            on_step(done, total)
    return x
