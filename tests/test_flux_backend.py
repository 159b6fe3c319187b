import warnings

import open_clip
import pytest
import torch

from srpo.direct_align import DirectAlignConfig, srpo_objective
from srpo.models import load_generator
from srpo.models.flux import FluxGenerator, pack_latents, unpack_latents
from srpo.rewards.clip import CLIPReward
from srpo.rewards.hps import HPSReward
from tests.factories import (
    assert_only_transformer_trains,
    direct_align_step,
    register_small_open_clip,
    save_small_clip_folder,
    save_small_flux_folder,
    small_flux,
)

PROMPTS = ["a red circle", "a photo of a blue square"]


@pytest.fixture(scope="module")
def rewards(tmp_path_factory):
    arch = register_small_open_clip(tmp_path_factory.mktemp("openclip"))
    torch.manual_seed(5)
    hps = HPSReward(open_clip.create_model(arch, load_weights=False), open_clip.get_tokenizer(arch))
    clip = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path_factory.mktemp("clip")))
    pick = CLIPReward.from_pretrained(
        save_small_clip_folder(tmp_path_factory.mktemp("pick")), scale_by_logit=True
    )
    return {"hps": hps, "clip": clip, "pickscore": pick}


def test_pack_unpack_round_trip():
    latents = torch.randn(2, 4, 6, 8)
    packed = pack_latents(latents)
    assert packed.shape == (2, 12, 16)
    assert torch.equal(unpack_latents(packed, 6, 8), latents)
    with pytest.raises(ValueError, match="even"):
        pack_latents(torch.randn(1, 4, 5, 8))


def test_encode_decode_shapes_and_range():
    generator = small_flux()
    pixels = torch.rand(2, 3, 32, 32)
    latents = generator.encode(pixels)
    assert latents.shape == generator.noise(2).shape == (2, 64, 16)
    decoded = generator.decode(latents)
    assert decoded.shape == pixels.shape and decoded.min() >= 0 and decoded.max() <= 1
    with pytest.raises(ValueError, match="32x32"):
        generator.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of 4"):
        generator.set_resolution((34, 32))


@pytest.mark.parametrize("reward_name", ["hps", "clip", "pickscore"])
@pytest.mark.parametrize("inversion", [True, False])
def test_direct_align_step_gives_gradients_to_transformer_only(rewards, reward_name, inversion):
    generator, reward = small_flux(), rewards[reward_name]
    settings = DirectAlignConfig(inversion=inversion)
    objective = direct_align_step(
        generator, reward, settings, ("realistic photo", "painting"), num_steps=3, shift=3.0
    )
    assert_only_transformer_trains(generator, reward)
    assert set(objective.rewards) == ({"denoise", "inversion"} if inversion else {"denoise"})


def test_plain_direct_align_scores_the_prompt_and_refuses_inversion_without_words(rewards):
    generator = small_flux()
    cond = generator.encode_prompts(PROMPTS)
    eps = generator.noise(2, torch.Generator().manual_seed(1))
    args = (generator, rewards["hps"], eps * 0.1, eps, cond, PROMPTS, torch.tensor([0.8, 0.85]))
    with pytest.raises(ValueError, match="control words"):
        srpo_objective(*args, DirectAlignConfig(inversion=True))
    objective = srpo_objective(*args, DirectAlignConfig(inversion=False))
    objective.loss.backward()
    expected = rewards["hps"].score(objective.images["denoise"], PROMPTS)
    assert torch.allclose(objective.rewards["denoise"], expected, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        generator = small_flux()
        generator.enable_gradient_checkpointing(checkpointing)
        cond = generator.encode_prompts(PROMPTS)
        x = generator.noise(2, torch.Generator().manual_seed(2))
        generator.velocity(x, torch.tensor([0.5, 0.7]), cond).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in generator.transformer.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_load_from_local_folder_caches_prompt_embeddings(tmp_path):
    folder = save_small_flux_folder(tmp_path / "flux")
    cache = tmp_path / "cache"
    options = {"resolution": 32, "precision": "fp32", "cache_dir": cache}
    generator = load_generator("flux", str(folder), max_sequence_length=24, **options)
    assert isinstance(generator, FluxGenerator)
    first = generator.encode_prompts(PROMPTS)
    assert len(list(cache.rglob("*.safetensors"))) == 2
    generator.prompt_encoder.release()
    fresh = load_generator("flux", str(folder), max_sequence_length=24, **options)
    fresh.prompt_encoder.factory = lambda: pytest.fail("text encoders loaded despite the cache")
    again = fresh.encode_prompts(PROMPTS)
    assert torch.equal(first.prompt_embeds, again.prompt_embeds)
    assert torch.equal(first.pooled, again.pooled)
    assert first.prompt_embeds.shape == (2, 24, 32) and first.pooled.shape == (2, 24)


def test_long_prompt_truncates_with_one_warning():
    generator = small_flux()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cond = generator.encode_prompts(["red " * 50, "blue " * 50])
    assert sum("truncated" in str(w.message) for w in caught) == 1
    assert cond.prompt_embeds.shape[1] == 24


def test_classifier_free_guidance_mixes_two_predictions():
    generator = small_flux(guidance_embeds=False)
    generator.cfg_scale = 3.0
    cond = generator.encode_prompts(PROMPTS)
    assert cond.uncond_embeds is not None
    x, sigma = generator.noise(2, torch.Generator().manual_seed(3)), torch.tensor([0.5, 0.5])
    with torch.no_grad():
        guided = generator.velocity(x, sigma, cond)
        plain = generator.velocity(x, sigma, cond.without_guidance())
        empty = generator.velocity(x, sigma, type(cond)(cond.uncond_embeds, cond.uncond_pooled))
    assert torch.allclose(guided, empty + 3.0 * (plain - empty), atol=1e-5)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'sdxl'"):
        load_generator("sdxl")
