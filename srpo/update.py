"""What every method's update shares: its inputs, its random draws, its signature and result.

Each method (SRPO/Direct-Align, ReFL, DRaFT, GRPO) is a class built from one
:class:`UpdateInputs`; calling it runs one micro-batch, ``update(step, draw, backward)``, and
calls ``backward`` on every loss it builds. :mod:`srpo.methods` maps method names to them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from srpo.models.base import Generator
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import augment

if TYPE_CHECKING:
    from srpo.config import TrainConfig
    from srpo.offline import OfflinePool

Backward = Callable[[torch.Tensor], None]
OptimizerStep = Callable[[], float]


@dataclass(frozen=True)
class Draw:
    """The random choices of one micro-batch on one rank.

    ``shared`` is seeded alike on every rank (the noise prior, as in the paper); ``local``
    and ``rank`` differ per rank (``s*``, offline image picks, GRPO's noise), as the official
    code seeds each rank with ``seed + rank``.
    """

    prompts: list[str]
    rank: random.Random
    shared: torch.Generator
    local: torch.Generator


@dataclass
class UpdateStats:
    """What one update reports: its loss and the per-sample rewards (detached, on the CPU)."""

    loss: float
    rewards: torch.Tensor


@dataclass(frozen=True)
class UpdateInputs:
    """Everything an update is built from.

    ``optimizer_step`` (clip, step, zero the gradients) lets a method take intermediate
    optimiser steps within one update (DanceGRPO does); the trainer takes the last one.
    """

    config: TrainConfig
    generator: Generator
    reward: TextImageReward
    pool: OfflinePool | None = None
    optimizer_step: OptimizerStep | None = None


class Update(Protocol):
    """One micro-batch of a method."""

    def __call__(self, step: int, draw: Draw, backward: Backward) -> UpdateStats:
        """Build the losses of ``draw`` at optimiser step ``step``, calling ``backward`` on each."""
        ...


def reward_texts(config: TrainConfig, prompts: Sequence[str]) -> list[str]:
    """What an absolute reward scores against: ``"<reward_prefix>. <prompt>"``, or the prompt.

    Table 1's baselines (and plain Direct-Align) score the raw prompt, HPS(p); a
    ``reward_prefix`` gives the "Direct-Align on r(word. p)" variant.
    """
    return augment(config.reward_prefix, prompts) if config.reward_prefix else list(prompts)
