"""Random small configs of each backend's real classes (no downloads), for tests and benches.

Each ``small_<backend>()`` builds the generator from the same diffusers transformer and VAE
classes and the same transformers text encoders as the released model, at a few thousand
parameters, with a word-level tokenizer (:func:`srpo.tiny_world.tokenizer.build_word_tokenizer`).
``SMALL_RESOLUTION`` is the pixel size they run at. FLUX.2's lives in
:mod:`srpo.models.small_flux2`, the parts they share in :mod:`srpo.models.small_parts`;
:func:`small_generator` builds any of them by backend name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from srpo.models.small_flux2 import small_flux2
from srpo.models.small_parts import (
    CHAT_TEMPLATE,
    SMALL_RESOLUTION,
    WORDS,
    small_clip_with_projection,
    small_flux_clip,
    small_kl_vae,
    small_qwen3_config,
    small_t5,
)
from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer

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


# -- Qwen-Image ------------------------------------------------------------------------------


def small_qwen_image_transformer():
    from diffusers import QwenImageTransformer2DModel

    torch.manual_seed(0)
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(8, 4, 4),
    )


def small_qwen_image_vae():
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(1)
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[False],
        latents_mean=[0.1, -0.2, 0.0, 0.3],
        latents_std=[1.5, 0.8, 1.2, 2.0],
    )


def small_qwen2_5_vl(tokenizer, hidden: int = 16):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(2)
    ids = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 256,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            **ids,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden,
        },
        vocab_size=len(tokenizer),
        **ids,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def small_qwen_image(cfg_scale: float = 1.0, resolution: int = SMALL_RESOLUTION):
    from srpo.models.qwen_image import QwenImageGenerator, QwenImageTextEncoder

    tokenizer = build_word_tokenizer(WORDS, model_max_length=2048)
    encoder = QwenImageTextEncoder(tokenizer, small_qwen2_5_vl(tokenizer), max_sequence_length=64)
    return QwenImageGenerator(
        small_qwen_image_transformer(),
        small_qwen_image_vae(),
        encoder,
        resolution=(resolution, resolution),
        cfg_scale=cfg_scale,
    )


# -- Z-Image ---------------------------------------------------------------------------------


def small_z_image_transformer():
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(0)
    return ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )


def small_qwen3(tokenizer, hidden: int = 16):
    from transformers import Qwen3Model

    torch.manual_seed(2)
    return Qwen3Model(small_qwen3_config(tokenizer, hidden, layers=2))


def small_z_image(cfg_scale: float = 1.0, resolution: int = SMALL_RESOLUTION):
    from srpo.models.z_image import ZImageGenerator, ZImageTextEncoder

    tokenizer = build_word_tokenizer(WORDS, model_max_length=64)
    tokenizer.chat_template = CHAT_TEMPLATE
    encoder = ZImageTextEncoder(tokenizer, small_qwen3(tokenizer), max_sequence_length=48)
    return ZImageGenerator(
        small_z_image_transformer(),
        small_kl_vae(),
        encoder,
        resolution=(resolution, resolution),
        cfg_scale=cfg_scale,
    )


SMALL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "sd3": small_sd3,
    "qwen-image": small_qwen_image,
    "z-image": small_z_image,
    "flux2": small_flux2,
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
    clip = small_flux_clip(tokenizer)
    tokenizer_2 = build_word_tokenizer(WORDS, 24)
    encoders = FluxTextEncoders(tokenizer, clip, tokenizer_2, small_t5(tokenizer_2, 32, 2), 24)
    generator = FluxGenerator(transformer, small_kl_vae(), encoders, (resolution, resolution))
    generator.cfg_scale = float(cfg_scale)
    return generator
