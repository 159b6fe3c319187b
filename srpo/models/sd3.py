"""The Stable Diffusion 3 / 3.5 backend on ``SD3Transformer2DModel`` and ``AutoencoderKL``.

As ``StableDiffusion3Pipeline`` does: prompts go through CLIP-L and CLIP-G (penultimate hidden
states, concatenated and zero-padded to T5's width; their projected pooled outputs concatenated)
and T5 (appended to the sequence); the transformer receives ``1000 sigma`` as its timestep and
unpacked ``[B, C, H, W]`` latents (it patchifies them itself); guidance is true CFG against the
empty prompt, batched. Latents are ``(z - shift_factor) * scaling_factor``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from torch import nn

from srpo.models.common import FlowGenerator, frozen_dtype, spatial_factor

SD3_HUB_ID = "stabilityai/stable-diffusion-3.5-medium"
# The SD3.5 model cards: 40 steps (medium; large: 28) at the scheduler's shift 3, CFG 4.5.
SD3_SAMPLING = {"steps": 40, "shift": 3.0}
SD3_CFG = 4.5


def token_ids(tokenizer, prompts: list[str], max_length: int, warn: list[bool]) -> torch.Tensor:
    """``max_length`` padded, truncated ids; one warning (``warn`` holds whether it was given)."""
    if not warn[0]:
        full = tokenizer(prompts, truncation=False)["input_ids"]
        if any(len(ids) > max_length for ids in full):
            warn[0] = True
            warnings.warn(f"prompts longer than {max_length} tokens were truncated", stacklevel=3)
    return tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids


class SD3TextEncoders:
    """CLIP-L, CLIP-G and T5 as ``StableDiffusion3Pipeline.encode_prompt`` uses them."""

    def __init__(
        self,
        tokenizer,
        text_encoder: nn.Module,
        tokenizer_2,
        text_encoder_2: nn.Module,
        tokenizer_3=None,
        text_encoder_3: nn.Module | None = None,
        max_sequence_length: int = 256,
        joint_attention_dim: int | None = None,
    ) -> None:
        self.tokenizer, self.tokenizer_2, self.tokenizer_3 = tokenizer, tokenizer_2, tokenizer_3
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.text_encoder_2 = text_encoder_2.eval().requires_grad_(False)
        self.text_encoder_3 = None
        if text_encoder_3 is not None:
            self.text_encoder_3 = text_encoder_3.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length
        # Without T5 the pipeline appends zeros of the transformer's joint attention width.
        self.joint_attention_dim = joint_attention_dim
        self._warned = [False]

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        max_sequence_length: int = 256,
        joint_attention_dim: int | None = None,
    ) -> SD3TextEncoders:
        """The three encoders and tokenizers of an SD3 folder (T5 optional, as in diffusers)."""
        from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel

        source = str(source)
        tokenizer_3 = text_encoder_3 = None
        try:
            tokenizer_3 = AutoTokenizer.from_pretrained(source, subfolder="tokenizer_3")
            text_encoder_3 = T5EncoderModel.from_pretrained(
                source, subfolder="text_encoder_3", torch_dtype=dtype
            )
        except OSError:
            tokenizer_3 = text_encoder_3 = None
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer"),
            CLIPTextModelWithProjection.from_pretrained(
                source, subfolder="text_encoder", torch_dtype=dtype
            ),
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer_2"),
            CLIPTextModelWithProjection.from_pretrained(
                source, subfolder="text_encoder_2", torch_dtype=dtype
            ),
            tokenizer_3,
            text_encoder_3,
            max_sequence_length,
            joint_attention_dim,
        )

    def _clip(self, tokenizer, encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # The pipeline pads both CLIPs to the first tokenizer's length.
        ids = token_ids(tokenizer, prompts, self.tokenizer.model_max_length, self._warned)
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
        return out.hidden_states[-2], out[0]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = list(prompts)
        seq_1, pooled_1 = self._clip(self.tokenizer, self.text_encoder, prompts)
        seq_2, pooled_2 = self._clip(self.tokenizer_2, self.text_encoder_2, prompts)
        clip = torch.cat([seq_1, seq_2], dim=-1)
        if self.text_encoder_3 is None:
            width = self.joint_attention_dim or clip.shape[-1]
            t5 = clip.new_zeros(len(prompts), self.max_sequence_length, width)
        else:
            ids = token_ids(self.tokenizer_3, prompts, self.max_sequence_length, self._warned)
            t5 = self.text_encoder_3(ids.to(self.text_encoder_3.device))[0].to(clip.dtype)
        clip = nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5], dim=-2), torch.cat([pooled_1, pooled_2], dim=-1)


class SD3Generator(FlowGenerator):
    """SD3 / SD3.5 (medium, large, large-turbo) behind the generator protocol."""

    name = "sd3"

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        vae: AutoencoderKL,
        prompt_encoder,
        resolution: tuple[int, int] = (1024, 1024),
        cfg_scale: float = SD3_CFG,
        negative_prompt: str = "",
        precision=None,
    ) -> None:
        super().__init__(
            transformer,
            vae,
            prompt_encoder,
            resolution,
            spatial_factor(vae),
            cfg_scale=cfg_scale,
            negative_prompt=negative_prompt,
            precision=precision,
        )
        if transformer.config.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != VAE latent channels "
                f"{vae.config.latent_channels}"
            )
        if transformer.config.patch_size != self.patch:
            raise ValueError(f"SD3 patch size must be {self.patch}")
        self._channels = int(transformer.config.in_channels)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.shift_factor or 0.0)

    @property
    def transformer_in_channels(self) -> int:
        return self._channels

    def forward_transformer(self, latents, timestep, embeds, pooled, mask, guidance):
        grid = self.unpack(latents)
        out = self.transformer(
            hidden_states=grid,
            timestep=timestep,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        return self.pack(out)

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
        precision: str = "bf16",
        cache_dir: str | Path | None = None,
        max_sequence_length: int = 256,
        cfg_scale: float = SD3_CFG,
    ) -> SD3Generator:
        """Load an SD3 folder or hub id in the policy's frozen dtype; prompts are cached."""
        from srpo.models.flux import DEFAULT_CACHE
        from srpo.models.prompt_cache import CachedPromptEncoder

        policy, dtype = frozen_dtype(precision)
        source = str(source)
        transformer = SD3Transformer2DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        width = int(transformer.config.joint_attention_dim)
        encoder = CachedPromptEncoder(
            lambda: SD3TextEncoders.from_pretrained(source, dtype, max_sequence_length, width),
            cache_dir or DEFAULT_CACHE,
            namespace=f"sd3:{source}:{max_sequence_length}:{dtype}",
        )
        return cls(transformer, vae, encoder, resolution, cfg_scale, precision=policy)
