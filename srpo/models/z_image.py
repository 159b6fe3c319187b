"""The Z-Image backend on ``ZImageTransformer2DModel`` and ``AutoencoderKL``.

As ``ZImagePipeline`` does: each prompt goes through the tokenizer's chat template (generation
prompt, thinking enabled), is padded to ``max_sequence_length`` and encoded by the Qwen3 text
model; its penultimate hidden state is kept at the prompt's own length. The transformer takes
per-sample lists (latent ``[C, 1, H, W]``, caption ``[L, D]``), receives ``1 - sigma`` as its
timestep and returns the negated velocity. Its guidance ``c + g (c - u)`` is our standard CFG at
``cfg_scale = g + 1`` (:mod:`srpo.models.conventions`); the negative prompt is empty. Latents
are FLUX's: ``(z - shift_factor) * scaling_factor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ZImageTransformer2DModel
from torch import nn

from srpo.models.common import FlowGenerator, frozen_dtype, spatial_factor

Z_IMAGE_HUB_ID = "Tongyi-MAI/Z-Image-Turbo"
# Z-Image-Turbo's model card: 9 steps (8 forwards) without guidance, scheduler shift 3.
Z_IMAGE_SAMPLING = {"steps": 9, "shift": 3.0}


class ZImageTextEncoder:
    """The Qwen3 text model as ``ZImagePipeline._encode_prompt`` uses it."""

    def __init__(self, tokenizer, text_encoder: nn.Module, max_sequence_length: int = 512) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_pretrained(
        cls, source: str | Path, dtype: torch.dtype = torch.bfloat16, max_sequence_length: int = 512
    ) -> ZImageTextEncoder:
        from transformers import AutoModel, AutoTokenizer

        source = str(source)
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer"),
            AutoModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype),
            max_sequence_length,
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(sequence [B, L, D], pooled [B, 0], mask [B, L])``, real tokens first."""
        text = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=True,
            )
            for p in prompts
        ]
        tokens = self.tokenizer(
            text,
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            return_tensors="pt",
        )
        device = self.text_encoder.device
        mask = tokens.attention_mask.to(device).bool()
        hidden = self.text_encoder(
            input_ids=tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True
        ).hidden_states[-2]
        longest = int(mask.sum(-1).max())
        return hidden[:, :longest], hidden.new_zeros(len(text), 0), mask[:, :longest]


class ZImageGenerator(FlowGenerator):
    """Z-Image (Turbo and base) behind the generator protocol."""

    name = "z-image"

    def __init__(
        self,
        transformer: ZImageTransformer2DModel,
        vae: AutoencoderKL,
        prompt_encoder,
        resolution: tuple[int, int] = (1024, 1024),
        cfg_scale: float = 1.0,
        negative_prompt: str = "",
        precision=None,
    ) -> None:
        super().__init__(
            transformer,
            vae,
            prompt_encoder,
            resolution,
            vae_factor=spatial_factor(vae),
            cfg_scale=cfg_scale,
            negative_prompt=negative_prompt,
            precision=precision,
        )
        self._channels = int(transformer.config.in_channels)
        if self._channels != vae.config.latent_channels:
            raise ValueError(
                f"transformer in_channels {self._channels} != VAE latent channels "
                f"{vae.config.latent_channels}"
            )
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.shift_factor or 0.0)

    @property
    def transformer_in_channels(self) -> int:
        return self._channels

    def forward_transformer(self, latents, timestep, embeds, pooled, mask, guidance):
        grid = self.unpack(latents).unsqueeze(2)  # [B, C, 1, H, W]
        if mask is None:
            captions = list(embeds.unbind(0))
        else:
            captions = [e[m] for e, m in zip(embeds, mask, strict=True)]
        out = self.transformer(list(grid.unbind(0)), timestep, captions, return_dict=False)[0]
        return self.pack(torch.stack(out).squeeze(2))

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
        max_sequence_length: int = 512,
        cfg_scale: float = 1.0,
    ) -> ZImageGenerator:
        """Load a Z-Image folder or hub id in the policy's frozen dtype; prompts are cached."""
        from srpo.models.flux import DEFAULT_CACHE
        from srpo.models.prompt_cache import CachedPromptEncoder

        policy, dtype = frozen_dtype(precision)
        source = str(source)
        transformer = ZImageTransformer2DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        encoder = CachedPromptEncoder(
            lambda: ZImageTextEncoder.from_pretrained(source, dtype, max_sequence_length),
            cache_dir or DEFAULT_CACHE,
            namespace=f"z-image:{source}:{max_sequence_length}:{dtype}",
        )
        return cls(transformer, vae, encoder, resolution, cfg_scale, precision=policy)
