"""One backend's Direct-Align (SRPO) update at its released size: seconds, and the memory plan
of ``srpo explain`` checked against what the run holds.

``--model NAME`` (flux, flux2, qwen-image, sd3, z-image) builds the released transformer
config (:data:`srpo.models.full_size.FULL_SIZE`, random weights), the backend's VAE class at
its published shape, random prompt embeddings of its text encoders' shape, and a
HPSv2/PickScore-architecture reward (open_clip ViT-H-14, random weights), then times the
trainer's SRPO update under the model's one-GPU LoRA preset (``--full``: a full fine-tune).
No weights are downloaded: the cost of a step does not depend on their values.

The plan (:func:`srpo.explain.memory_plan`) is printed beside what was measured. Parameters,
gradients and AdamW state are counted on the tensors themselves (exact on any device, so
their ratios to the plan must be 1). Activations are measured only on a GPU: the peak
allocated during the update above what was allocated before it (this includes the VAE decode,
the reward's graph and the rollout's buffers, which the plan puts on top of its estimate).

Not part of ``make test``. No GPU was lent to the session that wrote this, so it has run only
on CPU with ``--tiny``: the backend's random small config (:mod:`srpo.models.small`, the same
classes), planned from that small architecture; there the activation column is None. On a
GPU, copy the JSON into docs/benchmarks.md:

    python bench/gpu_backends.py --model qwen-image --resolution 720 --steps 3
    python bench/gpu_backends.py --model flux --offline      # without the rollout
    python bench/gpu_backends.py --model sd3 --tiny          # the CPU dry run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from srpo.config import TrainConfig, preset
from srpo.direct_align import DirectAlignUpdate
from srpo.explain import memory_plan
from srpo.models.full_size import FULL_SIZE, Architecture
from srpo.models.loader import backend
from srpo.offline import OfflinePool
from srpo.train import draw, prepare_trainable
from srpo.update import UpdateInputs

PROMPT = "a photo of a cat"
# FLUX.1's VAE (Z-Image uses it too) and SD3.5's: the same AutoencoderKL, another scale.
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
SD3_VAE = FLUX_VAE | {"scaling_factor": 1.5305, "shift_factor": 0.0609}
# Qwen-Image's and FLUX.2's VAEs are their classes' default configs.
VAES: dict[str, tuple[str, dict[str, Any]]] = {
    "flux": ("AutoencoderKL", FLUX_VAE),
    "z-image": ("AutoencoderKL", FLUX_VAE),
    "sd3": ("AutoencoderKL", SD3_VAE),
    "qwen-image": ("AutoencoderKLQwenImage", {}),
    "flux2": ("AutoencoderKLFlux2", {}),
}
MASKED = ("qwen-image", "z-image")  # prompts at their own lengths, with a mask


class RandomPrompts:
    """Prompt embeddings of a backend's shape: ``[B, L, D]``, pooled ``[B, P]`` (and a mask)."""

    def __init__(self, length: int, width: int, pooled: int, masked: bool) -> None:
        self.length, self.width, self.pooled, self.masked = length, width, pooled, masked

    def encode(self, prompts):
        seed = torch.Generator().manual_seed(len(prompts))
        n = len(prompts)
        out = (
            torch.randn(n, self.length, self.width, generator=seed),
            torch.randn(n, self.pooled, generator=seed),
        )
        return (*out, torch.ones(n, self.length, dtype=torch.bool)) if self.masked else out


def run_config(args: argparse.Namespace) -> TrainConfig:
    """The model's one-GPU LoRA preset on one prompt (``--full``: no LoRA)."""
    overrides: dict[str, Any] = {
        "prompts": [PROMPT],
        "prompts_file": None,
        "lora": None if args.full else {"rank": args.lora_rank, "alpha": args.lora_rank},
    }
    if args.rollout_steps is not None:
        overrides["rollout_steps"] = args.rollout_steps
    if args.tiny:  # words the small reward's tokenizer knows
        from srpo.models.small import SMALL_RESOLUTION

        overrides |= {"resolution": SMALL_RESOLUTION, "positive_words": ["photo"]}
        overrides |= {"negative_words": ["painting"], "prompts": ["a red circle"]}
    else:
        overrides["resolution"] = args.resolution
    return preset(f"{args.model}-lora-1gpu", **overrides)


