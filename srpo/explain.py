"""``srpo explain``: what a config will do, before any GPU time is spent.

Everything here is read from the config, plus the transformer's architecture (its config
file only, or the released model's written in :mod:`srpo.models.full_size`: the model is
built on the meta device, so no weights are loaded) to count the trainable parameters and
plan the memory per GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from srpo.config import TrainConfig
from srpo.models.full_size import FULL_SIZE, Architecture
from srpo.monitor import monitor_name
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


def multiplier_table(config: TrainConfig) -> dict[str, float] | None:
    """The reward multiplier at the window's low end, middle and high end (None if unset)."""
    settings = config.direct_align
    if settings.reward_multiplier is None:
        return None
    low, high = settings.sigma_range
    levels = torch.tensor([low, (low + high) / 2, high], dtype=torch.float64)
    values = settings.multiplier_at(levels).tolist()
    return {key: round(float(v), 6) for key, v in zip(("low", "mid", "high"), values, strict=True)}


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


def architecture(config: TrainConfig) -> Architecture | None:
    """The transformer the run trains, from its config file only (never its weights).

    The tiny world's from its manifest; a local folder's (or a hub id already in the local
    cache) from its ``transformer/config.json``; the released model of a backend (no
    ``model_path``, or its hub id) from :data:`srpo.models.full_size.FULL_SIZE`. None when
    another model's config is not here (this never waits on the network).
    """
    if config.model == "tiny":
        from srpo.tiny_world.weights import WEIGHTS_DIR, read_manifest

        try:
            manifest = read_manifest(config.model_path or WEIGHTS_DIR)
        except (OSError, ValueError, KeyError):
            return None
        vae_factor = 2 ** (len(manifest["configs"]["vae"]["block_out_channels"]) - 1)
        return Architecture(
            "FluxTransformer2DModel",
            dict(manifest["configs"]["transformer"]),
            pixels_per_token=2 * vae_factor,
            text_tokens=int(manifest["configs"]["max_tokens"]),
        )
    from srpo.models.loader import backend

    released = FULL_SIZE[config.model]
    source = config.model_path or backend(config.model).hub_id
    try:
        with warnings.catch_warnings():  # huggingface_hub's deprecation notes, not ours
            warnings.simplefilter("ignore")
            local = released.transformer_class().load_config(
                source, subfolder="transformer", local_files_only=True
            )
    except (OSError, ValueError):
        if source != backend(config.model).hub_id:
            return None
        return released
    return replace(released, config=dict(local))


def parameter_counts(config: TrainConfig, arch: Architecture) -> tuple[int, int]:
    """``(all, trainable)`` parameters of the transformer (trainable: all, or the LoRA
    adapters'), counted on the meta device."""
    transformer = arch.build_meta()
    total = sum(p.numel() for p in transformer.parameters())
    if config.lora is None:
        return total, total
    from srpo.models.loader import add_lora

    transformer.requires_grad_(False)
    add_lora(transformer, config.lora)
    return total, sum(p.numel() for p in transformer.parameters() if p.requires_grad)


