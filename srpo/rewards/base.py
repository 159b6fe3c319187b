"""The protocol every text-conditioned reward implements, and its shared machinery.

A reward embeds text and images into one space with L2-normalised vectors and scores an
image against a text by ``scale * <f_img(x), f_txt(t)>``. ``encode_image`` is
differentiable with respect to the pixels; the reward's own parameters stay frozen.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class TextImageReward(Protocol):
    """What the trainer, the studio and SRP need from a reward model."""

    name: str
    scale: float

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``[N, D]``."""
        ...

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised, differentiable image embeddings ``[B, D]`` of pixels in [0, 1]."""
        ...

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Per-image reward ``[B]`` of each image against its own text."""
        ...


def check_pixels(pixels: torch.Tensor, tolerance: float = 1e-4) -> None:
    """Raise ``ValueError`` unless ``pixels`` is a finite ``[B, 3, H, W]`` tensor in [0, 1]."""
    if not isinstance(pixels, torch.Tensor):
        raise TypeError(f"pixels must be a torch.Tensor, got {type(pixels).__name__}")
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must have shape [B, 3, H, W], got {list(pixels.shape)}")
    if not torch.isfinite(pixels).all():
        raise ValueError("pixels contain NaN or infinite values")
    low, high = pixels.min().item(), pixels.max().item()
    if low < -tolerance or high > 1 + tolerance:
        raise ValueError(f"pixels must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")


class ImagePreprocess(nn.Module):
    """Resize the short side, center-crop and normalise, all in torch (differentiable)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        check_pixels(pixels)
        height, width = pixels.shape[-2:]
        if (height, width) != (self.size, self.size):
            scale = self.size / min(height, width)
            new_h, new_w = (
                max(self.size, round(height * scale)),
                max(self.size, round(width * scale)),
            )
            if (new_h, new_w) != (height, width):
                pixels = F.interpolate(
                    pixels, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
                )
            top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
            pixels = pixels[..., top : top + self.size, left : left + self.size]
        return (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)


class RewardModel(nn.Module, metaclass=abc.ABCMeta):
    """Shared implementation of :class:`TextImageReward` over two frozen towers.

    Subclasses implement ``_tokenize``, ``_text_features`` and ``_image_features``; this class
    normalises, caches text embeddings (the reward is frozen, so they never change) and warns
    once when a prompt is longer than the tokenizer allows.
    """

    name: str = "reward"

    def __init__(self, preprocess: ImagePreprocess, scale: float = 1.0) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.scale = float(scale)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._warned_truncation = False

    def freeze(self) -> RewardModel:
        """Put the reward in eval mode with no parameter gradients; returns self."""
        self.eval()
        self.requires_grad_(False)
        return self

    def _warn_truncated(self, texts: Sequence[str], limit: int) -> None:
        if not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                f"{self.name}: {len(texts)} prompt(s) exceed the tokenizer's limit of {limit} "
                f"tokens and were truncated (first: {texts[0][:60]!r}...)",
                stacklevel=3,
            )

    @abc.abstractmethod
    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token tensors for the text tower (warn through ``_warn_truncated`` if cut)."""

    @abc.abstractmethod
    def _text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised text embeddings ``[N, D]``."""

    @abc.abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings ``[B, D]`` of preprocessed pixels."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            raise ValueError("encode_text needs at least one text")
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if missing:
            with torch.no_grad():
                tokens = self._tokenize(missing)
                features = F.normalize(self._text_features(tokens).float(), dim=-1)
            for text, feature in zip(missing, features, strict=True):
                self._text_cache[text] = feature
        return torch.stack([self._text_cache[t] for t in texts])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        inputs = self.preprocess(pixels)
        dtype = next(self.parameters()).dtype
        return F.normalize(self._image_features(inputs.to(dtype)).float(), dim=-1)

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        if len(texts) != pixels.shape[0]:
            raise ValueError(f"score needs one text per image: {pixels.shape[0]} vs {len(texts)}")
        text = self.encode_text(texts).to(pixels.device)
        return self.scale * (self.encode_image(pixels) * text).sum(-1)
