"""Semantic Relative Preference (SRP): the SRPO reward built from control words.

Embedding form (dual encoders): ``r = scale * <f_img(x), (1 + k) f_txt(pos. p) - f_txt(neg. p)>``.
Subtracting the negative condition cancels whatever the image tower prefers regardless of the
text; ``k`` keeps a little of the absolute reward. The inversion branch scores with the words
swapped. Score-difference form (any other reward: a scorer with a head, a VLM judge):
``(1 + k) r(pos. p) - r(neg. p)``, the same number when the score is linear in the text
embedding (:func:`srpo.rewards.base.srp_form` picks the form).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from srpo.rewards.base import Reward, SRPForm, srp_form

WordMode = Literal["cycle", "sample"]
LossKind = Literal["negative", "hinge"]


def augment(word: str, prompts: Sequence[str]) -> list[str]:
    """Prefix each prompt with a control word: ``"<word>. <prompt>"``."""
    word = word.strip().rstrip(".")
    if not word:
        raise ValueError("control word is empty")
    return [f"{word}. {p}" for p in prompts]


def _as_tuple(words: Sequence[str] | str) -> tuple[str, ...]:
    return (words,) if isinstance(words, str) else tuple(words)


@dataclass(frozen=True)
class ControlWords:
    """Positive and negative control words, picked per step by cycling or sampling."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    mode: WordMode = "cycle"

    def __post_init__(self) -> None:
        for field, words in (("positive", self.positive), ("negative", self.negative)):
            if not words or not all(w.strip() for w in words):
                raise ValueError(f"{field} control words must be a non-empty list of words")
        if self.mode not in ("cycle", "sample"):
            raise ValueError(f"control word mode must be 'cycle' or 'sample', got {self.mode!r}")

    @classmethod
    def of(
        cls, positive: Sequence[str] | str, negative: Sequence[str] | str, mode: WordMode = "cycle"
    ):
        """Build from lists or single words."""
        return cls(_as_tuple(positive), _as_tuple(negative), mode)

    def pick(self, step: int, seed: int = 0) -> tuple[str, str]:
        """The (positive, negative) pair used at ``step``: deterministic in (step, seed)."""
        if self.mode == "cycle":
            return self.positive[step % len(self.positive)], self.negative[
                step % len(self.negative)
            ]
        rng = random.Random(seed * 1_000_003 + step)
        return rng.choice(self.positive), rng.choice(self.negative)


def relative_direction(
    text_pos: torch.Tensor, text_neg: torch.Tensor, k: torch.Tensor | float
) -> torch.Tensor:
    """The text-side SRP direction ``(1 + k) t_pos - t_neg`` (``k`` a float or ``[B]``)."""
    if isinstance(k, torch.Tensor) and k.ndim == 1:
        k = k.to(text_pos).unsqueeze(-1)
    return (1 + k) * text_pos - text_neg


def srp_reward(
    image: torch.Tensor,
    text_pos: torch.Tensor,
    text_neg: torch.Tensor,
    k: torch.Tensor | float,
    scale: float = 1.0,
) -> torch.Tensor:
    """Per-image SRP reward from normalised embeddings ``[B, D]``."""
    return scale * (image * relative_direction(text_pos, text_neg, k)).sum(-1)


def inversion_reward(
    image: torch.Tensor,
    text_pos: torch.Tensor,
    text_neg: torch.Tensor,
    k: torch.Tensor | float,
    scale: float = 1.0,
) -> torch.Tensor:
    """The inversion branch's reward: SRP with the words swapped, ``(1+k) t_neg - t_pos``."""
    return srp_reward(image, text_neg, text_pos, k, scale)


def difference_reward(
    reward_pos: torch.Tensor, reward_neg: torch.Tensor, k: torch.Tensor | float
) -> torch.Tensor:
    """The score-difference SRP reward ``(1 + k) r(pos. p) - r(neg. p)`` (``k`` a float or ``[B]``)."""
    if isinstance(k, torch.Tensor):
        k = k.to(reward_pos)
    return (1 + k) * reward_pos - reward_neg


def reward_loss(reward: torch.Tensor, kind: LossKind = "negative", threshold: float = 0.0):
    """Mean loss of a reward: ``-r`` or the hinge ``relu(threshold - r)``."""
    if kind == "negative":
        return -reward.mean()
    if kind == "hinge":
        return F.relu(threshold - reward).mean()
    raise ValueError(f"loss kind must be 'negative' or 'hinge', got {kind!r}")


class SRPScorer:
    """Scores images with the SRP reward of a frozen reward, in the form it supports.

    ``form`` overrides the reward's own (``difference`` works for every reward; ``embedding``
    needs ``encode_text``, ``encode_image`` and ``scale``).
    """

    def __init__(self, reward: Reward, form: SRPForm | None = None) -> None:
        self.reward = reward
        self.form = form or srp_form(reward)
        if self.form not in ("embedding", "difference"):
            raise ValueError(f"SRP form must be 'embedding' or 'difference', got {self.form!r}")
        if self.form == "embedding" and srp_form(reward) != "embedding":
            raise ValueError(f"reward {reward.name!r} has no embedding form; use 'difference'")

    def text_pair(self, prompts: Sequence[str], positive: str, negative: str):
        """Normalised text embeddings of the positive and negative augmented prompts."""
        return self.reward.encode_text(augment(positive, prompts)), self.reward.encode_text(
            augment(negative, prompts)
        )

    def score(
        self,
        pixels: torch.Tensor,
        prompts: Sequence[str],
        positive: str,
        negative: str,
        k: torch.Tensor | float,
        swapped: bool = False,
    ) -> torch.Tensor:
        """SRP reward ``[B]`` of the pixels; ``swapped`` gives the inversion-branch form."""
        if self.form == "difference":
            first, second = (negative, positive) if swapped else (positive, negative)
            batch = pixels.shape[0]
            # One scoring call for both conditions: the image side runs once on a 2B batch.
            both = self.reward.score(
                torch.cat([pixels, pixels]), augment(first, prompts) + augment(second, prompts)
            )
            return difference_reward(both[:batch], both[batch:], k)
        text_pos, text_neg = self.text_pair(prompts, positive, negative)
        image = self.reward.encode_image(pixels)
        text_pos, text_neg = text_pos.to(image), text_neg.to(image)
        form = inversion_reward if swapped else srp_reward
        return form(image, text_pos, text_neg, k, self.reward.scale)
