"""The tiny world's generator: the FLUX backend with the project's own small weights."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel

from srpo.models.flux import FluxGenerator
from srpo.precision import Precision
from srpo.tiny_world.models import TinyPromptEncoder
from srpo.tiny_world.weights import WEIGHTS_DIR, load_component, read_manifest

DEFAULT_SAMPLING = {"steps": 20, "shift": 1.0, "cfg_scale": 1.0}


def sampling_defaults(directory: str | Path = WEIGHTS_DIR) -> dict[str, float]:
    """Rollout steps, shift and guidance the shipped generator was gated with."""
    return {**DEFAULT_SAMPLING, **read_manifest(Path(directory)).get("sampling", {})}


def load_tiny_generator(
    directory: str | Path = WEIGHTS_DIR, cfg_scale: float | None = None, precision: str = "fp32"
) -> FluxGenerator:
    """Build the tiny FLUX transformer, VAE and text tower from the manifest and load them,
    stored in the precision policy's frozen dtype (the trainer upcasts what it trains)."""
    directory = Path(directory)
    configs = read_manifest(directory)["configs"]
    # Keys such as ``_use_default_values`` would make diffusers drop the measured latent
    # scale and shift; the manifest's values are the ones the generator was trained with.
    vae_config = {k: v for k, v in configs["vae"].items() if not k.startswith("_")}
    vae = load_component(AutoencoderKL.from_config(vae_config), "vae", directory)
    transformer = load_component(
        FluxTransformer2DModel(**configs["transformer"]), "transformer", directory
    )
    text = load_component(
        CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])), "text_encoder", directory
    )
    scale = sampling_defaults(directory)["cfg_scale"] if cfg_scale is None else cfg_scale
    policy = Precision.of(precision)
    if policy.frozen != torch.float32:
        for module in (vae, transformer, text):
            module.to(policy.frozen)
    return FluxGenerator(
        transformer,
        vae,
        TinyPromptEncoder(text.eval().requires_grad_(False)),
        resolution=(64, 64),
        cfg_scale=scale,
        precision=policy,
        packed_noise=True,  # the seeds its gates were measured on
    )
