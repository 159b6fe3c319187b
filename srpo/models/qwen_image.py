"""The Qwen-Image backend on ``QwenImageTransformer2DModel`` and ``AutoencoderKLQwenImage``.

As ``QwenImagePipeline`` does: each prompt is wrapped in the pipeline's chat template, encoded by
Qwen2.5-VL (last hidden state), the template's first 34 tokens dropped and the rest kept at its
own length (a batch is zero-padded with a mask, the mask dropped when every token is real). The
transformer receives sigma (``t / 1000``) and 2x2-packed latents normalised by the VAE's
per-channel ``latents_mean`` / ``latents_std``; guidance is true CFG against a negative prompt
(default ``" "``, as the model card's example) in two forwards, the guided velocity rescaled per
token to the conditional one's norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
from torch import nn

from srpo.models.common import FlowGenerator, frozen_dtype

QWEN_IMAGE_HUB_ID = "Qwen/Qwen-Image"
# QwenImagePipeline: 50 steps; at 1024x1024 its dynamic shift is mu = 0.69, i.e. shift 2.0.
QWEN_IMAGE_SAMPLING = {"steps": 50, "shift": 2.0}
QWEN_IMAGE_CFG = 4.0
PROMPT_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
TEMPLATE_TOKENS = 34  # QwenImagePipeline.prompt_template_encode_start_idx
MAX_PROMPT_TOKENS = 1024  # QwenImagePipeline.tokenizer_max_length


class QwenImageTextEncoder:
    """Qwen2.5-VL as ``QwenImagePipeline._get_qwen_prompt_embeds`` uses it."""

    def __init__(self, tokenizer, text_encoder: nn.Module, max_sequence_length: int = 512) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_pretrained(
        cls, source: str | Path, dtype: torch.dtype = torch.bfloat16, max_sequence_length: int = 512
    ) -> QwenImageTextEncoder:
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        source = str(source)
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer"),
            Qwen2_5_VLForConditionalGeneration.from_pretrained(
                source, subfolder="text_encoder", torch_dtype=dtype
            ),
            max_sequence_length,
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(sequence [B, L, D], pooled [B, 0], mask [B, L])``, padded to the longest prompt."""
        text = [PROMPT_TEMPLATE.format(p) for p in prompts]
        tokens = self.tokenizer(
            text,
            max_length=MAX_PROMPT_TOKENS + TEMPLATE_TOKENS,
            padding=True,
            truncation=True,
            return_tensors="pt",
        ).to(self.text_encoder.device)
        hidden = self.text_encoder(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            output_hidden_states=True,
        ).hidden_states[-1]
        keep = tokens.attention_mask.bool()
        rows = [
            h[m][TEMPLATE_TOKENS:][: self.max_sequence_length]
            for h, m in zip(hidden, keep, strict=True)
        ]
        longest = max(r.shape[0] for r in rows)
        sequence = hidden.new_zeros(len(rows), longest, hidden.shape[-1])
        mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=hidden.device)
        for i, row in enumerate(rows):
            sequence[i, : row.shape[0]], mask[i, : row.shape[0]] = row, True
        return sequence, hidden.new_zeros(len(rows), 0), mask


class QwenImageGenerator(FlowGenerator):
    """Qwen-Image behind the generator protocol."""

    name = "qwen-image"

    def __init__(
        self,
        transformer: QwenImageTransformer2DModel,
        vae: AutoencoderKLQwenImage,
        prompt_encoder,
        resolution: tuple[int, int] = (1024, 1024),
        cfg_scale: float = QWEN_IMAGE_CFG,
        negative_prompt: str = " ",
        precision=None,
    ) -> None:
        super().__init__(
            transformer,
            vae,
            prompt_encoder,
            resolution,
            vae_factor=2 ** len(vae.temperal_downsample),
            cfg_scale=cfg_scale,
            negative_prompt=negative_prompt,
            precision=precision,
        )
        self._channels = int(vae.config.z_dim)
        if transformer.config.in_channels != 4 * self._channels:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != 4 x VAE z_dim "
                f"{self._channels}"
            )
        stats = torch.tensor([vae.config.latents_mean, vae.config.latents_std], dtype=torch.float32)
        self.register_buffer("latent_stats", stats.view(2, 1, -1, 1, 1, 1), persistent=False)

    @property
    def transformer_in_channels(self) -> int:
        return self._channels

    def noise_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 1, self._channels, *self.latent_hw)  # QwenImagePipeline.prepare_latents

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        return super().pack(grid.flatten(1, 2) if grid.ndim == 5 else grid)

    def forward_transformer(self, latents, timestep, embeds, pooled, mask, guidance):
        if mask is not None and bool(mask.all()):
            mask = None  # as QwenImagePipeline.encode_prompt drops an all-true mask
        h, w = self.latent_hw
        return self.transformer(
            hidden_states=latents,
            timestep=timestep,
            encoder_hidden_states=embeds,
            encoder_hidden_states_mask=mask,
            img_shapes=[[(1, h // 2, w // 2)]] * latents.shape[0],
            return_dict=False,
        )[0]

    def encode_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_stats.to(pixels.device, pixels.dtype)
        latents = self.vae.encode(pixels.unsqueeze(2)).latent_dist.mode()  # [B, C, 1, H, W]
        return ((latents - mean) / std)[:, :, 0]

    def decode_grid(self, grid: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_stats.to(grid.device, grid.dtype)
        return self.vae.decode(grid.unsqueeze(2) * std + mean).sample[:, :, 0]

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        resolution: tuple[int, int] = (1024, 1024),
        precision: str = "bf16",
        cache_dir: str | Path | None = None,
        max_sequence_length: int = 512,
        cfg_scale: float = QWEN_IMAGE_CFG,
    ) -> QwenImageGenerator:
        """Load a Qwen-Image folder or hub id in the policy's frozen dtype; prompts are cached."""
        from srpo.models.flux import DEFAULT_CACHE
        from srpo.models.prompt_cache import CachedPromptEncoder

        policy, dtype = frozen_dtype(precision)
        source = str(source)
        transformer = QwenImageTransformer2DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = AutoencoderKLQwenImage.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        encoder = CachedPromptEncoder(
            lambda: QwenImageTextEncoder.from_pretrained(source, dtype, max_sequence_length),
            cache_dir or DEFAULT_CACHE,
            namespace=f"qwen-image:{source}:{max_sequence_length}:{dtype}",
        )
        return cls(transformer, vae, encoder, resolution, cfg_scale, precision=policy)