def build_full_size(args: argparse.Namespace, config: TrainConfig, device: torch.device):
    """The released-size generator, its architecture and a ViT-H-14 reward on ``device``."""
    import diffusers
    import open_clip

    from srpo.rewards.hps import HPSReward

    arch = FULL_SIZE[args.model]
    length = args.text_length or arch.text_tokens
    arch = Architecture(arch.cls, arch.config, arch.pixels_per_token, length)
    policy = config.precision_policy
    vae_class, vae_config = VAES[args.model]
    c = arch.config
    prompts = RandomPrompts(
        length,
        int(c.get("joint_attention_dim") or c["cap_feat_dim"]),
        int(c.get("pooled_projection_dim", 0)),
        args.model in MASKED,
    )
    with torch.device(device):
        transformer = arch.transformer_class().from_config(arch.config).to(policy.frozen)
        vae = getattr(diffusers, vae_class)(**vae_config).to(policy.frozen)
        clip = open_clip.create_model(args.reward_arch, pretrained=None, load_weights=False)
    options: dict[str, Any] = {"resolution": (config.resolution,) * 2, "precision": policy}
    if args.model in ("flux", "flux2"):
        options["guidance"] = config.train_guidance
    generator = backend(args.model).load_class()(transformer, vae, prompts, **options)
    reward = HPSReward(clip.to(device=device, dtype=policy.frozen), None, name="hps")
    # Every text the reward scores, cached up front: no tokenizer files are needed.
    texts = [PROMPT] + [f"{w}. {PROMPT}" for w in config.positive_words + config.negative_words]
    width = clip.text_projection.shape[1]
    reward._text_cache.update(
        {t: torch.nn.functional.normalize(torch.randn(width), dim=0) for t in texts}
    )
    return generator, arch, reward.to(device)


def build_tiny(args: argparse.Namespace, config: TrainConfig, device: torch.device):
    """The backend's random small config, stored as the policy stores frozen parts."""
    from srpo.benchmarks.step import small_clip_reward
    from srpo.models.small import SMALL_RESOLUTION, small_generator

    policy = config.precision_policy
    generator = small_generator(args.model).to(device)
    for module in generator.modules():
        module.to(policy.frozen)
    generator.precision = policy
    length = generator.encode_prompts(config.prompt_list()).prompt_embeds.shape[1]
    config_dict = dict(generator.transformer.config)
    arch = Architecture(FULL_SIZE[args.model].cls, config_dict, 2 * generator.vae_factor, length)
    return generator, arch, small_clip_reward(SMALL_RESOLUTION).to(device)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time the update and compare the plan with what the run holds."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = run_config(args)
    torch.manual_seed(0)
    build = build_tiny if args.tiny else build_full_size
    generator, arch, reward = build(args, config, device)
    generator.cfg_scale = config.cfg_scale  # the gradient forward's; the rollout has its own
    plan = memory_plan(config, 1, arch)
    params = prepare_trainable(generator, config)
    adamw = config.adamw()
    optimizer = torch.optim.AdamW(params, lr=adamw["lr"], weight_decay=adamw["weight_decay"])
    pool = None
    if args.offline:
        pool = OfflinePool(generator.noise(1, torch.Generator().manual_seed(0)).cpu(), [None])
    update = DirectAlignUpdate(UpdateInputs(config, generator, reward, pool))
    prompts = config.prompt_list()
    cuda = device.type == "cuda"
    times, held, activations = [], {}, None
    for step in range(args.steps + 1):
        if cuda:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        update(step, draw(config, step, 0, 0, prompts), lambda loss: loss.backward())
        held["gradients"] = tensor_bytes(p.grad for p in params if p.grad is not None)
        torch.nn.utils.clip_grad_norm_(params, adamw["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
            activations = torch.cuda.max_memory_allocated() - before
        if step:
            times.append(time.perf_counter() - began)
    held["parameters"] = tensor_bytes(generator.transformer.parameters())
    held["optimizer_state"] = tensor_bytes(
        t for state in optimizer.state.values() for t in state.values() if t.numel() > 1
    )
    planned = plan["bytes"]
    key = (
        "activations_with_checkpointing"
        if config.gradient_checkpointing
        else "activations_without_checkpointing"
    )
    rows = {name: (planned[name], held[name]) for name in held}
    rows[key] = (planned[key], activations)
    gib = 2**30
    return {
        "model": args.model,
        "size": "tiny" if args.tiny else "released",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "resolution": config.resolution,
        "lora_rank": None if config.lora is None else config.lora.rank,
        "rollout_steps": 0 if args.offline else config.rollout_steps,
        "precision": config.precision,
        "gradient_checkpointing": config.gradient_checkpointing,
        "transformer_parameters": plan["parameters_counted"]["all"],
        "trainable_parameters": sum(p.numel() for p in params),
        "seconds_per_update": round(statistics.median(times), 3),
        "plan_vs_measured_gib": {
            name: {
                "plan": round(p / gib, 6),
                "measured": None if m is None else round(m / gib, 6),
                "ratio": None if m is None or not p else round(m / p, 3),
            }
            for name, (p, m) in rows.items()
        },
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / gib, 2) if cuda else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(FULL_SIZE))
    parser.add_argument("--tiny", action="store_true", help="the random small config (CPU)")
    parser.add_argument("--full", action="store_true", help="full fine-tune instead of LoRA")
    parser.add_argument("--resolution", type=int, default=720)
    parser.add_argument("--steps", type=int, default=3, help="timed updates after 1 warm-up")
    parser.add_argument("--rollout-steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--offline", action="store_true", help="skip the rollout")
    parser.add_argument("--text-length", type=int, default=None, help="default: the backend's")
    parser.add_argument("--reward-arch", default="ViT-H-14")
    print(json.dumps(measure(parser.parse_args())))


if __name__ == "__main__":
    main()
