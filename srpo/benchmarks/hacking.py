"""``srpo bench hacking``: the paper's Table 1 in miniature, on a reward with a known bias.

Every method fine-tunes the same tiny-world generator from the ``tiny-demo`` preset on the
``tiny-biased`` reward (whose image tower favours a cool, blue/cyan cast no caption asks for), with the
same prompts, the same optimiser and the same number of updates, each method's own settings at
its authors' defaults. Then the procedural judge, which knows neither reward, reads on the same
held-out prompts and seeds:

- ``judged_shift``: the judged rate of the target attribute (``photo``), after minus before;
- ``fidelity_change``: prompt fidelity, after minus before;
- ``hack_drift``: the judge's hack statistic (the background frame's cool cast beyond what the
  light explains), after minus before; ``hack_effect``: that drift in standard deviations of
  the per-image statistic over the base model's images (Cohen's d); ``hack_material`` when
  the effect is at least ``MATERIAL_EFFECT`` (a medium effect in Cohen's convention, 0.5),
  that is when the drift exceeds ``hack_threshold``;
- ``reward_gain``: the training reward (SRPO: the SRP reward with k = 0; Direct-Align on
  r("photo. p"): that; the others: r(p)), after minus before; ``absolute_reward_gain``: r(p);
- ``clean_reward_drift`` (rows in ``CONTROLLED``): the same row's hack drift when it trains
  on the clean ``tiny`` reward instead (the control), and ``bias_drift``: ``hack_drift`` less that, the part of
  the drift the bias caused. The clean reward has tastes of its own that move the statistic
  too (its r(photo. p) - r(painting. p) rises with a cast, so SRP with ``photo`` /
  ``painting`` drifts on it as well); the raw drift counts them as hacking, the
  bias-attributable drift does not. Both are reported; the issue's goal is judged on the raw.

The held-out prompts name a neutral light (``bright`` or ``dark``, alternately) beside their
content: the cool cast ``tiny-biased`` favours and the tiny world's warm light lie on the same
colour axis (both move the frame's ``B - R``; warm light's colour on a gray, less its gray,
is within a few degrees of the cast's direction), so with the light left open the generator's
in-between warm/bright renders, which the judge's light correction cannot model, make the
statistic's spread over base images about 3.5 times larger (0.066 against 0.019 on 32
prompts), and a fine-tune that changes how warm the open-light images come out reads as a
cast. With the light named, a change of the light is a fidelity loss, and the frame's cast is
the bias showing. The lighting ablation judges ``warm`` and is measured on the same content
with the light left open (there the statistic moves with the light by construction).

Ablations change one thing of SRPO each. Everything is measured in one process, one run.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from srpo.config import PRESETS, TrainConfig, preset
from srpo.evaluate import EVAL_SEED, EvalSet, attribute_of, eval_set, judged_rates
from srpo.models import apply_checkpoint, generator_for
from srpo.rewards import load_reward
from srpo.rewards.base import TextImageReward
from srpo.rewards.srp import SRPScorer, augment
from srpo.sampling import labelled_grid, sample_images
from srpo.tiny_world.judge import hack_statistic
from srpo.train import train

REWARD = "tiny-biased"
# The control: the same rows trained on the clean tiny reward, judged on the same prompts and
# seeds. A row's drift there is the part of its drift the bias did not cause (the clean
# reward's own tastes, such as its photo/painting contrast rising with a cast, which SRP
# trains on by design); ``bias_drift`` is the difference.
CONTROL_REWARD = "tiny"
# The rows that get the control by default: every one of Table 1 but GRPO, whose raw drift is
# within the noise already (d = 0.24) and whose training is the bench's longest (94-249 s on
# 2 cores in the runs so far, the bench 27.8 min with the other five controls): a control
# for it could push the bench past its 30 minutes.
CONTROLLED = ("srpo", "direct_align_prefixed", "direct_align", "refl", "draft")
POSITIVE, NEGATIVE = (
    PRESETS["tiny-demo"]["positive_words"][0],
    PRESETS["tiny-demo"]["negative_words"][0],
)
NO_INVERSION = {"inversion": False}
# A drift is material from a medium effect size on (Cohen's d >= 0.5: half the spread of the
# statistic over the base model's images at fixed prompts and seeds). The generator's own
# spread (about 0.06, against 0.005 for the renderer's images) is the noise a shift is read
# against; one standard deviation would call only a shift of every image by its whole
# spread material.
MATERIAL_EFFECT = 0.5
# The lights that leave a neutral frame neutral, named in turn by the held-out prompts.
NEUTRAL_LIGHTS = ("bright", "dark")


def _old_discount(low: float, high: float) -> dict[str, dict[str, float]]:
    """The former discounts over sigma 0..1, as values at this window's ends (same lines)."""

    def at(clean: float, noisy: float) -> dict[str, float]:
        return {"low": clean + (noisy - clean) * low, "high": clean + (noisy - clean) * high}

    return {"discount_denoise": at(0.1, 0.25), "discount_inversion": at(0.3, 0.01)}


