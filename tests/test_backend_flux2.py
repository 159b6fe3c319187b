"""FLUX.2 dev and klein: our sampler matches Flux2Pipeline / Flux2KleinPipeline (stacked text
layers, patchified latents normalised by the VAE's batch norm, embedded guidance or true CFG),
Direct-Align trains the transformer only, and the trainer's checkpoints load with diffusers' own
loaders (random small configs)."""

import json
import math

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Pipeline,
    Flux2Transformer2DModel,
)
from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

from srpo.models import sampling_defaults
from srpo.models.flux2 import (
    FLUX2_SAMPLING,
    KLEIN_DISTILLED_SAMPLING,
    Flux2Variant,
    flux2_variant,
)
from srpo.models.latents import patchify
from srpo.models.small_flux2 import SMALL_FLUX2_LAYERS, small_flux2, small_flux2_transformer
from srpo.rewards.clip import CLIPReward
from tests import backend_checks as checks
from tests.factories import save_small_clip_folder

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "to_qkv_mlp_proj"]
CALL = {"max_sequence_length": 32, "text_encoder_out_layers": SMALL_FLUX2_LAYERS}


def pipeline(generator):
    encoder = generator.prompt_encoder
    if generator.guidance_embeds:  # dev
        pipe = Flux2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=generator.vae,
            text_encoder=encoder.text_encoder,
            tokenizer=encoder.processor,
            transformer=generator.transformer,
        )
        pipe.system_message = encoder.system_message
        return pipe
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=generator.vae,
        text_encoder=encoder.text_encoder,
        tokenizer=encoder.tokenizer,
        transformer=generator.transformer,
    )


@pytest.mark.parametrize(("variant", "cfg_scale"), [("dev", 1.0), ("klein", 1.0), ("klein", 3.0)])
def test_our_sampler_gives_the_pipelines_latents(variant, cfg_scale):
    generator = small_flux2(cfg_scale=cfg_scale, variant=variant)
    # dev: the embedded guidance; klein: true CFG (the pipeline's guidance_scale, off at 1)
    scale = generator.guidance if variant == "dev" else cfg_scale
    theirs = checks.pipeline_latents(
        pipeline(generator), generator, 3, 3.0, guidance_scale=scale, **CALL
    )
    if variant == "klein":
        theirs = klein_tokens(generator, theirs)
    checks.assert_close(checks.our_latents(generator, 3, 3.0), theirs)


def klein_tokens(generator, latents):
    """Flux2KleinPipeline's ``latent`` output is the VAE's raw latent grid: our tokens of it."""
    bn = generator.vae.bn
    mean = bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + generator.vae.config.batch_norm_eps)
    return generator.pack((patchify(latents) - mean) / std)


def test_decoded_images_match_the_pipelines():
    generator = small_flux2(variant="klein")
    pipe = pipeline(generator)
    pipe.scheduler = checks.matching_scheduler(None, 3.0)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt=list(checks.PROMPTS),
        height=32,
        width=32,
        num_inference_steps=2,
        sigmas=checks.pipeline_sigmas(2),
        generator=torch.Generator().manual_seed(0),
        guidance_scale=1.0,
        output_type="pt",
        **CALL,
    ).images
    with torch.no_grad():
        ours = generator.decode(checks.our_latents(generator, 2, 3.0))
    assert (ours - theirs).abs().max() < 1e-4
    # and encoding inverts the batch-norm normalisation the decoder undoes
    latents = generator.encode(ours)
    assert latents.shape == generator.noise(2).shape


def test_direct_align_step_gives_gradients_to_the_transformer_only(tmp_path):
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    checks.check_direct_align(small_flux2(variant="dev"), reward)


def test_lora_loads_at_its_trained_strength_and_full_with_from_pretrained(tmp_path):
    generator = small_flux2(variant="klein")
    cond = generator.encode_prompts(checks.PROMPTS)
    x, sigma = generator.noise(2, torch.Generator().manual_seed(1)), torch.tensor([0.7, 0.4])
    checks.add_trained_lora(generator.transformer, TARGETS)
    with torch.no_grad():
        trained = generator.velocity(x, sigma, cond)
    folder = checks.save_lora(tmp_path / "lora", generator.transformer)

    fresh = small_flux2(variant="klein")
    pipe = pipeline(fresh)
    with torch.no_grad():
        base = fresh.velocity(x, sigma, cond)
    pipe.load_lora_weights(folder)
    with torch.no_grad():
        loaded = fresh.velocity(x, sigma, cond)
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(loaded, trained, atol=1e-5)

    full = small_flux2_transformer()
    checks.perturb(full)
    folder = checks.save_full(tmp_path / "full", full)
    checks.assert_same_parameters(
        Flux2Transformer2DModel.from_pretrained(folder / "transformer"), full
    )


def test_variants_are_read_from_the_folder_or_the_hub_id(tmp_path):
    assert flux2_variant("black-forest-labs/FLUX.2-dev") == Flux2Variant()
    klein = flux2_variant("black-forest-labs/FLUX.2-klein-4B")
    assert klein.klein and klein.distilled and klein.cfg_scale == 1.0
    base = flux2_variant("black-forest-labs/FLUX.2-klein-base-9B")
    assert base.klein and not base.distilled and base.cfg_scale > 1
    index = {"_class_name": "Flux2KleinPipeline", "is_distilled": True}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    assert flux2_variant(tmp_path).sampling == KLEIN_DISTILLED_SAMPLING
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match=r"not a FLUX\.2"):
        flux2_variant(tmp_path)


def test_sampling_shifts_are_the_pipelines_at_1024_pixels():
    tokens = (1024 // 16) ** 2
    for sampling in (FLUX2_SAMPLING, KLEIN_DISTILLED_SAMPLING):
        shift = math.exp(compute_empirical_mu(tokens, sampling["steps"]))
        assert abs(sampling["shift"] - shift) < 1e-3
    assert sampling_defaults("flux2") == FLUX2_SAMPLING
