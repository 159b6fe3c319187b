"""The random small config of FLUX.2 (dev: Mistral 3 and the Pixtral processor; klein:
Qwen3), built from the real classes at a few thousand parameters (no downloads)."""

from __future__ import annotations

import torch
from torch import nn

from srpo.models.small_parts import CHAT_TEMPLATE, SMALL_RESOLUTION, WORDS, small_qwen3_config
from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer

#: The small text models' hidden-state layers (the real ones: 10, 20, 30 and 9, 18, 27).
SMALL_FLUX2_LAYERS = (1, 2, 3)
# Enough of the real templates' structure (roles, content parts) for the processor's path.
PIXTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% for c in m['content'] %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ c['text'] }}[/SYSTEM_PROMPT]"
    "{% else %}[INST]{{ c['text'] }}[/INST]{% endif %}{% endfor %}{% endfor %}"
)
PIXTRAL_TOKENS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]


def small_flux2_transformer(klein: bool = False):
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(0)
    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=not klein,
    )


def small_flux2_vae():
    """A two-level ``AutoencoderKLFlux2`` whose batch norm holds non-trivial statistics."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(1)
    vae = AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    with torch.no_grad():
        vae.bn.running_mean.uniform_(-0.3, 0.3)
        vae.bn.running_var.uniform_(0.5, 2.0)
    return vae


def small_mistral3(tokenizer, hidden: int = 16):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    torch.manual_seed(2)
    ids = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 256,
            **ids,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "image_size": 32,
            "patch_size": 8,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
    )
    return Mistral3ForConditionalGeneration(config)


def small_pixtral_processor(max_length: int = 64):
    """A ``PixtralProcessor`` around a word-level tokenizer (FLUX.2-dev's ``tokenizer``)."""
    from transformers import PixtralImageProcessor, PixtralProcessor

    tokenizer = build_word_tokenizer(WORDS, model_max_length=max_length)
    tokenizer.add_special_tokens({"additional_special_tokens": PIXTRAL_TOKENS})
    return PixtralProcessor(
        image_processor=PixtralImageProcessor(),
        tokenizer=tokenizer,
        patch_size=8,
        chat_template=PIXTRAL_CHAT_TEMPLATE,
    )


def small_qwen3_causal(tokenizer, hidden: int = 16):
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(2)
    return Qwen3ForCausalLM(small_qwen3_config(tokenizer, hidden, layers=3))


def small_flux2_text_encoder(klein: bool = False, max_sequence_length: int = 32):
    from srpo.models.flux2 import Flux2DevTextEncoder, Flux2KleinTextEncoder

    if klein:
        tokenizer = build_word_tokenizer(WORDS, model_max_length=64)
        tokenizer.chat_template = CHAT_TEMPLATE
        model = small_qwen3_causal(tokenizer)
        return Flux2KleinTextEncoder(tokenizer, model, max_sequence_length, SMALL_FLUX2_LAYERS)
    processor = small_pixtral_processor()
    model = small_mistral3(processor.tokenizer)
    return Flux2DevTextEncoder(
        processor, model, max_sequence_length, SMALL_FLUX2_LAYERS, system_message="a photo"
    )


def small_flux2(
    cfg_scale: float = 1.0, resolution: int = SMALL_RESOLUTION, variant: str = "dev"
) -> nn.Module:
    """FLUX.2 ``variant`` ``dev`` (Mistral 3, embedded guidance) or ``klein`` (Qwen3, none)."""
    from srpo.models.flux2 import Flux2Generator

    if variant not in ("dev", "klein"):
        raise ValueError(f"FLUX.2 variant must be dev or klein, not {variant!r}")
    klein = variant == "klein"
    return Flux2Generator(
        small_flux2_transformer(klein),
        small_flux2_vae(),
        small_flux2_text_encoder(klein),
        resolution=(resolution, resolution),
        cfg_scale=cfg_scale,
    )
