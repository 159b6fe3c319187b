"""Qwen-Image: our sampler matches QwenImagePipeline (prompts of their own lengths, true CFG with
its norm rescaling), Direct-Align trains the transformer only, and the trainer's checkpoints load
with diffusers' own loaders (random small configs)."""

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)

from srpo.models.prompt_cache import CachedPromptEncoder
from srpo.models.small import small_qwen_image, small_qwen_image_transformer
from srpo.rewards.clip import CLIPReward
from tests import backend_checks as checks
from tests.factories import save_small_clip_folder

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj"]


def pipeline(generator):
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=generator.vae,
        text_encoder=generator.prompt_encoder.text_encoder,
        tokenizer=generator.prompt_encoder.tokenizer,
        transformer=generator.transformer,
    )


@pytest.mark.parametrize("cfg_scale", [1.0, 4.0])
def test_our_sampler_gives_the_pipelines_latents(cfg_scale):
    generator = small_qwen_image(cfg_scale=cfg_scale)
    negative = [generator.negative_prompt] * 2 if cfg_scale > 1 else None
    theirs = checks.pipeline_latents(
        pipeline(generator),
        generator,
        3,
        2.0,
        true_cfg_scale=cfg_scale,
        negative_prompt=negative,
        max_sequence_length=64,
    )
    checks.assert_close(checks.our_latents(generator, 3, 2.0), theirs)


def test_cached_prompts_keep_their_lengths_and_guidance_changes_the_velocity(tmp_path):
    generator = small_qwen_image(cfg_scale=4.0)
    direct = generator.encode_prompts(checks.PROMPTS)
    encoder = generator.prompt_encoder
    generator.prompt_encoder = CachedPromptEncoder(lambda: encoder, tmp_path, "qwen-test")
    cached = generator.encode_prompts(checks.PROMPTS)
    again = generator.encode_prompts(checks.PROMPTS[::-1])  # from disk, other batch order
    assert cached.prompt_mask.sum(-1).tolist() == direct.prompt_mask.sum(-1).tolist()
    assert cached.prompt_mask[0].sum() < cached.prompt_mask[1].sum()
    assert torch.equal(cached.prompt_embeds, direct.prompt_embeds)
    assert torch.equal(again.prompt_embeds[0], cached.prompt_embeds[1])
    x, sigma = generator.noise(2, torch.Generator().manual_seed(1)), torch.tensor([0.7, 0.4])
    with torch.no_grad():
        guided = generator.velocity(x, sigma, cached)
        plain = generator.velocity(x, sigma, cached.without_guidance())
    assert (guided - plain).abs().max() > 1e-3


def test_direct_align_step_gives_gradients_to_the_transformer_only(tmp_path):
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    checks.check_direct_align(small_qwen_image(cfg_scale=2.0), reward)


def test_lora_loads_at_its_trained_strength_and_full_with_from_pretrained(tmp_path):
    generator = small_qwen_image()
    cond = generator.encode_prompts(checks.PROMPTS)
    x, sigma = generator.noise(2, torch.Generator().manual_seed(1)), torch.tensor([0.7, 0.4])
    checks.add_trained_lora(generator.transformer, TARGETS)
    with torch.no_grad():
        trained = generator.velocity(x, sigma, cond)
    folder = checks.save_lora(tmp_path / "lora", generator.transformer)

    fresh = small_qwen_image()
    pipe = pipeline(fresh)
    with torch.no_grad():
        base = fresh.velocity(x, sigma, cond)
    pipe.load_lora_weights(folder)
    with torch.no_grad():
        loaded = fresh.velocity(x, sigma, cond)
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(loaded, trained, atol=1e-5)

    full = small_qwen_image_transformer()
    checks.perturb(full)
    folder = checks.save_full(tmp_path / "full", full)
    checks.assert_same_parameters(
        QwenImageTransformer2DModel.from_pretrained(folder / "transformer"), full
    )
