"""Training streams and fixed held-out sets of the tiny world (seeded, deterministic)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from srpo.tiny_world.render import render
from srpo.tiny_world.world import FAMILIES, Scene, describe, random_caption, sample_scenes

HELDOUT_SEED = 1_000_003


@dataclass
class Batch:
    """Rendered images ``[B, 3, 64, 64]`` with their scenes and captions."""

    images: torch.Tensor
    scenes: list[Scene]
    captions: list[str]


def stream(batch_size: int, seed: int, keep: float = 0.65) -> Iterator[Batch]:
    """An endless stream of random scenes with random partial captions."""
    rng = random.Random(seed)
    while True:
        scenes = sample_scenes(batch_size, rng)
        yield Batch(render(scenes), scenes, [random_caption(s, rng, keep) for s in scenes])


def heldout(n: int, seed: int = HELDOUT_SEED) -> Batch:
    """A fixed evaluation set, disjoint in seed from every training stream, fully captioned."""
    scenes = sample_scenes(n, random.Random(seed))
    return Batch(render(scenes), scenes, [describe(s) for s in scenes])


def twin_pairs(n: int, family: str, positive: str, negative: str, seed: int = HELDOUT_SEED + 1):
    """``n`` pairs of scenes identical except ``family``: (positive scenes, negative scenes)."""
    if positive not in FAMILIES[family] or negative not in FAMILIES[family]:
        raise ValueError(f"{positive!r} and {negative!r} must be values of {family}")
    base = sample_scenes(n, random.Random(seed))
    pos = [replace(s, **{family: positive}) for s in base]
    neg = [replace(s, **{family: negative}) for s in base]
    return pos, neg
