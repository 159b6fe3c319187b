"""The FLUX.2 backend (dev and klein) on ``Flux2Transformer2DModel`` and ``AutoencoderKLFlux2``.

As ``Flux2Pipeline`` (dev) and ``Flux2KleinPipeline`` (klein) do:

- prompts are padded to ``max_sequence_length`` and the text model's hidden states at three
  layers are stacked per token (``[B, L, 3 D]``); the transformer sees every padded token, with
  no mask. Dev wraps each prompt in its system message for Mistral Small 3.1
  (``Mistral3ForConditionalGeneration``, layers 10, 20, 30); klein uses Qwen3's chat template
  without thinking (``Qwen3ForCausalLM``, layers 9, 18, 27);
- the VAE's latents are patchified 2x2 and normalised by its batch norm's running statistics;
  noise is drawn in that patchified shape and flattened row-major into tokens;
- the transformer receives sigma (``t / 1000``) and 4-axis rotary ids; dev embeds its guidance
  (default 4.0), klein has no guidance embedding and the klein base model uses true CFG against
  the empty prompt (our standard ``cfg_scale``; the step-distilled klein models run without).

Both pipelines derive their shift from the image size and step count
(``compute_empirical_mu``); :data:`FLUX2_SAMPLING` holds its value at 1024 x 1024.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
from torch import nn

from srpo.models.common import FlowGenerator, frozen_dtype, spatial_factor
from srpo.models.latents import flatten_grid, patchify, unflatten_grid, unpatchify

FLUX2_HUB_ID = "black-forest-labs/FLUX.2-dev"
FLUX2_GUIDANCE = 4.0  # Flux2Pipeline's default guidance_scale (embedded)
KLEIN_CFG = 4.0  # Flux2KleinPipeline's default guidance_scale (true CFG, base models only)
DEV_LAYERS = (10, 20, 30)
KLEIN_LAYERS = (9, 18, 27)
# exp(compute_empirical_mu(4096 tokens, steps)): the pipelines' shift at 1024 x 1024.
FLUX2_SAMPLING = {"steps": 50, "shift": 7.5636}
KLEIN_DISTILLED_SAMPLING = {"steps": 4, "shift": 9.8866}


@dataclass(frozen=True)
class Flux2Variant:
    """Which FLUX.2 a folder holds: its pipeline class and whether it is step-distilled."""

    pipeline: str = "Flux2Pipeline"
    distilled: bool = False

    @property
    def klein(self) -> bool:
        return self.pipeline != "Flux2Pipeline"

    @property
    def sampling(self) -> dict[str, float]:
        return dict(KLEIN_DISTILLED_SAMPLING if self.distilled else FLUX2_SAMPLING)

    @property
    def cfg_scale(self) -> float:
        """The pipeline's default guidance as our standard CFG (1: off)."""
        return KLEIN_CFG if self.klein and not self.distilled else 1.0


def flux2_variant(source: str | Path) -> Flux2Variant:
    """The variant of a local folder (its ``model_index.json``) or, offline, of a hub id by name
    (``...klein-base...``: klein base; ``...klein...``: step-distilled klein; otherwise dev)."""
    index = Path(source) / "model_index.json"
    if index.is_file():
        config = json.loads(index.read_text())
        pipeline = str(config.get("_class_name", "Flux2Pipeline"))
        if pipeline not in ("Flux2Pipeline", "Flux2KleinPipeline"):
            raise ValueError(f"{source} holds a {pipeline}, not a FLUX.2 text-to-image model")
        return Flux2Variant(pipeline, bool(config.get("is_distilled", False)))
    name = str(source).lower()
    if "klein" not in name:
        return Flux2Variant()
    return Flux2Variant("Flux2KleinPipeline", distilled="base" not in name)


