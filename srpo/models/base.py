"""The generator protocol: what Direct-Align, the baselines and the studio need of a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from srpo.flow import StepCallback


@dataclass
class Conditioning:
    """Precomputed text conditioning for a batch of prompts.

    ``prompt_embeds`` is the token sequence ``[B, L, D]``, ``pooled`` the pooled vector ``[B, P]``
    (``[B, 0]`` for models without one). ``uncond_*`` hold the empty (or negative) prompt's
    embeddings when classifier-free guidance is used. ``prompt_mask`` / ``uncond_mask``
    (``[B, L]`` bool, True for real tokens) are set by encoders whose sequences have their own
    lengths (Qwen-Image, Z-Image); ``None`` means every token is real.
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    uncond_embeds: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None
    uncond_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        """Move every tensor to ``device`` (and floating ones to ``dtype`` if given)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            keep = dtype is None or not t.is_floating_point()
            return t.to(device=device, dtype=t.dtype if keep else dtype)

        return self._map(move)

    def select(self, index: torch.Tensor | slice | Sequence[int]) -> Conditioning:
        """The conditioning of a subset of the batch."""
        return self._map(lambda t: t[index])

    def repeat_interleave(self, n: int) -> Conditioning:
        """Repeat every prompt ``n`` times in place (groups of samples per prompt)."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def without_guidance(self) -> Conditioning:
        """The same prompts with no unconditional branch."""
        return replace(self, uncond_embeds=None, uncond_pooled=None, uncond_mask=None)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        tensors = (
            self.prompt_embeds,
            self.pooled,
            self.uncond_embeds,
            self.uncond_pooled,
            self.prompt_mask,
            self.uncond_mask,
        )
        return Conditioning(*(None if t is None else fn(t) for t in tensors))


@runtime_checkable
class PromptEncoder(Protocol):
    """Turns prompts into ``(sequence [B, L, D], pooled [B, P])`` embeddings.

    Encoders whose prompts keep their own lengths return ``(sequence, pooled, mask)`` with a
    ``[B, L]`` bool mask of the real tokens (a prefix of each row).
    """

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """Sequence and pooled embeddings (and a mask) of the prompts (no gradients needed)."""
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

    def sample(
        self,
        cond: Conditioning,
        noise: torch.Tensor,
        num_steps: int,
        shift: float,
        on_step: StepCallback | None = None,
    ):
        """A clean latent by Euler integration from ``noise`` (no gradients);
        ``on_step(done, total)`` hears of each step."""
        ...


@contextmanager
def cfg_scale_set(generator: Generator, scale: float | None) -> Iterator[Generator]:
    """``generator`` with classifier-free guidance at ``scale`` inside the block (``None``: as
    it is), e.g. a rollout guided more strongly than the forwards that carry gradient."""
    if scale is None:
        yield generator
        return
    before = generator.cfg_scale
    generator.cfg_scale = float(scale)
    try:
        yield generator
    finally:
        generator.cfg_scale = before
