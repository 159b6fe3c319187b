"""Random-initialised small configs of the real classes (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    T5Config,
    T5EncoderModel,
)

from srpo.models.flux import FluxGenerator
from srpo.models.flux_text import FluxTextEncoders
from srpo.models.small import small_kl_vae
from srpo.models.small_parts import small_flux_clip
from srpo.tiny_world.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer

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
]
SMALL_OPEN_CLIP = "srpo-test-ViT"


def small_flux_transformer(guidance_embeds: bool = True) -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=24,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )


def small_vae() -> AutoencoderKL:
    return small_kl_vae()


def small_text_encoders() -> FluxTextEncoders:
    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    clip = small_flux_clip(tokenizer)  # seeds 2; the T5 below goes on from there
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
        )
    )
    return FluxTextEncoders(tokenizer, clip, build_word_tokenizer(WORDS, 24), t5, 24)


def small_flux(resolution: int = 32, guidance_embeds: bool = True) -> FluxGenerator:
    return FluxGenerator(
        small_flux_transformer(guidance_embeds),
        small_vae(),
        small_text_encoders(),
        resolution=(resolution, resolution),
    )


def save_small_flux_folder(root: Path) -> Path:
    """A FLUX-layout folder (transformer, vae, tokenizers, text encoders) of random weights."""
    encoders = small_text_encoders()
    small_flux_transformer().save_pretrained(root / "transformer")
    small_vae().save_pretrained(root / "vae")
    encoders.tokenizer.save_pretrained(root / "tokenizer")
    encoders.text_encoder.save_pretrained(root / "text_encoder")
    encoders.tokenizer_2.save_pretrained(root / "tokenizer_2")
    encoders.text_encoder_2.save_pretrained(root / "text_encoder_2")
    return root


def register_small_open_clip(tmp: Path) -> str:
    """Register a small ViT open_clip architecture (same classes as ViT-H-14)."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    path = tmp / f"{SMALL_OPEN_CLIP}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return SMALL_OPEN_CLIP


def save_small_clip_folder(root: Path) -> Path:
    """A transformers CLIP folder (model, tokenizer, image processor) with random weights."""
    torch.manual_seed(3)
    tokenizer = build_word_tokenizer(WORDS, model_max_length=16)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "eos_token_id": EOS_ID,
            "bos_token_id": BOS_ID,
            "pad_token_id": PAD_ID,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root)
    return root


def direct_align_step(generator, reward, settings, words, num_steps: int, shift: float):
    """Roll out two prompts, run one SRPO objective and backpropagate it; returns it."""
    from srpo.direct_align import srpo_objective

    prompts = ["a red circle", "photo. a large blue square on a white background"]
    cond = generator.encode_prompts(prompts)
    eps = generator.noise(2, torch.Generator().manual_seed(0))
    x0 = generator.sample(cond, eps, num_steps=num_steps, shift=shift)
    s_star = torch.tensor([0.8, 0.9])
    objective = srpo_objective(generator, reward, x0, eps, cond, prompts, s_star, settings, words)
    objective.loss.backward()
    return objective


def assert_only_transformer_trains(generator, reward) -> None:
    """Finite, non-zero gradients on the transformer; none on the frozen reward and VAE."""
    grads = [p.grad for p in generator.transformer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in reward.parameters())
    assert all(p.grad is None for p in generator.vae.parameters())
