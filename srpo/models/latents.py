"""Latent packing, once for every backend: a ``[B, C, H, W]`` grid as ``[B, N, C']`` tokens.

FLUX, Qwen-Image and (for our protocol) SD3 and Z-Image pack 2x2 patches channel-major, as
``FluxPipeline._pack_latents`` does; FLUX.2 patchifies the same way but keeps the patch grid
(``Flux2Pipeline._patchify_latents``), then flattens it (``_pack_latents``), which gives the
same tokens. So one pair of functions serves all of them.
"""

from __future__ import annotations

import torch


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/2)(W/2), 4C]`` as in ``FluxPipeline._pack_latents``."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent height and width must be even to pack 2x2, got {h}x{w}")
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for a latent grid of ``height x width``."""
    b, n, c4 = packed.shape
    if n != (height // 2) * (width // 2):
        raise ValueError(f"{n} tokens do not form a {height}x{width} latent grid")
    x = packed.view(b, height // 2, width // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, height, width)


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, 4C, H/2, W/2]`` (``Flux2Pipeline._patchify_latents``)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unpatchify(latents: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b, c4, h, w = latents.shape
    x = latents.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, h * 2, w * 2)


def flatten_grid(grid: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H W, C]`` (``Flux2Pipeline._pack_latents``)."""
    b, c, h, w = grid.shape
    return grid.reshape(b, c, h * w).permute(0, 2, 1)


def unflatten_grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`flatten_grid`."""
    b, _, c = tokens.shape
    return tokens.permute(0, 2, 1).reshape(b, c, height, width)
