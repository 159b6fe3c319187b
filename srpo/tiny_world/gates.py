"""Quality gates of the tiny world, measured on fixed held-out sets.

Judge accuracy on rendered images; the judge's drop on VAE reconstructions; the reward's
zero-shot classification per family and SRP twin-pair ranking for style and lighting; the
generator's prompt fidelity, style/lighting following, and style spread when unprompted.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from srpo.models.flux import FluxGenerator
from srpo.models.tiny import load_tiny_generator, sampling_defaults
from srpo.rewards.clip import CLIPReward
from srpo.rewards.srp import augment, srp_reward
from srpo.rewards.tiny import load_tiny_reward
from srpo.sampling import sample_images
from srpo.tiny_world.data import heldout, twin_pairs
from srpo.tiny_world.judge import judge
from srpo.tiny_world.render import render
from srpo.tiny_world.world import FAMILIES, Scene, describe

CONTENT = ("shape", "colour", "size", "background")
THRESHOLDS = {
    "judge_accuracy": 0.95,
    "vae_judge_drop": 0.03,
    "reward_zero_shot": 0.90,
    "srp_pair_accuracy": 0.90,
    "generator_fidelity": 0.80,
    "generator_style_follow": 0.70,
    "generator_style_max_share_unprompted": 0.70,
}


@dataclass(frozen=True)
class GateSizes:
    """How many held-out items each measurement uses (the CLI's full run vs the tests')."""

    images: int = 600
    pairs: int = 150
    samples: int = 240
    batch: int = 60


def _accuracy(found: list[dict[str, str]], scenes: list[Scene], family: str) -> float:
    return sum(f[family] == getattr(s, family) for f, s in zip(found, scenes, strict=True)) / len(
        scenes
    )


def judge_accuracy(images: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
    """Per-attribute accuracy of the judge on ``images`` of ``scenes``."""
    found = judge(images)
    return {family: _accuracy(found, scenes, family) for family in FAMILIES}


@torch.no_grad()
def reconstruct(generator: FluxGenerator, images: torch.Tensor, batch: int) -> torch.Tensor:
    """VAE round trip of images (through the generator's encode/decode)."""
    return torch.cat([generator.decode(generator.encode(chunk)) for chunk in images.split(batch)])


@torch.no_grad()
def reward_zero_shot(reward: CLIPReward, images: torch.Tensor, scenes: list[Scene], batch: int):
    """Per family: how often the best-scoring single-attribute prompt names the true value."""
    embeds = torch.cat([reward.encode_image(chunk) for chunk in images.split(batch)])
    result = {}
    for family, values in FAMILIES.items():
        prompts = [describe(replace(scenes[0], **{family: v}), include=[family]) for v in values]
        scores = embeds @ reward.encode_text(prompts).T
        truth = torch.tensor([values.index(getattr(s, family)) for s in scenes])
        result[family] = (scores.argmax(dim=1) == truth).float().mean().item()
    return result


@torch.no_grad()
def srp_pair_accuracy(reward: CLIPReward, n: int, family: str) -> float:
    """How often ``f(pos. p) - f(neg. p)`` ranks the positive twin above the negative one,
    over every ordered pair of values of ``family``."""
    correct = total = 0
    for positive, negative in itertools.permutations(FAMILIES[family], 2):
        pos_scenes, neg_scenes = twin_pairs(n, family, positive, negative)
        prompts = [describe(s, include=CONTENT) for s in pos_scenes]
        text_pos = reward.encode_text(augment(positive, prompts))
        text_neg = reward.encode_text(augment(negative, prompts))
        r_pos = srp_reward(reward.encode_image(render(pos_scenes)), text_pos, text_neg, 0.0)
        r_neg = srp_reward(reward.encode_image(render(neg_scenes)), text_pos, text_neg, 0.0)
        correct += int((r_pos > r_neg).sum())
        total += n
    return correct / total


def generator_gates(
    generator: FluxGenerator, n: int, batch: int, steps: int, shift: float, seed: int = 2_000_003
):
    """Fidelity, style/lighting following and unprompted style spread of sampled images."""
    scenes = heldout(n, seed=seed).scenes
    content = [describe(s, include=CONTENT) for s in scenes]
    seeds = range(seed, seed + 2 * n)
    found = judge(sample_images(generator, content, seeds[:n], steps, shift, batch))
    fidelity = {f: _accuracy(found, scenes, f) for f in ("shape", "colour")}
    shares = Counter(f["style"] for f in found)
    max_share = max(shares.values()) / n
    named = [describe(s) for s in scenes]
    found_named = judge(sample_images(generator, named, seeds[n:], steps, shift, batch))
    follow = {f: _accuracy(found_named, scenes, f) for f in ("style", "lighting")}
    return fidelity, follow, max_share, dict(shares)


def choose_cfg_scale(
    generator: FluxGenerator, candidates: Sequence[float], n: int = 60, steps: int = 20
) -> tuple[float, dict[str, float]]:
    """The guidance scale whose samples (on a seed set disjoint from the gates') best meet
    the generator gates: the mean margin over fidelity, following and unprompted spread."""
    trials = {}
    for scale in candidates:
        generator.cfg_scale = scale
        fidelity, follow, max_share, _ = generator_gates(generator, n, n, steps, 1.0, seed=7)
        margins = [v - THRESHOLDS["generator_fidelity"] for v in fidelity.values()]
        margins += [v - THRESHOLDS["generator_style_follow"] for v in follow.values()]
        margins.append(THRESHOLDS["generator_style_max_share_unprompted"] - max_share)
        trials[str(scale)] = round(min(margins), 4)
    best = max(candidates, key=lambda scale: trials[str(scale)])
    return best, trials


def evaluate(
    directory: str | Path | None = None,
    sizes: GateSizes = GateSizes(),
    cfg_scale: float | None = None,
) -> dict[str, Any]:
    """Every gate on the weights in ``directory`` (the shipped ones by default)."""
    from srpo.tiny_world.weights import WEIGHTS_DIR

    start = time.perf_counter()
    directory = Path(directory or WEIGHTS_DIR)
    generator = load_tiny_generator(directory, cfg_scale)
    reward = load_tiny_reward(directory)
    sampling = sampling_defaults(directory)
    data = heldout(sizes.images)
    judged = judge_accuracy(data.images, data.scenes)
    recon = judge_accuracy(reconstruct(generator, data.images, sizes.batch), data.scenes)
    fidelity, follow, max_share, shares = generator_gates(
        generator, sizes.samples, sizes.batch, int(sampling["steps"]), sampling["shift"]
    )
    result = {
        "judge_accuracy": judged,
        "vae_judge_drop": {f: round(judged[f] - recon[f], 4) for f in FAMILIES},
        "reward_zero_shot": reward_zero_shot(reward, data.images, data.scenes, sizes.batch),
        "srp_pair_accuracy": {
            f: srp_pair_accuracy(reward, sizes.pairs, f) for f in ("style", "lighting")
        },
        "generator_fidelity": fidelity,
        "generator_style_follow": follow,
        "generator_style_max_share_unprompted": max_share,
        "generator_unprompted_styles": shares,
        "cfg_scale": generator.cfg_scale,
    }
    result["failures"] = failures(result)
    result["passed"] = not result["failures"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def failures(result: dict[str, Any]) -> list[str]:
    """The gates a result misses, each as ``"key[family]=value (need >= / <= threshold)"``."""
    missed = []
    for key, threshold in THRESHOLDS.items():
        values = result[key] if isinstance(result[key], dict) else {"": result[key]}
        upper = key in ("vae_judge_drop", "generator_style_max_share_unprompted")
        for family, value in values.items():
            ok = value <= threshold if upper else value >= threshold
            if not ok:
                label = f"{key}[{family}]" if family else key
                missed.append(f"{label}={value:.3f} (need {'<=' if upper else '>='} {threshold})")
    return missed
