"""The parts the random small configs share (:mod:`srpo.models.small`,
:mod:`srpo.models.small_flux2`): the word list of their tokenizers, the pixel size they run at,
a chat template, and small VAE, CLIP and T5 text towers built from the real classes."""

from __future__ import annotations

import torch
from torch import nn

from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID

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

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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


def small_flux_clip(tokenizer, seed: int = 2) -> nn.Module:
    """FLUX.1's pooled text tower (``CLIPTextModel``) at the small size."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(
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


def small_qwen3_config(tokenizer, hidden: int, layers: int):
    """A Qwen3 config of ``layers`` layers at width ``hidden`` for ``tokenizer``: Z-Image's
    text tower (``Qwen3Model``) and FLUX.2 klein's (``Qwen3ForCausalLM``) are built from it."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
