"""The released models' transformer architectures, written here from their published
``transformer/config.json`` (no download), for memory plans of full-size runs.

Each entry names the diffusers class, the config it is built from, the width of its token
stream, how many blocks run over all tokens, and the longest text sequence its pipeline feeds
(:mod:`srpo.explain` counts parameters on the meta device and estimates activations from
these).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """A transformer class and config, with what an activation estimate needs of it."""

    cls: str
    config: dict[str, Any] = field(default_factory=dict)
    #: pixels per token side: every released backend has a VAE factor of 8 and packs 2x2
    pixels_per_token: int = 16
    text_tokens: int = 512

    def transformer_class(self) -> type:
        return getattr(importlib.import_module("diffusers"), self.cls)

    def build_meta(self) -> nn.Module:
        """The transformer on the meta device (shapes only, no memory)."""
        with torch.device("meta"):
            return self.transformer_class().from_config(self.config)

    @property
    def width(self) -> int:
        """The hidden size of the token stream."""
        if "dim" in self.config:  # Z-Image
            return int(self.config["dim"])
        return int(self.config["num_attention_heads"]) * int(self.config["attention_head_dim"])

    @property
    def blocks(self) -> int:
        """Transformer blocks run on every forward (joint, single-stream and refiners)."""
        c = self.config
        if "n_layers" in c:  # Z-Image: main layers plus the noise and caption refiners
            return int(c["n_layers"]) + 2 * int(c["n_refiner_layers"])
        return int(c["num_layers"]) + int(c.get("num_single_layers", 0))


FULL_SIZE: dict[str, Architecture] = {
    # black-forest-labs/FLUX.1-dev (11.9 B)
    "flux": Architecture(
        "FluxTransformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": True,
            "axes_dims_rope": [16, 56, 56],
        },
    ),
    # black-forest-labs/FLUX.2-dev (32.2 B)
    "flux2": Architecture(
        "Flux2Transformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 128,
            "num_layers": 8,
            "num_single_layers": 48,
            "attention_head_dim": 128,
            "num_attention_heads": 48,
            "joint_attention_dim": 15360,
            "timestep_guidance_channels": 256,
            "mlp_ratio": 3.0,
            "axes_dims_rope": [32, 32, 32, 32],
            "rope_theta": 2000,
            "guidance_embeds": True,
        },
    ),
    # Qwen/Qwen-Image (20.4 B); prompts keep their own length, at most 1024 tokens
    "qwen-image": Architecture(
        "QwenImageTransformer2DModel",
        {
            "patch_size": 2,
            "in_channels": 64,
            "out_channels": 16,
            "num_layers": 60,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 3584,
            "guidance_embeds": False,
            "axes_dims_rope": [16, 56, 56],
        },
    ),
    # stabilityai/stable-diffusion-3.5-medium (2.2 B); CLIP 77 + T5 256 tokens
    "sd3": Architecture(
        "SD3Transformer2DModel",
        {
            "sample_size": 128,
            "patch_size": 2,
            "in_channels": 16,
            "num_layers": 24,
            "attention_head_dim": 64,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "caption_projection_dim": 1536,
            "pooled_projection_dim": 2048,
            "out_channels": 16,
            "pos_embed_max_size": 384,
            "dual_attention_layers": list(range(13)),
            "qk_norm": "rms_norm",
        },
        text_tokens=333,
    ),
    # Tongyi-MAI/Z-Image-Turbo (6.2 B)
    "z-image": Architecture(
        "ZImageTransformer2DModel",
        {
            "all_patch_size": [2],
            "all_f_patch_size": [1],
            "in_channels": 16,
            "dim": 3840,
            "n_layers": 30,
            "n_refiner_layers": 2,
            "n_heads": 30,
            "n_kv_heads": 30,
            "norm_eps": 1e-05,
            "qk_norm": True,
            "cap_feat_dim": 2560,
            "rope_theta": 256.0,
            "t_scale": 1000.0,
            "axes_dims": [32, 48, 48],
            "axes_lens": [1536, 512, 512],
        },
    ),
}
