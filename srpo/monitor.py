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
:func:`drifts` is each watched statistic's change from the first sample step (what the studio
shows per checkpoint).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from srpo.image_stats import image_statistics
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import augment

if TYPE_CHECKING:
    from srpo.config import TrainConfig

log = logging.getLogger(__name__)

# Which reward watches a run, by the reward it trains on: PickScore watches the HPS family,
# HPS watches PickScore, CLIP the rest, and PickScore watches CLIP (a run is never watched by
# the reward it trains on; every reward under srpo.rewards is listed).
HELD_OUT_REWARD = {
    "hpsv2.1": "pickscore",
    "hpsv2": "pickscore",
    "hps": "pickscore",
    "hpsv3": "pickscore",
    "pickscore": "hpsv2.1",
    "clip": "pickscore",
    "imagereward": "clip",
    "aesthetic": "clip",
    "http": "clip",
}
# The held-out rewards a weighted spec falls back on, in order, when its components take the
# table's choice (a spec is never watched by one of its own terms).
FALLBACK_HELD_OUT = ("clip", "pickscore", "hpsv2.1", "aesthetic")
HPS_FAMILY = frozenset({"hps", "hpsv2", "hpsv2.1"})
# A drift of the statistic this far from step 0 is material. The tiny world's hack cast uses
# ``srpo bench hacking``'s rule, half the base model's per-image spread (Cohen's d 0.5): that
# spread is 0.0589 on the bench's 64 eval prompts (tiny-demo at tiny-biased, eval seed).
DRIFT_THRESHOLD = {"hack_cast": 0.029, "magenta_cast": 0.027, "saturation": 0.05}
# The statistic the studio calls a run's hack drift, first present wins: the judge's cast on
# the tiny world, the image statistics' red/purple cast elsewhere.
HACK_DRIFT = ("hack_cast", "magenta_cast", "saturation")


def _family(name: str) -> str:
    key = name.strip().lower()
    return "hps" if key in HPS_FAMILY else key


def held_out_reward_name(training_reward: str) -> str:
    """The reward that watches a run trained on ``training_reward`` (tiny: the judge).

    A weighted spec (``"0.7*hpsv2.1+0.3*aesthetic"``) takes the first choice of its terms
    that none of them is, then :data:`FALLBACK_HELD_OUT`'s.
    """
    if training_reward.startswith("tiny"):
        return "judge"
    if training_reward.lower().startswith(("http://", "https://")):
        return HELD_OUT_REWARD["http"]
    from srpo.rewards.multi import is_spec, parse_spec

    if not is_spec(training_reward):
        return HELD_OUT_REWARD.get(training_reward.lower(), "clip")
    names = [component.name for component in parse_spec(training_reward)]
    if all(name.startswith("tiny") for name in names):
        return "judge"
    trained = {_family(name) for name in names}
    chosen = [HELD_OUT_REWARD.get(name.lower(), "clip") for name in names]
    return next(c for c in [*chosen, *FALLBACK_HELD_OUT] if _family(c) not in trained)


def monitor_reward_problem(training_reward: str, monitor_reward: str) -> str | None:
    """Why ``monitor_reward`` cannot watch a run trained on ``training_reward``, or None: it
    must be a reward the studio knows and one the run does not train on."""
    from srpo.rewards import REWARD_NAMES
    from srpo.rewards.multi import is_spec, parse_spec

    if is_spec(monitor_reward):
        return "monitor_reward: one reward's name, not a weighted spec"
    key = monitor_reward.lower()
    if key not in REWARD_NAMES and key != "hps" and not key.startswith(("http://", "https://")):
        return (
            f"monitor_reward: unknown reward {monitor_reward!r}; one of {', '.join(REWARD_NAMES)}"
        )
    names = (
        [c.name for c in parse_spec(training_reward)]
        if is_spec(training_reward)
        else [training_reward]
    )
    if _family(key) in {_family(name) for name in names}:
        return (
            f"monitor_reward: the run trains on {monitor_reward!r}, so it cannot be the gold "
            f"signal; leave it unset for {held_out_reward_name(training_reward)!r}"
        )
    return None


def monitor_name(config: TrainConfig) -> str:
    """The gold signal that watches ``config``'s run: the judge on the tiny world, else the
    configured ``monitor_reward`` or :func:`held_out_reward_name`'s choice."""
    if config.model == "tiny":
        return "judge"
    return config.monitor_reward or held_out_reward_name(config.reward)


