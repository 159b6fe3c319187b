"""What every diffusers flow backend shares: precision, resolution, cached prompts, CFG, sampling.

A backend subclasses :class:`FlowGenerator` and supplies four things of its own: the noise its
pipeline draws (:meth:`noise_grid`, packed by :meth:`pack`), the transformer call
(:meth:`forward_transformer`, on packed latents and the convention's timestep), and the VAE's
normalisation (:meth:`encode_grid`, :meth:`decode_grid`). Everything else lives here once:

- latents, noise and velocities cross the boundary in float32; only the transformer's forward
  runs under the precision policy's autocast (:mod:`srpo.precision`);
- sigma becomes the pipeline's timestep, and the output the velocity, by its
  :class:`~srpo.models.conventions.Convention`;
- classifier-free guidance at ``cfg_scale`` (standard form) batches the unconditional branch
  when both sequences have one length, and otherwise runs it as a second forward;
- the Euler sampler is :func:`srpo.flow.euler_sample` on :func:`srpo.flow.sigma_schedule`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from srpo.flow import StepCallback, euler_sample, sigma_schedule
from srpo.models.base import Conditioning, PromptEncoder
from srpo.models.conventions import CONVENTIONS, Convention, combine_guidance
from srpo.models.latents import pack_latents, unpack_latents
from srpo.precision import Precision
from srpo.rewards.base import check_pixels


def spatial_factor(vae: nn.Module) -> int:
    """How many pixels one latent cell spans per side for an ``AutoencoderKL``-style VAE: one
    halving per down block after the first (diffusers pipelines' ``vae_scale_factor``)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class FlowGenerator(nn.Module, metaclass=abc.ABCMeta):
    """A diffusers text-to-image flow model behind the generator protocol."""

    name = ""
    #: latent grid cells per token side (2: every backend packs 2x2 patches into a token)
    patch = 2

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        prompt_encoder: PromptEncoder,
        resolution: tuple[int, int],
        vae_factor: int,
        cfg_scale: float = 1.0,
        guidance: float | None = None,
        negative_prompt: str = "",
        precision: Precision | None = None,
    ) -> None:
        super().__init__()
        self.precision = precision or Precision.of("fp32")
        self.transformer = transformer
        self.vae = vae.eval().requires_grad_(False)
        self.prompt_encoder = prompt_encoder
        self.vae_factor = int(vae_factor)
        self.cfg_scale = float(cfg_scale)
        self.guidance = None if guidance is None else float(guidance)
        self.negative_prompt = negative_prompt
        self.set_resolution(resolution)

    @property
    def convention(self) -> Convention:
        return CONVENTIONS[self.name]

    def set_resolution(self, resolution: tuple[int, int]) -> None:
        """Image size ``(height, width)``; both must be multiples of 2 x the VAE factor."""
        height, width = resolution
        step = self.patch * self.vae_factor
        if height % step or width % step:
            raise ValueError(f"resolution {height}x{width} must be a multiple of {step}")
        self.resolution = (int(height), int(width))
        self.latent_hw = (height // self.vae_factor, width // self.vae_factor)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance is on (``cfg_scale != 1``)."""
        return self.cfg_scale != 1.0

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory in the transformer's blocks."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    # -- prompts -------------------------------------------------------------------------------

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        sequence, pooled, *mask = self.prompt_encoder.encode(list(prompts))
        cond = Conditioning(sequence, pooled, prompt_mask=mask[0] if mask else None)
        if self.guided:
            empty_seq, empty_pool, *empty_mask = self.prompt_encoder.encode([self.negative_prompt])
            n = len(prompts)
            cond.uncond_embeds = empty_seq.expand(n, *empty_seq.shape[1:])
            cond.uncond_pooled = empty_pool.expand(n, *empty_pool.shape[1:])
            if empty_mask:
                cond.uncond_mask = empty_mask[0].expand(n, -1)
        return cond.to(self.device, self.precision.compute)

    # -- the model -----------------------------------------------------------------------------

    @abc.abstractmethod
    def forward_transformer(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor,
        mask: torch.Tensor | None,
        guidance: float | None,
    ) -> torch.Tensor:
        """The transformer's raw output on packed latents ``[B, N, C]`` (same shape)."""

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        cond: Conditioning,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """The float32 velocity; ``guidance`` overrides an embedded guidance (FLUX.2 dev)."""
        dtype = self.precision.compute
        batch = latents.shape[0]
        latents = latents.to(dtype)
        sigma = torch.as_tensor(sigma, device=latents.device, dtype=torch.float32).expand(batch)
        timestep = self.convention.timestep_of(sigma)
        guidance = self.guidance if guidance is None else guidance
        embeds, pooled, mask = cond.prompt_embeds.to(dtype), cond.pooled.to(dtype), cond.prompt_mask
        guided = self.guided and cond.uncond_embeds is not None
        with self.precision.autocast(latents.device):
            if not guided:
                out = self.forward_transformer(latents, timestep, embeds, pooled, mask, guidance)
            elif (
                mask is None
                and cond.uncond_mask is None
                and embeds.shape == cond.uncond_embeds.shape
            ):
                both = self.forward_transformer(
                    torch.cat([latents, latents]),
                    torch.cat([timestep, timestep]),
                    torch.cat([cond.uncond_embeds.to(dtype), embeds]),
                    torch.cat([cond.uncond_pooled.to(dtype), pooled]),
                    None,
                    guidance,
                )
                uncond, conditional = both.chunk(2)
            else:
                conditional = self.forward_transformer(
                    latents, timestep, embeds, pooled, mask, guidance
                )
                uncond = self.forward_transformer(
                    latents,
                    timestep,
                    cond.uncond_embeds.to(dtype),
                    cond.uncond_pooled.to(dtype),
                    cond.uncond_mask,
                    guidance,
                )
        if guided:
            out = combine_guidance(self.convention.guidance, conditional, uncond, self.cfg_scale)
        return self.convention.velocity_of(out.float())

    # -- latents -------------------------------------------------------------------------------

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        """The pipeline's latent (or noise) grid as ``[B, N, C]`` tokens."""
        return pack_latents(grid)

    def unpack(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`pack` at the model's resolution."""
        return unpack_latents(tokens, *self.latent_hw)

    def noise_shape(self, batch: int) -> tuple[int, ...]:
        """The shape of the noise the pipeline draws (before it packs it)."""
        channels = self.transformer_in_channels
        return (batch, channels, *self.latent_hw)

    @property
    @abc.abstractmethod
    def transformer_in_channels(self) -> int:
        """Channels of the latent grid (not of the packed tokens)."""

    def noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise drawn as the pipeline draws it (so one seed gives both the same), packed."""
        grid = torch.randn(self.noise_shape(batch), generator=generator)
        return self.pack(grid).to(self.device)

    @abc.abstractmethod
    def encode_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        """The normalised latent grid of pixels in [-1, 1] (in the VAE's dtype)."""

    @abc.abstractmethod
    def decode_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] of a normalised latent grid."""

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        check_pixels(pixels)
        if tuple(pixels.shape[-2:]) != self.resolution:
            raise ValueError(
                f"images must be {self.resolution[0]}x{self.resolution[1]}, got "
                f"{pixels.shape[-2]}x{pixels.shape[-1]}"
            )
        grid = self.encode_grid(pixels.to(self.vae_dtype) * 2 - 1)
        return self.pack(grid).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        image = self.decode_grid(self.unpack(latents.to(self.vae_dtype)))
        return (image.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def sample(
        self,
        cond: Conditioning,
        noise: torch.Tensor,
        num_steps: int = 28,
        shift: float = 3.0,
        guidance: float | None = None,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """Euler integration in float32; ``guidance`` overrides an embedded guidance and
        ``on_step(done, total)`` hears of each step."""
        sigmas = sigma_schedule(num_steps, shift)
        velocity = lambda x, s: self.velocity(x, s, cond, guidance)  # noqa: E731
        return euler_sample(velocity, noise.float(), sigmas, on_step)


def frozen_dtype(precision: str) -> tuple[Precision, torch.dtype]:
    """The policy called ``precision`` and the dtype its frozen parts load in."""
    policy = Precision.of(precision)
    return policy, policy.frozen
