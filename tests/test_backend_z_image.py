"""Z-Image: our sampler matches ZImagePipeline (timestep 1 - sigma, negated output, guidance
``c + g (c - u)``), Direct-Align trains the transformer only, and the trainer's checkpoints load
with diffusers' own loaders (random small configs)."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

from srpo.models.conventions import CONVENTIONS
from srpo.models.latents import pack_latents
from srpo.models.small import small_z_image, small_z_image_transformer
from srpo.rewards.clip import CLIPReward
from tests import backend_checks as checks
from tests.factories import save_small_clip_folder

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def pipeline(generator):
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=generator.vae,
        text_encoder=generator.prompt_encoder.text_encoder,
        tokenizer=generator.prompt_encoder.tokenizer,
        transformer=generator.transformer,
    )


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_our_sampler_gives_the_pipelines_latents(cfg_scale):
    generator = small_z_image(cfg_scale=cfg_scale)
    theirs = checks.pipeline_latents(
        pipeline(generator),
        generator,
        3,
        3.0,
        guidance_scale=CONVENTIONS["z-image"].pipeline_guidance(cfg_scale),
        max_sequence_length=48,
    )
    checks.assert_close(checks.our_latents(generator, 3, 3.0), pack_latents(theirs))


def test_direct_align_step_gives_gradients_to_the_transformer_only(tmp_path):
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    checks.check_direct_align(small_z_image(cfg_scale=2.0), reward)


def test_lora_loads_at_its_trained_strength_and_full_with_from_pretrained(tmp_path):
    generator = small_z_image()
    cond = generator.encode_prompts(checks.PROMPTS)
    x, sigma = generator.noise(2, torch.Generator().manual_seed(1)), torch.tensor([0.7, 0.4])
    checks.add_trained_lora(generator.transformer, TARGETS)
    with torch.no_grad():
        trained = generator.velocity(x, sigma, cond)
    folder = checks.save_lora(tmp_path / "lora", generator.transformer)

    fresh = small_z_image()
    pipe = pipeline(fresh)
    with torch.no_grad():
        base = fresh.velocity(x, sigma, cond)
    pipe.load_lora_weights(folder)
    with torch.no_grad():
        loaded = fresh.velocity(x, sigma, cond)
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(loaded, trained, atol=1e-5)

    full = small_z_image_transformer()
    checks.perturb(full)
    folder = checks.save_full(tmp_path / "full", full)
    checks.assert_same_parameters(
        ZImageTransformer2DModel.from_pretrained(folder / "transformer"), full
    )