def drifts(
    first: dict[str, float], metrics: dict[str, float], thresholds: dict[str, float] | None = None
) -> dict[str, float]:
    """Each watched statistic's change from ``first`` (the first sample step) to ``metrics``."""
    thresholds = DRIFT_THRESHOLD if thresholds is None else thresholds
    return {
        name: metrics[name] - first[name]
        for name in thresholds
        if name in metrics and name in first
    }


def hack_drift(changes: dict[str, float]) -> tuple[str, float] | None:
    """The one drift the studio shows (:data:`HACK_DRIFT`'s first present), or None."""
    return next(((name, changes[name]) for name in HACK_DRIFT if name in changes), None)


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
    """One sample step: the training reward's mean over the updates since the previous sample
    step (None at the base model's step 0: nothing trained yet) and the gold signals there."""

    step: int
    reward: float | None
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
    Steps without a training reward (the base model's) never count as rising.
    """
    thresholds = DRIFT_THRESHOLD if thresholds is None else thresholds
    if not points:
        return None
    first = points[0].metrics
    for i, point in enumerate(points):
        for name, drift in drifts(first, point.metrics, thresholds).items():
            limit = thresholds[name]
            if drift > limit:
                return HackingWarning(
                    point.step,
                    points[max(i - 1, 0)].step,
                    f"{name} drifted {drift:+.3f} from step {points[0].step} (threshold {limit})",
                )
        if i >= window and "gold" in point.metrics:
            span = points[i - window : i + 1]
            rewards = [p.reward for p in span]
            golds = [p.metrics.get("gold") for p in span]
            if None in golds or None in rewards:
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
    ``unavailable`` (and in the log). :meth:`observe` takes every update's mean reward; a
    sample step's ``train_reward`` is their mean since the previous sample step.

    With a ``record`` file (JSON lines, one point per sample step) the series survives a
    resume: it is read back on start, so the drift and the warning keep step 0 as their base,
    and a step the resumed run measures again replaces the one it left.
    """

    def __init__(self, config: TrainConfig, record: Path | None = None) -> None:
        self.config = config
        self.judge = config.model == "tiny"
        self.positive = config.positive_words[0] if config.positive_words else None
        self.negative = config.negative_words[0] if config.negative_words else None
        self.held_out_name = monitor_name(config)
        self.held_out: TextImageReward | None = None
        self.unavailable: str | None = None
        self.rewards: list[float] = []
        self.record = record
        self.points: list[Point] = read_points(record) if record and record.is_file() else []

    def observe(self, reward: float) -> None:
        """One update's mean training reward."""
        self.rewards.append(reward)

    def _held_out(self) -> TextImageReward | None:
        if self.judge or self.held_out is not None or self.unavailable:
            return self.held_out
        from srpo.rewards import load_reward

        try:
            self.held_out = load_reward(self.held_out_name, self.config.monitor_reward_path)
        except (OSError, ValueError) as error:
            self.unavailable = f"held-out reward {self.held_out_name!r} not loaded: {error}"
            log.warning("hacking monitor: %s; watching the image statistics only", self.unavailable)
        return self.held_out

    def measure(self, step: int, images: torch.Tensor, prompts: Sequence[str]):
        """``(metrics, warning)`` of one sample step's images; ``metrics`` carries the
        ``train_reward`` of the updates since the previous sample step, if there were any."""
        metrics = measure_gold(
            images, prompts, self.positive, self.negative, self.judge, self._held_out()
        )
        reward = sum(self.rewards) / len(self.rewards) if self.rewards else None
        self.rewards = []
        if reward is not None:
            metrics["train_reward"] = reward
        self.points = [p for p in self.points if p.step < step] + [Point(step, reward, metrics)]
        if self.record is not None:
            write_points(self.record, self.points)
        return metrics, hacking_warning(self.points)

    def drift(self) -> dict[str, float]:
        """The newest sample step's :func:`drifts` from the first one."""
        return drifts(self.points[0].metrics, self.points[-1].metrics) if self.points else {}


def read_points(path: Path) -> list[Point]:
    """A run's monitor series from its JSON-lines record."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Point(row["step"], row["reward"], row["metrics"]) for row in rows]


def write_points(path: Path, points: Sequence[Point]) -> None:
    """Write the series as JSON lines, atomically (a crash never leaves half a record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(vars(p)) + "\n" for p in points))
    os.replace(tmp, path)