def _constant_k(k: float) -> dict[str, dict[str, float]]:
    return {"discount_denoise": {"low": k, "high": k}, "discount_inversion": {"low": k, "high": k}}


@dataclass(frozen=True)
class Row:
    """One run of the bench: a name, config overrides over ``tiny-demo``, and which of the
    measured rewards it trains on (``srp``, ``prefixed`` or ``plain``). The judged attribute is
    the run's positive word's."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    training_reward: str = "srp"


def rows() -> list[Row]:
    """Table 1's methods: SRPO, Direct-Align twice, ReFL, DRaFT-LV, GRPO."""
    return [
        Row("srpo"),
        Row(
            "direct_align_prefixed",
            {"method": "direct_align", "direct_align": NO_INVERSION, "reward_prefix": POSITIVE},
            training_reward="prefixed",
        ),
        Row(
            "direct_align",
            {"method": "direct_align", "direct_align": NO_INVERSION},
            training_reward="plain",
        ),
        Row("refl", {"method": "refl"}, training_reward="plain"),
        Row("draft", {"method": "draft"}, training_reward="plain"),
        # DanceGRPO trains one prompt per GPU per rollout, a group of 12 samples.
        Row("grpo", {"method": "grpo", "batch_size": 1}, training_reward="plain"),
    ]


def ablations() -> list[Row]:
    """SRPO with one thing changed each."""
    window = PRESETS["tiny-demo"]["direct_align"]["sigma_range"]
    return [
        Row("srpo_no_inversion", {"direct_align": NO_INVERSION}),
        Row("srpo_old_discount", {"direct_align": _old_discount(*window)}),
        # The maintainers' sanity check: late (clean) timesteps hack fast.
        Row("srpo_late_timesteps", {"direct_align": {"sigma_range": [0.05, 0.3], "d": 0.04}}),
        *(Row(f"srpo_k{k:g}", {"direct_align": _constant_k(k)}) for k in (0.0, 0.1, 0.5)),
        # A second attribute, steered by another word pair with the same reward.
        Row("srpo_lighting", {"positive_words": ["warm"], "negative_words": ["dark"]}),
    ]


def row_config(row: Row, steps: int, seed: int, reward: str = REWARD) -> TrainConfig:
    """``tiny-demo`` on ``reward`` (default ``tiny-biased``) with the row's overrides,
    ``steps`` updates."""
    fields = {"reward": reward, "steps": steps, "checkpoint_every": steps, "sample_every": 0}
    return preset("tiny-demo", **{**fields, "seed": seed, **row.overrides})


@torch.no_grad()
def rewards_of(
    reward: TextImageReward, images: torch.Tensor, prompts: Sequence[str], words: tuple[str, str]
):
    """Mean r(p), r("<positive>. p") and the SRP reward (k = 0) of the images."""
    pixels = images.to(reward.device)
    return {
        "plain": reward.score(pixels, list(prompts)).mean().item(),
        "prefixed": reward.score(pixels, augment(words[0], prompts)).mean().item(),
        "srp": SRPScorer(reward).score(pixels, list(prompts), *words, 0.0).mean().item(),
    }


