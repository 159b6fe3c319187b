"""Image statistics that reward hacking moves, read from pixels by fixed formulas.

HPS-style rewards are known to drift fine-tunes toward saturated, high-contrast, red/purple
tinted, "oily" images (method.md). These statistics measure that drift independently of any
reward model; the trainer logs them on the fixed evaluation images, and the tiny world's judge
reads its hack drift with :func:`border_cast`.
"""

from __future__ import annotations

import torch

from srpo.rewards.base import check_pixels

BORDER = 6
# ITU-R BT.601 luma weights.
LUMA = (0.299, 0.587, 0.114)


def saturation(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean chroma ``max(rgb) - min(rgb)`` ``[B]``, in [0, 1]."""
    check_pixels(pixels)
    return (pixels.amax(dim=1) - pixels.amin(dim=1)).mean(dim=(1, 2))


def magenta_cast(pixels: torch.Tensor) -> torch.Tensor:
    """Per-image mean red/purple cast ``(R + B) / 2 - G`` ``[B]``: 0 for grays."""
    check_pixels(pixels)
    red, green, blue = pixels.unbind(dim=1)
    return ((red + blue) / 2 - green).mean(dim=(1, 2))


def border_cast(pixels: torch.Tensor, border: int = BORDER) -> torch.Tensor:
    """:func:`magenta_cast` of the ``border``-pixel frame only ``[B]``.

    On the tiny world the frame is background, which every style renders neutral: the
    statistic is within 0.02 of 0 under bright and dark light and negative under warm light (down
    to -0.1 on white), so a rise at fixed prompts and seeds is drift, not content.
    """
    check_pixels(pixels)
    frame = torch.ones(pixels.shape[-2:], dtype=torch.bool, device=pixels.device)
    frame[border:-border, border:-border] = False
    red, green, blue = (channel[:, frame] for channel in pixels.unbind(dim=1))
    return ((red + blue) / 2 - green).mean(dim=1)


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


def add_magenta_cast(pixels: torch.Tensor, amount: torch.Tensor | float) -> torch.Tensor:
    """Tint toward red/purple: ``+amount`` on red and blue, ``-amount`` on green, clamped.

    ``amount`` is a float or ``[B]``; :func:`magenta_cast` of an unclipped gray rises by
    ``2 * amount``.
    """
    amount = torch.as_tensor(amount, dtype=pixels.dtype, device=pixels.device)
    if amount.ndim == 1:
        amount = amount.view(-1, 1, 1, 1)
    direction = torch.tensor([1.0, -1.0, 1.0], dtype=pixels.dtype, device=pixels.device)
    return (pixels + amount * direction.view(1, 3, 1, 1)).clamp(0, 1)
