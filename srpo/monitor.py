"""Hacking monitors: a gold signal the run did not train on, logged beside its reward.

At every sample step the trainer measures its fixed evaluation images (fixed prompts and
seeds, so the cost is bounded and steps are comparable):

- on the tiny world, the procedural judge: the positive word's judged rate, prompt fidelity
  and the hack statistic (the background's magenta cast);
- on real models, a held-out reward (PickScore when training on HPS, HPS when training on
  PickScore, CLIP otherwise) and image statistics (saturation, red/purple cast,
  high-frequency energy, brightness).

:func:`hacking_warning` reads the series: the training reward keeps rising while the gold
signal falls, or the drift passes its threshold; it names the last step before that began.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from srpo.image_stats import image_statistics
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import augment

if TYPE_CHECKING:
    from srpo.config import TrainConfig

# Which reward watches a run, by the reward it trains on.
HELD_OUT_REWARD = {"hpsv2.1": "pickscore", "hpsv2": "pickscore", "pickscore": "hpsv2.1"}
# A drift of the statistic this far from step 0 is material: for the tiny world's hack cast,
# one standard deviation of the base model's per-image values (0.0268, ``srpo bench hacking``).
DRIFT_THRESHOLD = {"hack_cast": 0.027, "magenta_cast": 0.027, "saturation": 0.05}


def held_out_reward_name(training_reward: str) -> str:
    """The reward that watches a run trained on ``training_reward`` (tiny: the judge)."""
    if training_reward.startswith("tiny"):
        return "judge"
    return HELD_OUT_REWARD.get(training_reward.lower(), "clip")


@torch.no_grad()
def measure_gold(
    images: torch.Tensor,
    prompts: Sequence[str],
    positive: str | None,
    negative: str | None,
    judge: bool,
    held_out: TextImageReward | None = None,
) -> dict[str, float]:
    """The gold signals of one sample step's images.

    ``gold`` is the one number the warning watches: the judged positive rate on the tiny
    world (prompt fidelity without a positive word), the held-out reward of
    ``"<positive>. p"`` (or of ``p``) elsewhere.
    """
    metrics = image_statistics(images)
    if judge:
        from srpo.evaluate import judged_rates

        rates = judged_rates(images, prompts, positive, negative)
        metrics.update(rates)
        metrics["gold"] = rates.get("judged_positive_rate", rates["prompt_fidelity"])
    elif held_out is not None:
        texts = augment(positive, prompts) if positive else list(prompts)
        pixels = images.to(held_out.device)
        metrics["held_out_reward"] = held_out.score(pixels, texts).mean().item()
        metrics["gold"] = metrics["held_out_reward"]
    return metrics


@dataclass(frozen=True)
class Point:
    """One sample step: the training reward's running mean and the gold signals there."""

    step: int
    reward: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class HackingWarning:
    """Why the monitor thinks the run is hacking, and the last step before it began."""

    step: int
    last_good_step: int
    reason: str


def hacking_warning(
    points: Sequence[Point], window: int = 2, thresholds: dict[str, float] | None = None
) -> HackingWarning | None:
    """The first sign of hacking in a run's sample steps, or None.

    Fires when, over ``window`` consecutive sample steps, the training reward rises while the
    gold signal falls, or as soon as a drift statistic moves past its threshold from step 0.
    """
    thresholds = DRIFT_THRESHOLD if thresholds is None else thresholds
    if not points:
        return None
    first = points[0].metrics
    for i, point in enumerate(points):
        for name, limit in thresholds.items():
            if name in point.metrics and name in first:
                drift = point.metrics[name] - first[name]
                if drift > limit:
                    return HackingWarning(
                        point.step,
                        points[max(i - 1, 0)].step,
                        f"{name} drifted {drift:+.3f} from step {points[0].step} "
                        f"(threshold {limit})",
                    )
        if i >= window and "gold" in point.metrics:
            span = points[i - window : i + 1]
            rewards = [p.reward for p in span]
            golds = [p.metrics.get("gold") for p in span]
            if None in golds:
                continue
            rising = all(b > a for a, b in itertools.pairwise(rewards))
            falling = all(b < a for a, b in itertools.pairwise(golds))
            if rising and falling:
                return HackingWarning(
                    point.step,
                    span[0].step,
                    f"the training reward rose {rewards[-1] - rewards[0]:+.4f} while the gold "
                    f"signal fell {golds[-1] - golds[0]:+.4f} over steps {span[0].step}-{point.step}",
                )
    return None


class GoldMonitor:
    """The trainer's monitor: measures each sample step and keeps the series for the warning.

    The held-out reward is loaded on the first sample step; if it cannot be loaded here (no
    weights on this machine), the run goes on with the image statistics alone and says so in
    ``unavailable``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.judge = config.model == "tiny"
        self.positive = config.positive_words[0] if config.positive_words else None
        self.negative = config.negative_words[0] if config.negative_words else None
        self.held_out_name = config.monitor_reward or held_out_reward_name(config.reward)
        self.held_out: TextImageReward | None = None
        self.unavailable: str | None = None
        self.reward = 0.0
        self.points: list[Point] = []

    def _held_out(self) -> TextImageReward | None:
        if self.judge or self.held_out is not None or self.unavailable:
            return self.held_out
        from srpo.rewards import load_reward

        try:
            self.held_out = load_reward(self.held_out_name, self.config.monitor_reward_path)
        except (OSError, ValueError) as error:
            self.unavailable = f"held-out reward {self.held_out_name!r} not loaded: {error}"
        return self.held_out

    def measure(self, step: int, images: torch.Tensor, prompts: Sequence[str]):
        """``(metrics, warning)`` of one sample step's images."""
        metrics = measure_gold(
            images, prompts, self.positive, self.negative, self.judge, self._held_out()
        )
        self.points.append(Point(step, self.reward, metrics))
        return metrics, hacking_warning(self.points)
