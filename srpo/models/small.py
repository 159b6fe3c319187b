"""Random small configs of each backend's real classes (no downloads), for tests and benches.

Each ``small_<backend>()`` builds the generator from the same diffusers transformer and VAE
classes and the same transformers text encoders as the released model, at a few thousand
parameters, with a word-level tokenizer (:func:`srpo.tiny_world.tokenizer.build_word_tokenizer`).
``SMALL_RESOLUTION`` is the pixel size they run at.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer

SMALL_RESOLUTION = 32
WORDS = [
    "a",
    "photo",
    "of",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "cat",
    "dog",
    "realistic",
    "painting",
    "cg",
    "render",
    "flat",
    "large",
    "on",
    "white",
    "background",
]


def small_kl_vae(latent_channels: int = 4, scaling_factor: float = 0.5, shift_factor: float = 0.1):
    """A two-level ``AutoencoderKL`` (latent factor 2)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )


def small_clip_with_projection(tokenizer, hidden: int = 16, seed: int = 2) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=tokenizer.model_max_length,
            eos_token_id=EOS_ID,
            bos_token_id=BOS_ID,
            pad_token_id=PAD_ID,
            projection_dim=hidden,
        )
    )


def small_t5(tokenizer, width: int, seed: int = 4) -> nn.Module:
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=width,
            d_kv=8,
            d_ff=2 * width,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
        )
    )


# -- SD3 -------------------------------------------------------------------------------------


def small_sd3_transformer():
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=48,
        caption_projection_dim=16,
        pooled_projection_dim=32,
        out_channels=4,
        pos_embed_max_size=16,
    )


def small_sd3_text_encoders():
    from srpo.models.sd3 import SD3TextEncoders

    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    tokenizer_2 = build_word_tokenizer(WORDS, model_max_length=16)
    tokenizer_3 = build_word_tokenizer(WORDS, model_max_length=24)
    return SD3TextEncoders(
        tokenizer,
        small_clip_with_projection(tokenizer, seed=2),
        tokenizer_2,
        small_clip_with_projection(tokenizer_2, seed=3),
        tokenizer_3,
        small_t5(tokenizer_3, 48),
        max_sequence_length=24,
    )


def small_sd3(cfg_scale: float = 1.0, resolution: int = SMALL_RESOLUTION):
    from srpo.models.sd3 import SD3Generator

    return SD3Generator(
        small_sd3_transformer(),
        small_kl_vae(),
        small_sd3_text_encoders(),
        resolution=(resolution, resolution),
        cfg_scale=cfg_scale,
    )


SMALL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "sd3": small_sd3,
}


def small_generator(name: str, **options) -> nn.Module:
    """The random small config of backend ``name``."""
    if name == "flux":
        return small_flux(**options)
    try:
        return SMALL_BUILDERS[name](**options)
    except KeyError:
        known = ", ".join(["flux", *SMALL_BUILDERS])
        raise ValueError(f"no small config of {name!r}; one of {known}") from None


def small_flux(cfg_scale: float = 1.0, resolution: int = SMALL_RESOLUTION):
    """FLUX.1 at the same size (one double and one single block)."""
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from srpo.models.flux import FluxGenerator
    from srpo.models.flux_text import FluxTextEncoders

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=24,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    torch.manual_seed(2)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            eos_token_id=EOS_ID,
            bos_token_id=BOS_ID,
            pad_token_id=PAD_ID,
            projection_dim=24,
        )
    )
    tokenizer_2 = build_word_tokenizer(WORDS, 24)
    encoders = FluxTextEncoders(tokenizer, clip, tokenizer_2, small_t5(tokenizer_2, 32, 2), 24)
    generator = FluxGenerator(transformer, small_kl_vae(), encoders, (resolution, resolution))
    generator.cfg_scale = float(cfg_scale)
    return generator