def lit_eval_set(data: EvalSet) -> EvalSet:
    """``data`` with a neutral light named in each prompt (``bright``, ``dark``, in turn)."""
    prompts = [
        f"{NEUTRAL_LIGHTS[i % len(NEUTRAL_LIGHTS)]}. {p}" for i, p in enumerate(data.prompts)
    ]
    return EvalSet(prompts, data.seeds, data.steps, data.shift)


def judged_on(data: EvalSet, words: tuple[str, str]) -> EvalSet:
    """The held-out set a run with these words is judged on: the light named (neutral), except
    when the words steer the light itself."""
    attribute = attribute_of(words[0])
    return data if attribute and attribute[0] == "lighting" else lit_eval_set(data)


def measure(
    generator, reward, data: EvalSet, words: tuple[str, str]
) -> tuple[dict[str, Any], torch.Tensor]:
    """Judged rates, hack statistic and rewards of a generator's images of ``data``."""
    images = sample_images(generator, data.prompts, data.seeds, data.steps, data.shift)
    result = judged_rates(images, data.prompts, *words)
    result["rewards"] = rewards_of(reward, images, data.prompts, words)
    return result, images


def trained(config: TrainConfig, scratch: Path):
    """The generator ``config`` trains from the base, and the training's seconds."""
    began = time.perf_counter()
    result = train(config, scratch / "run")
    seconds = time.perf_counter() - began
    generator = generator_for(config)
    apply_checkpoint(generator, result.checkpoint, config)
    return generator, seconds


def control_drift(row: Row, data: EvalSet, base: dict[str, dict], steps: int, seed: int):
    """The row's hack drift when it trains on the clean reward instead (same prompts, seeds,
    updates and settings), and the seconds that took."""
    config = row_config(row, steps, seed, CONTROL_REWARD)
    words = (config.positive_words[0], config.negative_words[0])
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        generator, _ = trained(config, Path(scratch))
        after, _ = measure(generator, load_reward(CONTROL_REWARD), judged_on(data, words), words)
    return after["hack_cast"] - base[words]["hack_cast"], time.perf_counter() - began


def run_row(row: Row, data: EvalSet, base: dict[str, dict], steps: int, seed: int, spread: float):
    """Train one row from the base and judge it; returns its JSON row and its images."""
    config = row_config(row, steps, seed)
    words = (config.positive_words[0], config.negative_words[0])
    reward = load_reward(REWARD)
    with tempfile.TemporaryDirectory() as scratch:
        generator, seconds = trained(config, Path(scratch))
        after, images = measure(generator, reward, judged_on(data, words), words)
    before = base[words]
    drift = after["hack_cast"] - before["hack_cast"]
    return {
        "method": row.name,
        "words": list(words),
        "judged_word": words[0],
        "judged_shift": after["judged_positive_rate"] - before["judged_positive_rate"],
        "fidelity_change": after["prompt_fidelity"] - before["prompt_fidelity"],
        "hack_drift": drift,
        "hack_effect": drift / spread,
        "hack_material": drift >= MATERIAL_EFFECT * spread,
        "reward_gain": after["rewards"][row.training_reward]
        - before["rewards"][row.training_reward],
        "absolute_reward_gain": after["rewards"]["plain"] - before["rewards"]["plain"],
        "judged_rate_after": after["judged_positive_rate"],
        "seconds": round(seconds, 1),
    }, images


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs > 0 else math.inf


