"""FLUX.1 on the shared FlowGenerator base: our sampler matches FluxPipeline seed for seed
(embedded guidance, and true CFG against the empty prompt), and Direct-Align trains the
transformer only (random small configs)."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from srpo.models.common import FlowGenerator
from srpo.models.flux import FluxGenerator
from srpo.models.small import small_flux
from srpo.models.tiny import load_tiny_generator
from srpo.rewards.clip import CLIPReward
from tests import backend_checks as checks
from tests.factories import save_small_clip_folder


def pipeline(generator):
    encoders = generator.prompt_encoder
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=generator.vae,
        text_encoder=encoders.text_encoder,
        tokenizer=encoders.tokenizer,
        text_encoder_2=encoders.text_encoder_2,
        tokenizer_2=encoders.tokenizer_2,
        transformer=generator.transformer,
    )


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_our_sampler_gives_the_pipelines_latents(cfg_scale):
    generator = small_flux(cfg_scale=cfg_scale)
    assert isinstance(generator, FlowGenerator)
    call = {"guidance_scale": generator.guidance, "max_sequence_length": 24}
    if cfg_scale != 1.0:
        call |= {"true_cfg_scale": cfg_scale, "negative_prompt": [""] * len(checks.PROMPTS)}
    theirs = checks.pipeline_latents(pipeline(generator), generator, 3, 3.0, **call)
    checks.assert_close(checks.our_latents(generator, 3, 3.0), theirs)


def test_direct_align_step_gives_gradients_to_the_transformer_only(tmp_path):
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    checks.check_direct_align(small_flux(cfg_scale=2.0), reward)


def test_the_tiny_world_keeps_the_packed_noise_its_gates_were_measured_on():
    generator = load_tiny_generator()
    assert isinstance(generator, FluxGenerator) and generator.packed_noise
    h, w = generator.latent_hw
    drawn = generator.noise(2, torch.Generator().manual_seed(4))
    expected = torch.randn(
        2, (h // 2) * (w // 2), generator.in_channels, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(drawn, expected)
