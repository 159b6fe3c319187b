"""srpo's LoRA checkpoints load into diffusers (and back into srpo) at the trained strength.

A peft LoRA scales ``B @ A`` by ``alpha / rank``; the checkpoint must carry alpha so that
``FluxPipeline.load_lora_weights`` does not fall back to ``alpha = rank`` (strength 1).
"""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from safetensors import safe_open

from app.web.cards import diffusers_snippet
from srpo.checkpoints import LORA_FILE, load_checkpoint, save_checkpoint
from tests.factories import small_flux_transformer

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CASES = [pytest.param(4, 16, id="alpha16-rank4"), pytest.param(4, 4, id="alpha-equals-rank")]


def trained_lora(rank: int, alpha: float, transformer=None):
    """A transformer with a LoRA whose B is non-zero (as after training)."""
    transformer = transformer if transformer is not None else small_flux_transformer()
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS, init_lora_weights="gaussian")
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return transformer


def save(tmp_path, transformer):
    optimizer = torch.optim.AdamW([p for p in transformer.parameters() if p.requires_grad])
    return save_checkpoint(tmp_path, 1, transformer, True, optimizer, {"config": {}})


def lora_layers(transformer) -> dict[str, LoraLayer]:
    return {n: m for n, m in transformer.named_modules() if isinstance(m, LoraLayer)}


def hand_merged(trained, base, rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """``W + (alpha / rank) * B @ A`` per targeted Linear: W from ``base``, A and B from ``trained``."""
    modules = dict(base.named_modules())
    merged = {}
    for name, layer in lora_layers(trained).items():
        linear = modules[name]
        if isinstance(linear, LoraLayer):
            linear = linear.get_base_layer()
        a = layer.lora_A["default"].weight.detach()
        b = layer.lora_B["default"].weight.detach()
        merged[name] = linear.weight.detach() + (alpha / rank) * b @ a
    return merged


def bare_pipeline(transformer) -> FluxPipeline:
    """A FluxPipeline around ``transformer`` only (loading a transformer LoRA needs no more)."""
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )


@pytest.mark.parametrize(("rank", "alpha"), CASES)
def test_checkpoint_stores_adapter_config_as_diffusers_metadata(tmp_path, rank, alpha):
    checkpoint = save(tmp_path, trained_lora(rank, alpha))
    with safe_open(str(checkpoint.path / LORA_FILE), framework="pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
    assert metadata["format"] == "pt"
    adapter = json.loads(metadata["lora_adapter_metadata"])
    assert adapter["transformer.r"] == rank and adapter["transformer.lora_alpha"] == alpha
    assert sorted(adapter["transformer.target_modules"]) == sorted(TARGETS)
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)


@pytest.mark.parametrize(("rank", "alpha"), CASES)
def test_load_lora_weights_applies_trained_alpha(tmp_path, rank, alpha):
    trained = trained_lora(rank, alpha)
    checkpoint = save(tmp_path, trained)
    fresh = small_flux_transformer()
    expected = hand_merged(trained, fresh, rank, alpha)
    biases = {n: p.detach().clone() for n, p in fresh.named_parameters() if n.endswith(".bias")}

    pipe = bare_pipeline(fresh)
    pipe.load_lora_weights(checkpoint.path)
    loaded = lora_layers(pipe.transformer)
    assert set(loaded) == set(expected) and expected
    torch.manual_seed(4)
    with torch.no_grad():
        for name, layer in loaded.items():
            x = torch.randn(3, layer.in_features)
            want = torch.nn.functional.linear(x, expected[name], biases.get(f"{name}.bias"))
            torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)

    pipe.fuse_lora(components=["transformer"])
    for name, layer in lora_layers(pipe.transformer).items():
        fused = layer.get_base_layer().weight.detach()
        torch.testing.assert_close(fused, expected[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("rank", "alpha"), CASES)
def test_load_checkpoint_restores_lora_for_resume(tmp_path, rank, alpha):
    trained = trained_lora(rank, alpha)
    checkpoint = save(tmp_path, trained)
    resumed = small_flux_transformer()
    resumed.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS))
    load_checkpoint(checkpoint, resumed, None)
    want = {n: p for n, p in trained.named_parameters() if "lora_" in n}
    got = {n: p for n, p in resumed.named_parameters() if "lora_" in n}
    assert set(got) == set(want) and want
    for name, param in got.items():
        torch.testing.assert_close(param, want[name], atol=0, rtol=0)


def test_tiny_card_snippet_loads_at_trained_alpha(tmp_path, monkeypatch):
    from srpo.models import load_generator

    rank, alpha = 4, 16.0
    config = {"model": "tiny", "lora": {"rank": rank, "alpha": alpha, "target_modules": TARGETS}}
    trained = trained_lora(rank, alpha, load_generator("tiny").transformer)
    checkpoint = save(tmp_path, trained)
    found = SimpleNamespace(format="lora", weights_file=LORA_FILE, job_id=3, step=checkpoint.step)
    snippet = diffusers_snippet(found, config)
    assert "lora_alpha=16.0" in snippet and "r=4" in snippet

    # the snippet loads the file as downloaded (named after the job and step), alone
    download = tmp_path / "download"
    download.mkdir()
    shutil.copy(checkpoint.path / LORA_FILE, download / f"job3-step{checkpoint.step}-{LORA_FILE}")
    monkeypatch.chdir(download)
    namespace: dict = {}
    exec(compile(snippet, "snippet", "exec"), namespace)
    loaded = namespace["transformer"]
    expected = hand_merged(trained, loaded, rank, alpha)
    layers = lora_layers(loaded)
    assert set(layers) == set(expected) and expected
    for name, layer in layers.items():
        scale = layer.scaling["default"]
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        weight = layer.get_base_layer().weight + scale * b @ a
        torch.testing.assert_close(weight.detach(), expected[name], atol=1e-5, rtol=1e-5)


def test_flux_card_snippet_relies_on_stored_metadata():
    config = {"model": "flux", "lora": {"rank": 4, "alpha": 16.0, "target_modules": TARGETS}}
    found = SimpleNamespace(format="lora", weights_file=LORA_FILE, job_id=3, step=5)
    snippet = diffusers_snippet(found, config)
    assert f'pipe.load_lora_weights(".", weight_name="job3-step5-{LORA_FILE}")' in snippet
    assert "lora_alpha" not in snippet and "set_adapters" not in snippet
