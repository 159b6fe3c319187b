"""The FLUX generator backend on diffusers ``FluxTransformer2DModel`` and ``AutoencoderKL``.

As ``FluxPipeline`` does: latents are scaled and shifted by the VAE's ``scaling_factor`` and
``shift_factor`` and packed 2x2 into tokens; the transformer receives sigma in [0, 1] as its
timestep and, for guidance-distilled models such as FLUX.1-dev, the guidance scale as an
embedding. Models trained with prompt dropout can instead use classifier-free guidance
(``cfg_scale``), batched with the empty prompt. Precision, prompt caching, CFG, packing and the
sampler are :class:`~srpo.models.common.FlowGenerator`'s, shared with every backend.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel

from srpo.models.base import PromptEncoder
from srpo.models.common import FlowGenerator, spatial_factor
from srpo.models.latents import pack_latents, unpack_latents
from srpo.precision import Precision

DEFAULT_CACHE = Path.home() / ".cache" / "srpo" / "prompt_embeds"
__all__ = ["DEFAULT_CACHE", "FluxGenerator", "image_ids", "pack_latents", "unpack_latents"]


def image_ids(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Rotary position ids ``[(H/2)(W/2), 3]`` of the packed image tokens."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxGenerator(FlowGenerator):
    """A FLUX-architecture text-to-image model behind the generator protocol.

    ``packed_noise`` draws noise directly in the packed ``[B, N, C]`` shape rather than as
    ``FluxPipeline`` does (the latent grid, then packed): the tiny world's generator was
    trained and gated on seeds drawn that way, so it keeps them; every other FLUX model draws
    as the pipeline, seed for seed.
    """

    name = "flux"

    def __init__(
        self,
        transformer: FluxTransformer2DModel,
        vae: AutoencoderKL,
        prompt_encoder: PromptEncoder,
        resolution: tuple[int, int] = (1024, 1024),
        guidance: float = 3.5,
        cfg_scale: float = 1.0,
        precision: Precision | None = None,
        packed_noise: bool = False,
    ) -> None:
        channels = vae.config.latent_channels
        if transformer.config.in_channels != channels * 4:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != 4 x VAE latent "
                f"channels {channels}"
            )
        super().__init__(
            transformer,
            vae,
            prompt_encoder,
            resolution,
            vae_factor=spatial_factor(vae),
            cfg_scale=cfg_scale,
            guidance=guidance,
            negative_prompt="",
            precision=precision,
        )
        # Read once: the transformer may later be wrapped (DDP, FSDP) and lose ``config``.
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        self.in_channels = int(transformer.config.in_channels)
        self.packed_noise = packed_noise

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def transformer_in_channels(self) -> int:
        return self.in_channels // 4

    def noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.packed_noise:
            return super().noise(batch, generator)
        h, w = self.latent_hw
        shape = (batch, (h // 2) * (w // 2), self.in_channels)
        return torch.randn(shape, generator=generator).to(self.device)

    def forward_transformer(self, latents, timestep, embeds, pooled, mask, guidance):
        device, dtype = latents.device, latents.dtype
        timestep = timestep.to(dtype)  # FluxPipeline passes it in the latents' dtype
        embedded = None
        if self.guidance_embeds:
            embedded = torch.full_like(timestep, guidance)
        return self.transformer(
            hidden_states=latents,
            timestep=timestep,
            guidance=embedded,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype),
            img_ids=image_ids(*self.latent_hw, device=device, dtype=dtype),
            return_dict=False,
        )[0]

    def encode_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(pixels).latent_dist.mode()
        return (latents - self.shift_factor) * self.scaling_factor

    def decode_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(grid / self.scaling_factor + self.shift_factor).sample

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        resolution: tuple[int, int] = (1024, 1024),
        guidance: float = 3.5,
        precision: str = "bf16",
        cache_dir: str | Path | None = None,
        max_sequence_length: int = 512,
    ) -> FluxGenerator:
        """Load a FLUX folder or hub id in the policy's frozen dtype (the trainer upcasts what
        it trains); prompt embeddings are cached under ``cache_dir``."""
        from srpo.models.flux_text import FluxTextEncoders
        from srpo.models.prompt_cache import CachedPromptEncoder

        policy = Precision.of(precision)
        dtype = policy.frozen
        source = str(source)
        transformer = FluxTransformer2DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        encoder = CachedPromptEncoder(
            lambda: FluxTextEncoders.from_pretrained(source, dtype, max_sequence_length),
            cache_dir or DEFAULT_CACHE,
            namespace=f"flux:{source}:{max_sequence_length}:{dtype}",
        )
        return cls(transformer, vae, encoder, resolution, guidance, precision=policy)
