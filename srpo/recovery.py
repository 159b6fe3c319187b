"""How well one model step recovers x0: Direct-Align against the naive estimate.

With ``x0 ~ N(0, I)`` and ``eps ~ N(0, I)`` the optimal velocity predictor at level ``s`` is
``E[v | x_s] = c(s) x_s`` with ``c(s) = (2s - 1) / ((1 - s)^2 + s^2)``. Both estimates use the
same state ``x_s`` and the same prediction, so the measured ratio isolates the recovery rule.
"""

from __future__ import annotations

import torch

from srpo import flow


def optimal_velocity(x_s: torch.Tensor, sigma: float) -> torch.Tensor:
    """``E[eps - x0 | x_s]`` for standard normal ``x0`` and ``eps``."""
    return (2 * sigma - 1) / ((1 - sigma) ** 2 + sigma**2) * x_s


def recovery_mse(
    sigma: float, d: float, samples: int = 200_000, dim: int = 16, seed: int = 0
) -> dict[str, float]:
    """Monte-Carlo MSE per dimension of the naive and the Direct-Align (denoise) estimates.

    The model is evaluated at ``sigma``; Direct-Align steps down by ``d`` and recovers at
    ``sigma - d`` with the known noise.
    """
    if not 0 < d < sigma < 1:
        raise ValueError(f"need 0 < d < sigma < 1, got sigma={sigma}, d={d}")
    if samples < 1 or dim < 1:
        raise ValueError(f"samples and dim must be positive, got {samples} and {dim}")
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(samples, dim, generator=gen, dtype=torch.float64)
    eps = torch.randn(samples, dim, generator=gen, dtype=torch.float64)
    x_s = flow.add_noise(x0, eps, sigma)
    v_hat = optimal_velocity(x_s, sigma)
    naive = flow.naive_x0(x_s, v_hat, sigma)
    stepped = flow.euler_step(x_s, v_hat, sigma, sigma - d)
    direct = flow.recover_x0(stepped, eps, sigma - d)
    return {
        "sigma": sigma,
        "d": d,
        "mse_naive": float(((naive - x0) ** 2).mean()),
        "mse_direct_align": float(((direct - x0) ** 2).mean()),
    }
