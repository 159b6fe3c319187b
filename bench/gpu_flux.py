"""Seconds per LoRA Direct-Align (SRPO) update at FLUX.1-dev size, and peak GPU memory.

Builds a transformer with FLUX.1-dev's configuration (12B parameters, random weights, bf16),
the FLUX VAE and an HPSv2-architecture reward (open_clip ViT-H-14, random weights), adds LoRA
and gradient checkpointing, and times the trainer's SRPO update (rollout included, or offline)
at 720x720. No weights are downloaded: the cost of a step does not depend on their values.
Not part of ``make test``; run it on a GPU and copy the JSON into docs/benchmarks.md:

    python bench/gpu_flux.py --resolution 720 --steps 5
    python bench/gpu_flux.py --offline            # the update without the 25-step rollout

``--layers/--single-layers/--reward-arch`` shrink the model for a CPU dry run of the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import open_clip
import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel

from srpo.config import OFFICIAL_NEGATIVE_WORDS, OFFICIAL_POSITIVE_WORDS, preset
from srpo.direct_align import DirectAlignUpdate
from srpo.models.flux import FluxGenerator
from srpo.models.full_size import FULL_SIZE
from srpo.offline import OfflinePool
from srpo.precision import Precision
from srpo.rewards.hps import HPSReward
from srpo.train import draw, prepare_trainable
from srpo.update import UpdateInputs

FLUX_VAE = {
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


PROMPT = "a photo of a cat"
# Every text the reward scores, cached up front: no tokenizer files are needed.
TEXTS = [PROMPT] + [f"{w}. {PROMPT}" for w in OFFICIAL_POSITIVE_WORDS + OFFICIAL_NEGATIVE_WORDS]


class RandomT5Prompts:
    """Stands in for T5-XXL + CLIP-L: FLUX-shaped prompt embeddings (512 x 4096, pooled 768)."""

    def __init__(self, length: int = 512) -> None:
        self.length = length

    def encode(self, prompts):
        seed = torch.Generator().manual_seed(len(prompts))
        sequence = torch.randn(len(prompts), self.length, 4096, generator=seed)
        return sequence, torch.randn(len(prompts), 768, generator=seed)


def build(args: argparse.Namespace, device: torch.device):
    """The FLUX-sized generator and the ViT-H-14 reward on ``device``."""
    config = {
        **FULL_SIZE["flux"].config,  # FLUX.1-dev's released transformer config
        "num_layers": args.layers,
        "num_single_layers": args.single_layers,
    }
    with torch.device(device):
        transformer = FluxTransformer2DModel(**config).to(torch.bfloat16)
        vae = AutoencoderKL(**FLUX_VAE).to(torch.bfloat16)
        clip = open_clip.create_model(args.reward_arch, pretrained=None, load_weights=False)
    generator = FluxGenerator(
        transformer,
        vae,
        RandomT5Prompts(args.text_length),
        (args.resolution,) * 2,
        3.5,
        precision=Precision.of("bf16"),
    )
    reward = HPSReward(clip.to(device=device, dtype=torch.bfloat16), None, name="hps")
    reward._text_cache.update(
        {
            text: torch.nn.functional.normalize(torch.randn(clip.text_projection.shape[1]), dim=0)
            for text in TEXTS
        }
    )
    return generator, reward.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=720)
    parser.add_argument("--steps", type=int, default=5, help="timed updates after 1 warm-up")
    parser.add_argument("--rollout-steps", type=int, default=25)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--offline", action="store_true", help="skip the rollout")
    parser.add_argument("--layers", type=int, default=19)
    parser.add_argument("--single-layers", type=int, default=38)
    parser.add_argument("--text-length", type=int, default=512)
    parser.add_argument("--reward-arch", default="ViT-H-14")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = preset(
        "flux-lora-1gpu",
        prompts=[PROMPT],
        prompts_file=None,
        resolution=args.resolution,
        rollout_steps=args.rollout_steps,
        lora={"rank": args.lora_rank, "alpha": args.lora_rank},
    )
    torch.manual_seed(0)
    generator, reward = build(args, device)
    params = prepare_trainable(generator, config)
    adamw = config.adamw()
    optimizer = torch.optim.AdamW(params, lr=adamw["lr"])
    pool = None
    if args.offline:
        pool = OfflinePool(generator.noise(1, torch.Generator().manual_seed(0)).cpu(), [None])
    update = DirectAlignUpdate(UpdateInputs(config, generator, reward, pool))
    prompts = config.prompt_list()
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        update(step, draw(config, step, 0, 0, prompts), lambda loss: loss.backward())
        torch.nn.utils.clip_grad_norm_(params, adamw["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "transformer_parameters": sum(
                    p.numel() for p in generator.transformer.parameters()
                ),
                "trainable_parameters": sum(p.numel() for p in params),
                "resolution": args.resolution,
                "rollout_steps": 0 if args.offline else args.rollout_steps,
                "lora_rank": args.lora_rank,
                "gradient_checkpointing": config.gradient_checkpointing,
                "seconds_per_update": round(statistics.median(times), 3),
                "peak_memory_gib": None if peak is None else round(peak, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