def stacked_layers(hidden_states: Sequence[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """The hidden states at ``layers`` side by side per token: ``[B, L, len(layers) D]``."""
    out = torch.stack([hidden_states[k] for k in layers], dim=1)
    b, n, length, d = out.shape
    return out.permute(0, 2, 1, 3).reshape(b, length, n * d)


class Flux2DevTextEncoder:
    """Mistral Small 3.1 as ``Flux2Pipeline._get_mistral_3_small_prompt_embeds`` uses it."""

    def __init__(
        self,
        processor,
        text_encoder: nn.Module,
        max_sequence_length: int = 512,
        layers: Sequence[int] = DEV_LAYERS,
        system_message: str = SYSTEM_MESSAGE,
    ) -> None:
        self.processor = processor
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length
        self.layers = tuple(layers)
        self.system_message = system_message

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        max_sequence_length: int = 512,
        layers: Sequence[int] = DEV_LAYERS,
    ) -> Flux2DevTextEncoder:
        from transformers import AutoProcessor, Mistral3ForConditionalGeneration

        source = str(source)
        return cls(
            AutoProcessor.from_pretrained(source, subfolder="tokenizer"),
            Mistral3ForConditionalGeneration.from_pretrained(
                source, subfolder="text_encoder", torch_dtype=dtype
            ),
            max_sequence_length,
            layers,
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sequence [B, max_sequence_length, 3 D], pooled [B, 0])``."""
        messages = [
            [
                {"role": "system", "content": [{"type": "text", "text": self.system_message}]},
                # as the pipeline does: [IMG] would break the processor's image-token count
                {"role": "user", "content": [{"type": "text", "text": p.replace("[IMG]", "")}]},
            ]
            for p in prompts
        ]
        inputs = self.processor.apply_chat_template(
            messages,
            add_generation_prompt=False,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={
                "padding": "max_length",
                "truncation": True,
                "max_length": self.max_sequence_length,
            },
        )
        return _encode(self.text_encoder, inputs, self.layers)


class Flux2KleinTextEncoder:
    """Qwen3 as ``Flux2KleinPipeline._get_qwen3_prompt_embeds`` uses it."""

    def __init__(
        self,
        tokenizer,
        text_encoder: nn.Module,
        max_sequence_length: int = 512,
        layers: Sequence[int] = KLEIN_LAYERS,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length
        self.layers = tuple(layers)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        max_sequence_length: int = 512,
        layers: Sequence[int] = KLEIN_LAYERS,
    ) -> Flux2KleinTextEncoder:
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        source = str(source)
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder="tokenizer"),
            Qwen3ForCausalLM.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype),
            max_sequence_length,
            layers,
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sequence [B, max_sequence_length, 3 D], pooled [B, 0])``."""
        text = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=False,
            )
            for p in prompts
        ]
        inputs = self.tokenizer(
            text,
            return_tensors="pt",
            padding="max_length",
            truncation=True,
            max_length=self.max_sequence_length,
        )
        return _encode(self.text_encoder, inputs, self.layers)


def _encode(text_encoder: nn.Module, inputs, layers: Sequence[int]):
    device = text_encoder.device
    output = text_encoder(
        input_ids=inputs["input_ids"].to(device),
        attention_mask=inputs["attention_mask"].to(device),
        output_hidden_states=True,
        use_cache=False,
    )
    sequence = stacked_layers(output.hidden_states, layers)
    return sequence, sequence.new_zeros(sequence.shape[0], 0)


def text_ids(length: int, device=None) -> torch.Tensor:
    """Rotary ids ``[L, 4]`` of the text tokens: ``(0, 0, 0, l)`` (``_prepare_text_ids``)."""
    ids = torch.zeros(length, 4, dtype=torch.long, device=device)
    ids[:, 3] = torch.arange(length, device=device)
    return ids


def latent_ids(height: int, width: int, device=None) -> torch.Tensor:
    """Rotary ids ``[H W, 4]`` of a token grid: ``(0, h, w, 0)`` (``_prepare_latent_ids``)."""
    zero = torch.zeros(1, dtype=torch.long)
    ids = torch.cartesian_prod(zero, torch.arange(height), torch.arange(width), zero)
    return ids.to(device)


