"""The reward protocols and their shared machinery.

Every reward scores images against texts (:class:`Reward`). A dual encoder
(:class:`TextImageReward`) also embeds text and images into one space with L2-normalised
vectors and scores by ``scale * <f_img(x), f_txt(t)>``; SRP then uses its embedding form.
Any other reward (a scorer with a head, a VLM judge) uses the score-difference form
(:func:`srp_form`). A reward's score is differentiable with respect to the pixels unless it
says ``differentiable = False`` (a reward-only reward: a remote scorer, an OCR check), which
GRPO and the hacking monitors accept and the gradient methods refuse
(:func:`check_reward_for_method`). The reward's own parameters stay frozen.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

SRPForm = Literal["embedding", "difference"]
# The methods that backpropagate through the reward's score (GRPO only reads its value).
GRADIENT_METHODS = frozenset({"srpo", "direct_align", "refl", "draft"})


@runtime_checkable
class Reward(Protocol):
    """What every reward offers: a per-image score of pixels in [0, 1] against texts.

    Optional attributes: ``differentiable`` (default True) and ``srp_form`` (default: the
    embedding form when ``encode_text`` and ``encode_image`` exist, else the difference form).
    """

    name: str

    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Per-image reward ``[B]`` of each image against its own text."""
        ...


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


@dataclass(frozen=True)
class TextCoverage:
    """How a reward's tokenizer reads one text: its token count (special tokens included)
    against the text tower's limit, and the pieces of the text it maps to its unknown token.

    A reward whose tokenizer can tell offers ``text_coverage(text) -> TextCoverage``; the
    Reward Lab's sweep uses it to warn that two unknown words score alike, or that a prefix
    pushed the prompt past the limit."""

    tokens: int
    limit: int
    unknown: tuple[str, ...] = ()

    @property
    def truncated(self) -> bool:
        """Whether the text tower sees only the first ``limit`` tokens of the text."""
        return self.tokens > self.limit


def tokenizer_coverage(tokenizer, text: str, limit: int) -> TextCoverage:
    """:class:`TextCoverage` of ``text`` under a transformers tokenizer, or under open_clip's
    (a byte-level BPE, which has no unknown token: it encodes without its two end tokens)."""
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        return TextCoverage(len(tokenizer.encode(text)) + 2, limit)
    unk = tokenizer.unk_token_id
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, truncation=False, return_offsets_mapping=True)
        pieces = zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
        unknown = [text[a:b] for i, (a, b) in pieces if unk is not None and i == unk]
    else:  # a slow tokenizer has no offsets: try each word alone
        encoded = tokenizer(text, truncation=False)
        unknown = [
            w for w in text.split() if unk in tokenizer(w, add_special_tokens=False)["input_ids"]
        ]
    return TextCoverage(len(encoded["input_ids"]), limit, tuple(dict.fromkeys(unknown)))


def srp_form(reward: Reward) -> SRPForm:
    """How SRP scores with ``reward``: ``embedding`` (dual encoders) or ``difference``.

    A reward may say so itself (``srp_form``); otherwise one with ``encode_text`` and
    ``encode_image`` is a dual encoder and anything else uses the score difference.
    """
    declared = getattr(reward, "srp_form", None)
    if declared is not None:
        if declared not in ("embedding", "difference"):
            raise ValueError(f"reward {reward.name!r} declares an unknown SRP form {declared!r}")
        return declared
    dual = all(callable(getattr(reward, m, None)) for m in ("encode_text", "encode_image"))
    return "embedding" if dual else "difference"


def is_differentiable(reward: Reward) -> bool:
    """Whether gradients flow from the reward's score to the pixels."""
    return bool(getattr(reward, "differentiable", True))


def check_reward_for_method(reward: Reward, method: str) -> None:
    """Refuse a reward-only reward for a method that backpropagates through the reward."""
    if method in GRADIENT_METHODS and not is_differentiable(reward):
        raise ValueError(
            f"reward {reward.name!r} is reward-only (its score has no gradient), but method "
            f"{method!r} backpropagates through the reward; train it with method 'grpo' or use "
            "it as the monitor_reward"
        )


def check_scores(scores: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """Raise ``ValueError`` unless ``scores`` is a finite ``[batch]`` tensor; returns it."""
    if scores.shape != (batch,):
        raise ValueError(f"{name}: expected {batch} scores, got shape {list(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name}: scores contain NaN or infinite values")
    return scores


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
    srp_form: SRPForm = "embedding"
    differentiable: bool = True

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


class ScoringReward(nn.Module, metaclass=abc.ABCMeta):
    """A frozen reward that only scores (a head on a backbone, a judge): SRP takes the
    score-difference form. Subclasses implement :meth:`score`."""

    name: str = "reward"
    scale: float = 1.0
    srp_form: SRPForm = "difference"
    differentiable: bool = True

    def __init__(self) -> None:
        super().__init__()
        # Gives rewards without parameters a device and a dtype that ``.to`` moves.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def freeze(self):
        """Eval mode, no parameter gradients; returns self."""
        self.eval()
        self.requires_grad_(False)
        return self

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.parameters()), self._anchor.dtype)

    def _check_texts(self, pixels: torch.Tensor, texts: Sequence[str]) -> list[str]:
        texts = list(texts)
        if len(texts) != pixels.shape[0]:
            raise ValueError(
                f"{self.name}: score needs one text per image: {pixels.shape[0]} vs {len(texts)}"
            )
        return texts

    @abc.abstractmethod
    def score(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Per-image reward ``[B]`` of pixels in [0, 1] against their texts."""