def goals(table: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's goals, each with the numbers it was judged on. The drift goal is judged on
    the raw drift, as the issue writes it; the same ratio on the bias-attributable drift
    (``bias_drift``, when the rows have their control) is reported beside it, not instead."""
    by = {r["method"]: r for r in table}
    srpo, prefixed = by["srpo"], by["direct_align_prefixed"]
    absolute = [r for r in table if r["method"] != "srpo"]
    drift_ratio = _ratio(srpo["hack_drift"], prefixed["hack_drift"])
    attributable = {}
    if "bias_drift" in srpo and "bias_drift" in prefixed:
        ratio = _ratio(srpo["bias_drift"], prefixed["bias_drift"])
        attributable = {
            "srpo_over_direct_align_prefixed_bias_drift": round(ratio, 3),
            "srpo_bias_drift_at_most_a_third_of_direct_align_prefixed": ratio <= 1 / 3,
        }
    return {
        "srpo_judged_shift_at_least_0.30": srpo["judged_shift"] >= 0.30,
        "srpo_drift_at_most_a_third_of_direct_align_prefixed": drift_ratio <= 1 / 3,
        "srpo_over_direct_align_prefixed_drift": round(drift_ratio, 3),
        **attributable,
        "srpo_fidelity_change_at_least_-0.05": srpo["fidelity_change"] >= -0.05,
        "absolute_methods_with_material_drift": sum(r["hack_material"] for r in absolute),
        "at_least_two_absolute_methods_drift": sum(r["hack_material"] for r in absolute) >= 2,
    }


def bench_hacking(
    steps: int = 40,
    prompts: int = 64,
    seed: int = 0,
    grid: str | Path | None = None,
    grid_rows: int = 6,
    include_ablations: bool = True,
    only: Sequence[str] | None = None,
    controls: Sequence[str] = CONTROLLED,
) -> dict[str, Any]:
    """Run every row (and the ablations), judge them, and optionally write the PNG grid.
    The rows named in ``controls`` are trained a second time on the clean reward, and get
    ``clean_reward_drift`` and ``bias_drift``."""
    began, cpu_began = time.perf_counter(), time.process_time()
    config = preset("tiny-demo", reward=REWARD)
    data = eval_set(config, prompts, EVAL_SEED)
    reward = load_reward(REWARD)
    generator = generator_for(config)
    table_rows = [r for r in rows() if not only or r.name in only]
    extra = [r for r in ablations() if not only or r.name in only] if include_ablations else []
    base: dict[tuple[str, str], dict] = {}
    base_images = None
    for row in [*table_rows, *extra]:
        config = row_config(row, steps, seed)
        words = (config.positive_words[0], config.negative_words[0])
        if words not in base:
            base[words], images = measure(generator, reward, judged_on(data, words), words)
            base_images = images if base_images is None else base_images
    spread = hack_statistic(base_images).std().item()
    results, columns = [], [base_images[:grid_rows]]
    for row in table_rows:
        result, images = run_row(row, data, base, steps, seed, spread)
        if row.name in controls:
            clean, seconds = control_drift(row, data, base, steps, seed)
            result |= {
                "clean_reward_drift": clean,
                "bias_drift": result["hack_drift"] - clean,
                "control_seconds": round(seconds, 1),
            }
        results.append(result)
        columns.append(images[:grid_rows])
    ablation_rows = [run_row(row, data, base, steps, seed, spread)[0] for row in extra]
    if grid is not None:
        write_grid(grid, columns, ["base", *(r["method"] for r in results)])
    output = {
        "reward": REWARD,
        "steps": steps,
        "prompts": len(data.prompts),
        "judged_prompts": "held-out content, light named: " + " / ".join(NEUTRAL_LIGHTS),
        "hack_statistic": "cool cast B - R of the background frame beyond what the light explains",
        "hack_spread": spread,
        "hack_threshold": MATERIAL_EFFECT * spread,
        "control_reward": CONTROL_REWARD,
        "controlled_rows": [r["method"] for r in results if "bias_drift" in r],
        "base": {f"{p}/{n}": b for (p, n), b in base.items()},
        "rows": results,
        "ablations": ablation_rows,
        "seconds": round(time.perf_counter() - began, 1),
        # CPU seconds of this process, all its threads: on a shared machine, wall seconds
        # measure the load as much as the bench
        "cpu_seconds": round(time.process_time() - cpu_began, 1),
        "threads": torch.get_num_threads(),
    }
    if {"srpo", "direct_align_prefixed"} <= {r["method"] for r in results}:
        output["goals"] = goals(results)
    return output


def write_grid(path: str | Path, columns: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """One column per method (the same seeds down each column), labelled."""
    count = len(columns[0])
    images = torch.stack([columns[c][r] for r in range(count) for c in range(len(columns))])
    labels = [names[c] for _ in range(count) for c in range(len(columns))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(
        images, labels, title="tiny-biased: same seeds, one column per method", columns=len(columns)
    ).save(path)