class Flux2Generator(FlowGenerator):
    """FLUX.2 dev or klein behind the generator protocol."""

    name = "flux2"

    def __init__(
        self,
        transformer: Flux2Transformer2DModel,
        vae: AutoencoderKLFlux2,
        prompt_encoder,
        resolution: tuple[int, int] = (1024, 1024),
        guidance: float = FLUX2_GUIDANCE,
        cfg_scale: float = 1.0,
        precision=None,
    ) -> None:
        # Read once: the transformer may later be wrapped (DDP, FSDP) and lose ``config``.
        guidance_embeds = bool(transformer.config.guidance_embeds)
        super().__init__(
            transformer,
            vae,
            prompt_encoder,
            resolution,
            vae_factor=spatial_factor(vae),
            cfg_scale=cfg_scale,
            guidance=guidance if guidance_embeds else None,
            negative_prompt="",
            precision=precision,
        )
        self.guidance_embeds = guidance_embeds
        self._channels = int(transformer.config.in_channels)
        patched = 4 * int(vae.config.latent_channels)
        if self._channels != patched:
            raise ValueError(
                f"transformer in_channels {self._channels} != 4 x VAE latent channels {patched // 4}"
            )

    @property
    def transformer_in_channels(self) -> int:
        return self._channels

    @property
    def token_hw(self) -> tuple[int, int]:
        """The patchified latent grid (one token per cell)."""
        return self.latent_hw[0] // 2, self.latent_hw[1] // 2

    def noise_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self._channels, *self.token_hw)  # Flux2Pipeline.prepare_latents

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        """A patchified grid ``[B, 4C, H/2, W/2]`` as tokens (``Flux2Pipeline._pack_latents``)."""
        return flatten_grid(grid)

    def unpack(self, tokens: torch.Tensor) -> torch.Tensor:
        return unflatten_grid(tokens, *self.token_hw)

    def forward_transformer(self, latents, timestep, embeds, pooled, mask, guidance):
        device = latents.device
        embedded = None
        if self.guidance_embeds:
            embedded = torch.full((latents.shape[0],), guidance, device=device)
        return self.transformer(
            hidden_states=latents,
            timestep=timestep,
            guidance=embedded,
            encoder_hidden_states=embeds,
            txt_ids=text_ids(embeds.shape[1], device),
            img_ids=latent_ids(*self.token_hw, device=device),
            return_dict=False,
        )[0]

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps)
        return mean.to(like.device, like.dtype), std.to(like.device, like.dtype)

    def encode_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        grid = patchify(self.vae.encode(pixels).latent_dist.mode())
        mean, std = self._latent_stats(grid)
        return (grid - mean) / std

    def decode_grid(self, grid: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(grid)
        return self.vae.decode(unpatchify(grid * std + mean)).sample

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        resolution: tuple[int, int] = (1024, 1024),
        guidance: float = FLUX2_GUIDANCE,
        precision: str = "bf16",
        cache_dir: str | Path | None = None,
        max_sequence_length: int = 512,
        cfg_scale: float | None = None,
        text_layers: Sequence[int] | None = None,
    ) -> Flux2Generator:
        """Load a FLUX.2 dev or klein folder or hub id (:func:`flux2_variant`) in the policy's
        frozen dtype; prompt embeddings are cached. ``cfg_scale`` defaults to the pipeline's;
        ``text_layers`` (the pipelines' ``text_encoder_out_layers``) to the variant's."""
        from srpo.models.flux import DEFAULT_CACHE
        from srpo.models.prompt_cache import CachedPromptEncoder

        policy, dtype = frozen_dtype(precision)
        source = str(source)
        variant = flux2_variant(source)
        transformer = Flux2Transformer2DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = AutoencoderKLFlux2.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        text = Flux2KleinTextEncoder if variant.klein else Flux2DevTextEncoder
        layers = tuple(text_layers or (KLEIN_LAYERS if variant.klein else DEV_LAYERS))
        encoder = CachedPromptEncoder(
            lambda: text.from_pretrained(source, dtype, max_sequence_length, layers),
            cache_dir or DEFAULT_CACHE,
            namespace=f"flux2:{source}:{max_sequence_length}:{layers}:{dtype}",
        )
        scale = variant.cfg_scale if cfg_scale is None else cfg_scale
        return cls(transformer, vae, encoder, resolution, guidance, scale, precision=policy)