def _size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def memory_plan(config: TrainConfig, processes: int, arch: Architecture) -> dict[str, Any]:
    """Bytes per GPU of the transformer's training state and of its activations.

    Parameters, gradients and AdamW's two moments follow :mod:`srpo.precision` (trainable
    parts and optimiser state in the trainable dtype, a frozen base under LoRA in the frozen
    dtype). A full fine-tune on several processes is planned sharded over them (FSDP full
    shard, as the official runs train); LoRA is planned replicated (DDP).

    Activations are an estimate for one forward with gradient (Direct-Align backpropagates
    each branch on its own): ``34 s b h`` bytes per block at 16-bit activations (Korthikanti
    et al. 2022, attention kernels that keep no score matrix), for ``s`` image plus text tokens,
    ``b`` the batch (doubled under classifier-free guidance) and ``h`` the token width. With
    gradient checkpointing each block keeps only its input (``2 s b h`` at 16 bits) and one
    block's activations are rebuilt at a time. The VAE decode and the reward's graph come on
    top.
    """
    total, trainable = parameter_counts(config, arch)
    policy = config.precision_policy
    train_bytes = _size(policy.trainable)
    sharded = config.lora is None and processes > 1
    shards = processes if sharded else 1
    if config.lora is None:
        parameters = total * train_bytes / shards
    else:
        parameters = (total * _size(policy.frozen) + trainable * train_bytes) / shards
    tokens = (config.resolution // arch.pixels_per_token) ** 2 + arch.text_tokens
    batch = config.batch_size * (2 if config.cfg_scale != 1.0 else 1)
    scale = _size(policy.compute) / 2  # the 34 s b h count is for 16-bit activations
    block = 34 * tokens * batch * arch.width * scale
    without = arch.blocks * block
    with_checkpointing = arch.blocks * 2 * tokens * batch * arch.width * scale + block
    plan = {
        "parameters": parameters,
        "gradients": trainable * train_bytes / shards,
        "optimizer_state": 2 * trainable * train_bytes / shards,
        "activations_without_checkpointing": without,
        "activations_with_checkpointing": with_checkpointing,
    }
    state = plan["parameters"] + plan["gradients"] + plan["optimizer_state"]
    used = with_checkpointing if config.gradient_checkpointing else without
    return {
        "gib": {key: round(value / 2**30, 3) for key, value in plan.items()}
        | {"total": round((state + used) / 2**30, 3)},
        "bytes": {key: int(value) for key, value in plan.items()},
        "sharded_over": shards,
        "gradient_checkpointing": config.gradient_checkpointing,
        "tokens": tokens,
        "forward_batch": batch,
        "parameters_counted": {"all": total, "trainable": trainable},
    }


def explain(config: TrainConfig, processes: int = 1, count: bool = True) -> dict[str, Any]:
    """The summary ``srpo explain --json`` prints and the Train tab shows.

    ``processes``: the ranks the run will have (each takes its own prompts and ``s*``).
    ``count``: read the architecture to count trainable parameters and plan the memory per
    GPU (both None when False or when the architecture is not here).
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    arch = architecture(config) if count else None
    memory = None if arch is None else memory_plan(config, processes, arch)
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
        "slice_clamp": settings.slice_clamp if direct_align else None,
        "reward_multiplier": multiplier_table(config) if direct_align else None,
        "discount": discount_table(config) if config.method == "srpo" else None,
        "inversion": config.method == "srpo" and settings.inversion,
        "control_words": word_cycle(config),
        "guidance": {
            "rollout": config.effective_rollout_guidance,
            "train": config.train_guidance,
        },
        "cfg": {"rollout": config.effective_rollout_cfg_scale, "train": config.cfg_scale},
        "precision": config.precision_policy.describe(),
        "optimizer": config.adamw(),
        "trainable_parameters": memory and memory["parameters_counted"]["trainable"],
        "memory_per_gpu": memory,
        "processes": processes,
        "effective_batch": config.batch_size * config.gradient_accumulation * processes,
        "images_per_update": samples * config.gradient_accumulation * processes,
        "timesteps_per_update": config.batch_size * config.gradient_accumulation * processes
        if direct_align
        else None,
        "updates": config.steps,
        "updates_per_checkpoint": config.checkpoint_every,
        "monitor": {"gold": monitor_name(config), "every": config.sample_every or None},
    }


def explain_markdown(summary: dict[str, Any], escape: Callable[[str], str] = str) -> str:
    """The summary as a short Markdown list (the Train tab's view of it).

    ``escape`` makes user-given text (names, control words) safe for where it is shown.
    """
    what = f"{escape(summary['method'])} on {escape(summary['model'])}"
    lines = [f"**What this run does:** {what}, {escape(summary['reward_text'])}"]
    if summary["sigma_window"]:
        low, high = summary["sigma_window"]
        clamp = " (clamped into the window near its ends)" if summary.get("slice_clamp") else ""
        lines.append(f"- s* window {low}..{high}, d = {summary['d']}{clamp}")
    multiplier = summary.get("reward_multiplier")
    if multiplier:
        lines.append(
            f"- reward multiplier {multiplier['low']} / {multiplier['mid']} / "
            f"{multiplier['high']} (window low / mid / high)"
        )
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
    cfg = summary.get("cfg")
    if cfg and (cfg["rollout"] != 1.0 or cfg["train"] != 1.0):
        lines.append(f"- CFG: rollout {cfg['rollout']}, train {cfg['train']}")
    lines.append(
        f"- precision: trainable {precision['trainable']}, frozen {precision['frozen']}, "
        f"flow math {precision['flow_math']}"
    )
    count = summary["trainable_parameters"]
    lines.append(f"- trainable parameters: {'unknown' if count is None else f'{count:,}'}")
    memory = summary.get("memory_per_gpu")
    if memory:
        gib = memory["gib"]
        where = f"sharded over {memory['sharded_over']}" if memory["sharded_over"] > 1 else "each"
        lines.append(
            f"- memory per GPU ({where}): parameters {gib['parameters']} GiB, gradients "
            f"{gib['gradients']} GiB, optimiser {gib['optimizer_state']} GiB, activations "
            f"{gib['activations_without_checkpointing']} GiB without / "
            f"{gib['activations_with_checkpointing']} GiB with gradient checkpointing "
            f"(estimate); total {gib['total']} GiB as configured"
        )
    lines.append(
        f"- effective batch {summary['effective_batch']} over {summary['processes']} process(es); "
        f"{summary['updates']} updates, a checkpoint every {summary['updates_per_checkpoint']}"
    )
    monitor = summary["monitor"]
    watched = "the judge" if monitor["gold"] == "judge" else f"held-out {escape(monitor['gold'])}"
    lines.append(
        f"- hacking monitor: {watched} and image statistics every {monitor['every']} updates"
        if monitor["every"]
        else "- hacking monitor: off (sample_every 0 renders no sample steps)"
    )
    return "\n".join(lines)
