"""The FLUX generator backend on diffusers ``FluxTransformer2DModel`` and ``AutoencoderKL``.

Latents are scaled and shifted as in ``FluxPipeline`` and packed 2x2 into tokens; the
transformer receives sigma in [0, 1] as its timestep and, for guidance-distilled models
such as FLUX.1-dev, the guidance scale as an embedding. Models trained with prompt dropout
can instead use classifier-free guidance (``cfg_scale``), which doubles the batch.

Precision (:mod:`srpo.precision`): latents, noise and velocities cross this class's boundary
in float32; only the transformer's forward runs in the policy's compute dtype (bf16 autocast).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from torch import nn

from srpo.flow import euler_sample, sigma_schedule
from srpo.models.base import Conditioning, PromptEncoder
from srpo.models.latents import pack_latents, unpack_latents
from srpo.precision import Precision
from srpo.rewards.base import check_pixels

DEFAULT_CACHE = Path.home() / ".cache" / "srpo" / "prompt_embeds"
__all__ = ["DEFAULT_CACHE", "FluxGenerator", "image_ids", "pack_latents", "unpack_latents"]


def image_ids(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Rotary position ids ``[(H/2)(W/2), 3]`` of the packed image tokens."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxGenerator(nn.Module):
    """A FLUX-architecture text-to-image model behind the generator protocol."""

    def __init__(
        self,
        transformer: FluxTransformer2DModel,
        vae: AutoencoderKL,
        prompt_encoder: PromptEncoder,
        resolution: tuple[int, int] = (1024, 1024),
        guidance: float = 3.5,
        cfg_scale: float = 1.0,
        precision: Precision | None = None,
    ) -> None:
        super().__init__()
        self.precision = precision or Precision.of("fp32")
        self.transformer = transformer
        self.vae = vae.eval().requires_grad_(False)
        self.prompt_encoder = prompt_encoder
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        channels = vae.config.latent_channels
        if transformer.config.in_channels != channels * 4:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != 4 x VAE latent "
                f"channels {channels}"
            )
        self.guidance = float(guidance)
        self.cfg_scale = float(cfg_scale)
        # Read once: the transformer may later be wrapped (DDP, FSDP) and lose ``config``.
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        self.in_channels = int(transformer.config.in_channels)
        self.set_resolution(resolution)

    def set_resolution(self, resolution: tuple[int, int]) -> None:
        """Image size ``(height, width)``; both must be multiples of 2 x the VAE factor."""
        height, width = resolution
        step = 2 * self.vae_factor
        if height % step or width % step:
            raise ValueError(f"resolution {height}x{width} must be a multiple of {step}")
        self.resolution = (int(height), int(width))
        self.latent_hw = (height // self.vae_factor, width // self.vae_factor)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory in the transformer's blocks."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        sequence, pooled = self.prompt_encoder.encode(list(prompts))
        cond = Conditioning(sequence, pooled)
        if self.cfg_scale != 1.0:
            empty_seq, empty_pool = self.prompt_encoder.encode([""])
            n = len(prompts)
            cond.uncond_embeds = empty_seq.expand(n, *empty_seq.shape[1:])
            cond.uncond_pooled = empty_pool.expand(n, *empty_pool.shape[1:])
        return cond.to(self.device, self.precision.compute)

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        cond: Conditioning,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """The float32 velocity; ``guidance`` overrides the model's guidance embedding."""
        dtype = self.precision.compute
        batch = latents.shape[0]
        latents = latents.to(dtype)
        sigma = torch.as_tensor(sigma, device=latents.device, dtype=dtype).expand(batch)
        guided = self.cfg_scale != 1.0 and cond.uncond_embeds is not None
        embeds, pooled = cond.prompt_embeds, cond.pooled
        if guided:
            latents, sigma = torch.cat([latents, latents]), torch.cat([sigma, sigma])
            embeds = torch.cat([cond.uncond_embeds, embeds])
            pooled = torch.cat([cond.uncond_pooled, pooled])
        embedded = None
        if self.guidance_embeds:
            embedded = torch.full_like(sigma, self.guidance if guidance is None else guidance)
        with self.precision.autocast(latents.device):
            out = self.transformer(
                hidden_states=latents,
                timestep=sigma,
                guidance=embedded,
                pooled_projections=pooled.to(dtype),
                encoder_hidden_states=embeds.to(dtype),
                txt_ids=torch.zeros(embeds.shape[1], 3, device=latents.device, dtype=dtype),
                img_ids=image_ids(*self.latent_hw, device=latents.device, dtype=dtype),
                return_dict=False,
            )[0]
        out = out.float()
        if guided:
            uncond, conditional = out.chunk(2)
            out = uncond + self.cfg_scale * (conditional - uncond)
        return out

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        check_pixels(pixels)
        if tuple(pixels.shape[-2:]) != self.resolution:
            raise ValueError(
                f"images must be {self.resolution[0]}x{self.resolution[1]}, got "
                f"{pixels.shape[-2]}x{pixels.shape[-1]}"
            )
        vae_dtype = next(self.vae.parameters()).dtype
        latents = self.vae.encode(pixels.to(vae_dtype) * 2 - 1).latent_dist.mode()
        latents = (latents - self.shift_factor) * self.scaling_factor
        return pack_latents(latents).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae_dtype = next(self.vae.parameters()).dtype
        grid = unpack_latents(latents, *self.latent_hw).to(vae_dtype)
        image = self.vae.decode(grid / self.scaling_factor + self.shift_factor).sample
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = self.latent_hw
        shape = (batch, (h // 2) * (w // 2), self.in_channels)
        return torch.randn(shape, generator=generator).to(self.device)

    @torch.no_grad()
    def sample(
        self,
        cond: Conditioning,
        noise: torch.Tensor,
        num_steps: int = 25,
        shift: float = 3.0,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Euler integration in float32; ``guidance`` overrides the model's for this rollout."""
        sigmas = sigma_schedule(num_steps, shift)
        velocity = lambda x, s: self.velocity(x, s, cond, guidance)  # noqa: E731
        return euler_sample(velocity, noise.float(), sigmas)

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
