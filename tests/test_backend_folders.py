"""The new backends from a local folder in diffusers layout (saved from a random small config by
the pipeline's own ``save_pretrained``), the clear refusal of a missing or wrong folder, and the
model card's diffusers snippet naming each backend's own pipeline and transformer classes."""

import json
from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Pipeline,
    QwenImagePipeline,
    StableDiffusion3Pipeline,
    ZImagePipeline,
)
from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

from app.web.cards import diffusers_snippet
from srpo.models import load_generator
from srpo.models.small import small_generator
from srpo.models.small_flux2 import SMALL_FLUX2_LAYERS

FULL = SimpleNamespace(
    format="full", weights_file="transformer/diffusion_pytorch_model.safetensors", job_id=1, step=2
)


def pipeline_of(name: str, generator):
    enc, parts = generator.prompt_encoder, {"vae": generator.vae}
    parts |= {"transformer": generator.transformer, "scheduler": FlowMatchEulerDiscreteScheduler()}
    if name == "sd3":
        texts = {f"text_encoder{s}": getattr(enc, f"text_encoder{s}") for s in ("", "_2", "_3")}
        tokens = {f"tokenizer{s}": getattr(enc, f"tokenizer{s}") for s in ("", "_2", "_3")}
        return StableDiffusion3Pipeline(**parts, **texts, **tokens)
    cls = {"qwen-image": QwenImagePipeline, "z-image": ZImagePipeline}.get(name)
    if cls is not None:
        return cls(**parts, text_encoder=enc.text_encoder, tokenizer=enc.tokenizer)
    if generator.guidance_embeds:  # FLUX.2 dev: Mistral 3 behind its Pixtral processor
        return Flux2Pipeline(**parts, text_encoder=enc.text_encoder, tokenizer=enc.processor)
    return Flux2KleinPipeline(**parts, text_encoder=enc.text_encoder, tokenizer=enc.tokenizer)


# The small configs' prompt lengths (the released models' defaults: 256 for SD3, 512 otherwise).
SEQUENCE = {"sd3": 24, "qwen-image": 64, "z-image": 48, "flux2": 32}


@pytest.mark.parametrize(
    ("name", "variant"),
    [("sd3", None), ("qwen-image", None), ("z-image", None), ("flux2", "klein"), ("flux2", "dev")],
)
def test_a_saved_folder_loads_through_the_loader(name, variant, tmp_path):
    original = small_generator(name, **({"variant": variant} if variant else {}))
    if variant == "dev":  # a loaded dev encoder wraps prompts in the pipeline's system message
        original.prompt_encoder.system_message = SYSTEM_MESSAGE
    extra = {"text_layers": SMALL_FLUX2_LAYERS} if name == "flux2" else {}
    pipeline_of(name, original).save_pretrained(tmp_path / "model")
    loaded = load_generator(
        name,
        str(tmp_path / "model"),
        precision="fp32",
        resolution=32,
        cache_dir=tmp_path / "c",
        max_sequence_length=SEQUENCE[name],
        **extra,
    )
    assert type(loaded) is type(original)
    prompts = ["a red circle", "a blue square"]
    cond, again = original.encode_prompts(prompts), loaded.encode_prompts(prompts)
    assert torch.allclose(again.prompt_embeds, cond.prompt_embeds, atol=1e-5)
    x, sigma = original.noise(2, torch.Generator().manual_seed(0)), torch.tensor([0.8, 0.3])
    with torch.no_grad():
        assert torch.allclose(loaded.velocity(x, sigma, cond), original.velocity(x, sigma, cond))
        assert torch.allclose(loaded.decode(x), original.decode(x), atol=1e-5)


def test_a_missing_or_wrong_model_folder_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_generator("sd3", str(tmp_path / "nowhere"))
    (tmp_path / "vae").mkdir()
    with pytest.raises(ValueError, match="not in diffusers layout"):
        load_generator("qwen-image", str(tmp_path))


@pytest.mark.parametrize(
    ("model", "pipeline", "transformer"),
    [
        ("flux", "FluxPipeline", "FluxTransformer2DModel"),
        ("flux2", "Flux2Pipeline", "Flux2Transformer2DModel"),
        ("qwen-image", "QwenImagePipeline", "QwenImageTransformer2DModel"),
        ("sd3", "StableDiffusion3Pipeline", "SD3Transformer2DModel"),
        ("z-image", "ZImagePipeline", "ZImageTransformer2DModel"),
    ],
)
def test_card_snippets_name_each_backends_classes(model, pipeline, transformer):
    lora = diffusers_snippet(
        SimpleNamespace(format="lora", weights_file="w.safetensors", job_id=1, step=2),
        {"model": model},
    )
    assert f"from diffusers import {pipeline}\n" in lora
    assert f"{pipeline}.from_pretrained(" in lora
    full = diffusers_snippet(FULL, {"model": model})
    assert 'zipfile.ZipFile("job1-step2.zip").extractall("job1-step2")' in full
    assert f'{transformer}.from_pretrained("job1-step2/transformer")' in full


def test_a_flux2_klein_folder_gets_the_klein_pipeline(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "Flux2KleinPipeline"}))
    config = {"model": "flux2", "model_path": str(tmp_path)}
    snippet = diffusers_snippet(FULL, config)
    assert "from diffusers import Flux2KleinPipeline" in snippet
