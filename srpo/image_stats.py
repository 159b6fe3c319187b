"""Image statistics that reward hacking moves, read from pixels by fixed formulas.

HPS-style rewards are known to drift fine-tunes toward saturated, high-contrast, red/purple
tinted, "oily" images (method.md). These statistics measure that drift independently of any
reward model; the trainer logs them on the fixed evaluation images, and the tiny world's judge
reads its hack drift with :func:`border_cool_cast` (``tiny-biased`` favours a cool cast, a
tint the tiny world's VAE can express; it cannot express a magenta one).
"""

from __future__ import annotations

import torch

from srpo.rewards.base import check_pixels

BORDER = 6
# ITU-R BT.601 luma weights.
LUMA = (0.299, 0.587, 0.114)
# Colour casts as weights on (R, G, B): magenta (R + B) / 2 - G, cool B - R.
MAGENTA = (0.5, -1.0, 0.5)
COOL = (-1.0, 0.0, 1.0)


def _cast_map(pixels: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    check_pixels(pixels)
    weight = torch.tensor(weights, dtype=pixels.dtype, device=pixels.device)
    return (pixels * weight.view(1, 3, 1, 1)).sum(dim=1)


def saturation(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean chroma ``max(rgb) - min(rgb)`` ``[B]``, in [0, 1]."""
    check_pixels(pixels)
    return (pixels.amax(dim=1) - pixels.amin(dim=1)).mean(dim=(1, 2))


def magenta_cast(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean red/purple cast ``(R + B) / 2 - G`` ``[B]``: 0 for grays."""
    return _cast_map(pixels, MAGENTA).mean(dim=(1, 2))


def cool_cast(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean blue/cyan cast ``B - R`` ``[B]``: 0 for grays."""
    return _cast_map(pixels, COOL).mean(dim=(1, 2))


def border_cool_cast(pixels: torch.Tensor, border: int = BORDER) -> torch.Tensor:
    """:func:`cool_cast` of the ``border``-pixel frame only ``[B]``.

    On the tiny world the frame is background, which every style renders neutral: the
    statistic is within 0.02 of 0 under bright and dark light and negative under warm light, so
    a rise at fixed prompts and seeds is drift, not content.
    """
    frame = torch.ones(pixels.shape[-2:], dtype=torch.bool, device=pixels.device)
    frame[border:-border, border:-border] = False
    return _cast_map(pixels, COOL)[:, frame].mean(dim=1)


def high_frequency(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute Laplacian of the luma ``[B]`` (the "oily", over-sharp look)."""
    check_pixels(pixels)
    luma = luminance_map(pixels).unsqueeze(1)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=luma.dtype)
    response = torch.nn.functional.conv2d(luma, kernel.view(1, 1, 3, 3).to(luma.device))
    return response.abs().mean(dim=(1, 2, 3))


def luminance_map(pixels: torch.Tensor) -> torch.Tensor:
    """Luma ``[B, H, W]``."""
    weights = torch.tensor(LUMA, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * weights).sum(dim=1)


def brightness(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean luma ``[B]``."""
    check_pixels(pixels)
    return luminance_map(pixels).mean(dim=(1, 2))


def image_statistics(pixels: torch.Tensor) -> dict[str, float]:
    """Batch means of every statistic, as the monitors log them."""
    return {
        "saturation": saturation(pixels).mean().item(),
        "magenta_cast": magenta_cast(pixels).mean().item(),
        "high_frequency": high_frequency(pixels).mean().item(),
        "brightness": brightness(pixels).mean().item(),
    }


def add_cool_cast(pixels: torch.Tensor, amount: torch.Tensor | float) -> torch.Tensor:
    """Tint toward blue/cyan: ``-amount`` on red, ``+amount`` on blue, clamped.

    ``amount`` is a float or ``[B]``; :func:`cool_cast` of an unclipped gray rises by
    ``2 * amount``.
    """
    amount = torch.as_tensor(amount, dtype=pixels.dtype, device=pixels.device)
    if amount.ndim == 1:
        amount = amount.view(-1, 1, 1, 1)
    direction = torch.tensor(COOL, dtype=pixels.dtype, device=pixels.device)
    return (pixels + amount * direction.view(1, 3, 1, 1)).clamp(0, 1)
