"""Evaluate a fine-tune against its base model on held-out prompts at fixed seeds.

Every model is scored with the reward of its run (the plain reward of the prompt, of the
prompt augmented with the positive word, and the SRP reward with k = 0). On the tiny world
the procedural judge also measures how often the images show the positive and the negative
control word's attribute, and prompt fidelity: the share of images that show every attribute
their prompt names. Held-out prompts name content only (shape, colour, size, background), so
the style the control words steer is left to the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from srpo.config import TrainConfig
from srpo.cpu_sampling import sample_split
from srpo.flow import StepCallback
from srpo.models.base import Generator
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import SRPScorer, augment

EVAL_SEED = 3_000_017
# SGP-HPS's words (method.md): held out of the FLUX presets' training words, so a run is
# measured with words it never trained on, beside its own.
HELD_OUT_WORDS = ("Realistic photo", "CG Render")
CONTENT = ("shape", "colour", "size", "background")


@dataclass(frozen=True)
class EvalSet:
    """Held-out prompts, one fixed seed each, and the sampler settings."""

    prompts: list[str]
    seeds: list[int]
    steps: int
    shift: float


def tiny_heldout_prompts(n: int, seed: int = EVAL_SEED) -> list[str]:
    """Content-only captions of ``n`` held-out tiny-world scenes (seed disjoint from training)."""
    from srpo.tiny_world.world import describe, sample_scenes

    return [describe(s, include=CONTENT) for s in sample_scenes(n, random.Random(seed))]


def eval_set(config: TrainConfig, n: int, seed: int = EVAL_SEED) -> EvalSet:
    """The held-out set of a run: tiny-world scenes, or the run's eval/training prompts."""
    if n < 1:
        raise ValueError(f"the evaluation needs at least one prompt, got {n}")
    if config.model == "tiny":
        prompts = tiny_heldout_prompts(n, seed)
    else:
        pool = list(config.eval_prompts or config.prompt_list())
        prompts = [pool[i % len(pool)] for i in range(n)]
    return EvalSet(prompts, [seed + i for i in range(n)], config.rollout_steps, config.shift)


def attribute_of(word: str) -> tuple[str, str] | None:
    """The tiny-world attribute ``(family, value)`` a control word names, if exactly one."""
    from srpo.tiny_world.world import parse_prompt

    named, _ = parse_prompt(word)
    return next(iter(named.items())) if len(named) == 1 else None


@torch.no_grad()
def measure(
    generator: Generator,
    reward: TextImageReward,
    data: EvalSet,
    positive: str | None = None,
    negative: str | None = None,
    judged: bool = False,
    held_out: tuple[str, str] = HELD_OUT_WORDS,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Mean rewards of the model's images of ``data``; judged rates when ``judged``.

    ``srp_reward`` is the SGP difference ``r(pos. p) - r(neg. p)`` with the run's words,
    ``sgp_heldout`` the same with ``held_out`` words (SGP-HPS with an HPS reward).
    """
    # split over single-threaded workers on a CPU: the Checkpoints tab calls this from a
    # handler thread, where torch's own threads are slow (srpo.cpu_sampling)
    images = sample_split(generator, data.prompts, data.seeds, data.steps, data.shift, on_step)
    pixels = images.to(reward.device)
    result: dict[str, Any] = {
        "images": len(images),
        "reward": reward.score(pixels, data.prompts).mean().item(),
    }
    if positive:
        positive_scores = reward.score(pixels, augment(positive, data.prompts))
        result["reward_positive"] = positive_scores.mean().item()
    if positive and negative:
        srp = SRPScorer(reward).score(pixels, data.prompts, positive, negative, 0.0)
        result["srp_reward"] = srp.mean().item()
    sgp = SRPScorer(reward).score(pixels, data.prompts, *held_out, 0.0)
    result["sgp_heldout"] = sgp.mean().item()
    if judged:
        result.update(judged_rates(images, data.prompts, positive, negative))
    return result


def judged_rates(
    images: torch.Tensor,
    prompts: Sequence[str],
    positive: str | None,
    negative: str | None,
) -> dict[str, float]:
    """Tiny-world judge: prompt fidelity, the share of images showing each word's attribute,
    and ``hack_cast``, the mean of the judge's hack statistic (the frame's cool cast beyond
    what the light explains)."""
    from srpo.tiny_world.judge import check, hack_statistic

    verdicts = check(images, prompts)
    rates = {"prompt_fidelity": sum(v.faithful for v in verdicts) / len(verdicts)}
    rates["hack_cast"] = hack_statistic(images).mean().item()
    for name, word in (("positive", positive), ("negative", negative)):
        attribute = attribute_of(word) if word else None
        if attribute is not None:
            family, value = attribute
            shown = sum(v.attributes[family] == value for v in verdicts)
            rates[f"judged_{name}_rate"] = shown / len(verdicts)
    return rates


def evaluate_checkpoint(
    path: str | Path,
    prompts: int = 96,
    seed: int = EVAL_SEED,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Base model vs the checkpoint at ``path`` on the same held-out prompts and seeds;
    ``on_step(done, total)`` counts the denoising steps of both models' images."""
    from srpo.models import apply_checkpoint, load_run_checkpoint
    from srpo.train import build_models

    checkpoint, config = load_run_checkpoint(path)
    data = eval_set(config, prompts, seed)
    positive = config.positive_words[0] if config.positive_words else None
    negative = config.negative_words[0] if config.negative_words else None
    judged = config.model == "tiny"
    generator, reward = build_models(config)
    halves = [None, None]
    if on_step is not None:  # the base model's steps, then the checkpoint's
        halves = [lambda done, total, h=h: on_step(h * total + done, 2 * total) for h in (0, 1)]
    base = measure(generator, reward, data, positive, negative, judged, on_step=halves[0])
    apply_checkpoint(generator, checkpoint, config)
    tuned = measure(generator, reward, data, positive, negative, judged, on_step=halves[1])
    return {
        "checkpoint": str(checkpoint.path),
        "step": checkpoint.step,
        "method": config.method,
        "positive_word": positive,
        "negative_word": negative,
        "heldout_words": list(HELD_OUT_WORDS),
        "prompts": len(data.prompts),
        "base": base,
        "finetuned": tuned,
    }
