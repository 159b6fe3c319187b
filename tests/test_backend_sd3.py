"""SD3 / SD3.5: our sampler matches StableDiffusion3Pipeline, Direct-Align trains the transformer
only, and the trainer's checkpoints load with diffusers' own loaders (random small configs)."""

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)

from srpo.models.latents import pack_latents
from srpo.models.small import small_sd3, small_sd3_transformer
from srpo.rewards.clip import CLIPReward
from tests import backend_checks as checks
from tests.factories import save_small_clip_folder

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj"]


def pipeline(generator):
    enc = generator.prompt_encoder
    return StableDiffusion3Pipeline(
        transformer=generator.transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=generator.vae,
        text_encoder=enc.text_encoder,
        tokenizer=enc.tokenizer,
        text_encoder_2=enc.text_encoder_2,
        tokenizer_2=enc.tokenizer_2,
        text_encoder_3=enc.text_encoder_3,
        tokenizer_3=enc.tokenizer_3,
    )


@pytest.mark.parametrize("cfg_scale", [1.0, 4.5])
def test_our_sampler_gives_the_pipelines_latents(cfg_scale):
    generator = small_sd3(cfg_scale=cfg_scale)
    theirs = checks.pipeline_latents(
        pipeline(generator), generator, 3, 3.0, guidance_scale=cfg_scale, max_sequence_length=24
    )
    checks.assert_close(checks.our_latents(generator, 3, 3.0), pack_latents(theirs))


def test_direct_align_step_gives_gradients_to_the_transformer_only(tmp_path):
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    checks.check_direct_align(small_sd3(cfg_scale=2.0), reward)


def test_lora_loads_at_its_trained_strength_and_full_with_from_pretrained(tmp_path):
    generator = small_sd3()
    cond = generator.encode_prompts(checks.PROMPTS)
    x, sigma = generator.noise(2, torch.Generator().manual_seed(1)), torch.tensor([0.7, 0.4])
    checks.add_trained_lora(generator.transformer, TARGETS)
    with torch.no_grad():
        trained = generator.velocity(x, sigma, cond)
    folder = checks.save_lora(tmp_path / "lora", generator.transformer)

    fresh = small_sd3()
    pipe = pipeline(fresh)
    with torch.no_grad():
        base = fresh.velocity(x, sigma, cond)
    pipe.load_lora_weights(folder)
    with torch.no_grad():
        loaded = fresh.velocity(x, sigma, cond)
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(loaded, trained, atol=1e-5)

    full = small_sd3_transformer()
    checks.perturb(full)
    folder = checks.save_full(tmp_path / "full", full)
    checks.assert_same_parameters(
        SD3Transformer2DModel.from_pretrained(folder / "transformer"), full
    )
