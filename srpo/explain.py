"""``srpo explain``: what a config will do, before any GPU time is spent.

Everything here is read from the config, plus the transformer's architecture (its config
file only: the model is built on the meta device, so no weights are loaded) to count the
trainable parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from srpo.config import TrainConfig
from srpo.rewards.srp import ControlWords, augment

WORD_STEPS = 10


def discount_table(config: TrainConfig) -> dict[str, dict[str, float]]:
    """``k_den`` and ``k_inv`` at the window's low end, middle and high end.

    The denoise branch reads ``k_den`` at ``s*``; the inversion branch reads ``k_inv`` at its
    own level ``s* - d`` (so at ``s* = high`` it uses a value ``d`` below the high end's).
    """
    settings = config.direct_align
    low, high = settings.sigma_range
    points = {"low": low, "mid": (low + high) / 2, "high": high}
    table = {}
    for name, discount in (
        ("denoise", settings.discount_denoise),
        ("inversion", settings.discount_inversion),
    ):
        values = discount.at(torch.tensor(list(points.values()), dtype=torch.float64), (low, high))
        table[name] = {key: round(float(v), 6) for key, v in zip(points, values, strict=True)}
    return table


def word_cycle(config: TrainConfig, steps: int = WORD_STEPS) -> list[list[str]]:
    """The ``[positive, negative]`` pair of each of the first ``steps`` steps (SRPO only)."""
    if config.method != "srpo":
        return []
    words = ControlWords.of(config.positive_words, config.negative_words, config.word_mode)
    return [list(words.pick(step, config.seed)) for step in range(steps)]


def reward_text(config: TrainConfig) -> str:
    """How the reward's text is made from a prompt ``p``, in words."""
    if config.method == "srpo":
        return "SRP: (1 + k) f(<positive>. p) - f(<negative>. p); inversion branch swapped"
    example = augment(config.reward_prefix, ["p"])[0] if config.reward_prefix else "p"
    return f"r({example})"


def trainable_parameters(config: TrainConfig) -> int | None:
    """Parameters the run trains (all, or the LoRA adapters'), counted on the meta device.

    Only local files are read (a folder, or a hub id already in the local cache), so this
    never waits on the network; None when the transformer's config is not here.
    """
    from diffusers import FluxTransformer2DModel

    try:
        if config.model == "tiny":
            from srpo.tiny_world.weights import WEIGHTS_DIR, read_manifest

            architecture = read_manifest(config.model_path or WEIGHTS_DIR)["configs"]["transformer"]
        else:
            from srpo.models.loader import FLUX_HUB_ID

            source = config.model_path or FLUX_HUB_ID
            with warnings.catch_warnings():  # huggingface_hub's deprecation notes, not ours
                warnings.simplefilter("ignore")
                architecture = FluxTransformer2DModel.load_config(
                    source, subfolder="transformer", local_files_only=True
                )
    except (OSError, ValueError, KeyError):
        return None
    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(architecture)
    if config.lora is None:
        return sum(p.numel() for p in transformer.parameters())
    from srpo.models.loader import add_lora

    transformer.requires_grad_(False)
    add_lora(transformer, config.lora)
    return sum(p.numel() for p in transformer.parameters() if p.requires_grad)


def explain(config: TrainConfig, processes: int = 1, count: bool = True) -> dict[str, Any]:
    """The summary ``srpo explain --json`` prints and the Train tab shows.

    ``processes``: the ranks the run will have (each takes its own prompts and ``s*``).
    ``count``: read the architecture to count trainable parameters (None when False).
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    settings = config.direct_align
    samples = config.batch_size * (config.grpo.group_size if config.method == "grpo" else 1)
    direct_align = config.method in ("srpo", "direct_align")
    return {
        "method": config.method,
        "model": config.model,
        "reward": config.reward,
        "reward_text": reward_text(config),
        "sigma_window": list(settings.sigma_range) if direct_align else None,
        "d": settings.d if direct_align else None,
        "discount": discount_table(config) if config.method == "srpo" else None,
        "inversion": config.method == "srpo" and settings.inversion,
        "control_words": word_cycle(config),
        "guidance": {
            "rollout": config.effective_rollout_guidance,
            "train": config.train_guidance,
        },
        "precision": config.precision_policy.describe(),
        "optimizer": config.adamw(),
        "trainable_parameters": trainable_parameters(config) if count else None,
        "processes": processes,
        "effective_batch": config.batch_size * config.gradient_accumulation * processes,
        "images_per_update": samples * config.gradient_accumulation * processes,
        "timesteps_per_update": config.batch_size * config.gradient_accumulation * processes
        if direct_align
        else None,
        "updates": config.steps,
        "updates_per_checkpoint": config.checkpoint_every,
    }


def explain_markdown(summary: dict[str, Any], escape: Callable[[str], str] = str) -> str:
    """The summary as a short Markdown list (the Train tab's view of it).

    ``escape`` makes user-given text (names, control words) safe for where it is shown.
    """
    what = f"{escape(summary['method'])} on {escape(summary['model'])}"
    lines = [f"**What this run does:** {what}, {escape(summary['reward_text'])}"]
    if summary["sigma_window"]:
        low, high = summary["sigma_window"]
        lines.append(f"- s* window {low}..{high}, d = {summary['d']}")
    if summary["discount"]:
        den, inv = summary["discount"]["denoise"], summary["discount"]["inversion"]
        lines.append(
            f"- k_den {den['low']} / {den['mid']} / {den['high']}, "
            f"k_inv {inv['low']} / {inv['mid']} / {inv['high']} (window low / mid / high)"
        )
    if summary["control_words"]:
        pairs = ", ".join(f"{escape(p)} / {escape(n)}" for p, n in summary["control_words"][:5])
        lines.append(f"- control words, steps 0-4: {pairs}")
    guidance, precision = summary["guidance"], summary["precision"]
    lines.append(f"- guidance: rollout {guidance['rollout']}, train {guidance['train']}")
    lines.append(
        f"- precision: trainable {precision['trainable']}, frozen {precision['frozen']}, "
        f"flow math {precision['flow_math']}"
    )
    count = summary["trainable_parameters"]
    lines.append(f"- trainable parameters: {'unknown' if count is None else f'{count:,}'}")
    lines.append(
        f"- effective batch {summary['effective_batch']} over {summary['processes']} process(es); "
        f"{summary['updates']} updates, a checkpoint every {summary['updates_per_checkpoint']}"
    )
    return "\n".join(lines)
