"""The generator protocol: what Direct-Align, the baselines and the studio need of a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class Conditioning:
    """Precomputed text conditioning for a batch of prompts.

    ``prompt_embeds`` is the token sequence ``[B, L, D]``, ``pooled`` the pooled vector ``[B, P]``.
    ``uncond_*`` hold the empty prompt's embeddings when classifier-free guidance is used.
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    uncond_embeds: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        """Move every tensor to ``device`` (and ``dtype`` if given)."""
        return self._map(lambda t: t.to(device=device, dtype=dtype or t.dtype))

    def select(self, index: torch.Tensor | slice | Sequence[int]) -> Conditioning:
        """The conditioning of a subset of the batch."""
        return self._map(lambda t: t[index])

    def repeat_interleave(self, n: int) -> Conditioning:
        """Repeat every prompt ``n`` times in place (groups of samples per prompt)."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def without_guidance(self) -> Conditioning:
        """The same prompts with no unconditional branch."""
        return replace(self, uncond_embeds=None, uncond_pooled=None)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        tensors = (self.prompt_embeds, self.pooled, self.uncond_embeds, self.uncond_pooled)
        return Conditioning(*(None if t is None else fn(t) for t in tensors))


@runtime_checkable
class PromptEncoder(Protocol):
    """Turns prompts into ``(sequence [B, L, D], pooled [B, P])`` embeddings."""

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence and pooled embeddings of the prompts (no gradients needed)."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A rectified-flow text-to-image model working on packed latents ``[B, N, C]``."""

    transformer: nn.Module
    resolution: tuple[int, int]

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """Precompute the conditioning of the prompts."""
        ...

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning):
        """The predicted velocity ``v_hat(x, sigma, c)`` for packed latents and ``[B]`` sigmas."""
        ...

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Packed latents of pixels in [0, 1] ``[B, 3, H, W]`` (differentiable)."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] of packed latents (differentiable)."""
        ...

    def noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise in the packed latent shape at the model's resolution."""
        ...

    def sample(self, cond: Conditioning, noise: torch.Tensor, num_steps: int, shift: float):
        """A clean latent by Euler integration from ``noise`` (no gradients)."""
        ...
