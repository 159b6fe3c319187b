"""`srpo explain`: what a config will do, read before any GPU time is spent."""

import json

import pytest

from srpo.cli import main
from srpo.config import PRESET_GPUS, PRESETS, preset
from srpo.explain import explain, explain_markdown, memory_plan
from srpo.models.full_size import FULL_SIZE, Architecture
from srpo.models.small import small_sd3_transformer
from srpo.train import build_models, prepare_trainable

KEYS = {
    "sigma_window",
    "d",
    "discount",
    "control_words",
    "guidance",
    "precision",
    "trainable_parameters",
    "effective_batch",
    "updates_per_checkpoint",
}


def test_paper_preset_summary(capsys):
    assert main(["explain", "flux-paper-32gpu", "--processes", "32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary.keys() >= KEYS
    assert summary["sigma_window"] == [0.75, 0.96] and summary["d"] == 0.022
    den, inv = summary["discount"]["denoise"], summary["discount"]["inversion"]
    assert (den["low"], den["high"], inv["low"], inv["high"]) == (0.1, 0.25, 0.3, 0.01)
    assert den["mid"] == pytest.approx(0.175) and inv["mid"] == pytest.approx(0.155)
    assert len(summary["control_words"]) == 10
    assert summary["control_words"][:2] == [
        ["Natural-lighting", "Concept art"],
        ["Detail", "Painting"],
    ]
    assert summary["guidance"] == {"rollout": 1.0, "train": 3.5}
    precision = summary["precision"]
    assert (precision["trainable"], precision["frozen"], precision["flow_math"]) == (
        "float32",
        "bfloat16",
        "float32",
    )
    assert summary["effective_batch"] == 32 and summary["updates_per_checkpoint"] == 10


@pytest.mark.parametrize("lora", [None, {"rank": 4, "alpha": 8}])
def test_trainable_parameter_count_matches_the_loaded_model(smoke_world, lora):
    config = preset(
        "tiny-demo", model_path=str(smoke_world), reward_path=str(smoke_world), lora=lora
    )
    generator, _ = build_models(config)
    trained = sum(p.numel() for p in prepare_trainable(generator, config))
    assert explain(config)["trainable_parameters"] == trained


def test_baselines_show_their_reward_text_and_no_words():
    summary = explain(preset("flux-paper-32gpu", method="grpo"))
    assert summary["control_words"] == [] and summary["reward_text"] == "r(p)"
    assert summary["optimizer"]["lr"] == 1e-5 and summary["images_per_update"] == 12
    assert "r(p)" in explain_markdown(summary)


def test_unknown_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srpo: error:") and "\n" not in err


def small_architecture() -> tuple[Architecture, int]:
    """A small SD3 transformer's architecture and its parameters, counted on the real model."""
    transformer = small_sd3_transformer()
    arch = Architecture("SD3Transformer2DModel", dict(transformer.config), 16, text_tokens=8)
    return arch, sum(p.numel() for p in transformer.parameters())


def test_memory_plan_arithmetic_on_a_model_we_can_count():
    arch, count = small_architecture()
    full = preset("sd3-full-8gpu", resolution=64, batch_size=2, cfg_scale=3.0)
    plan = memory_plan(full, 4, arch)
    assert plan["parameters_counted"] == {"all": count, "trainable": count}
    # fp32 masters, gradients and AdamW's two moments, sharded over the 4 processes
    assert plan["bytes"]["parameters"] == plan["bytes"]["gradients"] == 4 * count // 4
    assert plan["bytes"]["optimizer_state"] == 8 * count // 4 and plan["sharded_over"] == 4
    tokens, width, blocks = (64 // 16) ** 2 + 8, 2 * 8, 2  # heads x head dim; 2 layers
    assert plan["tokens"] == tokens and plan["forward_batch"] == 4  # CFG doubles the batch
    per_block = 34 * tokens * 4 * width  # bf16 activations
    assert plan["bytes"]["activations_without_checkpointing"] == blocks * per_block
    assert plan["bytes"]["activations_with_checkpointing"] == (
        blocks * 2 * tokens * 4 * width + per_block
    )

    lora = preset("sd3-lora-1gpu", lora={"rank": 2, "alpha": 2, "target_modules": ["to_q"]})
    plan = memory_plan(lora, 4, arch)
    adapters = plan["parameters_counted"]["trainable"]
    # rank 2 on every block's to_q (width -> width): A [2, 16] and B [16, 2]
    assert adapters == blocks * 2 * (2 * width)
    assert plan["sharded_over"] == 1  # LoRA runs replicated
    assert plan["bytes"]["parameters"] == 2 * count + 4 * adapters  # bf16 base, fp32 adapters
    assert plan["bytes"]["optimizer_state"] == 8 * adapters


@pytest.mark.parametrize("model", sorted(FULL_SIZE))
def test_released_architectures_have_their_published_sizes(model):
    published = {"flux": 12e9, "flux2": 32e9, "qwen-image": 20e9, "sd3": 2.5e9, "z-image": 6e9}
    count = sum(p.numel() for p in FULL_SIZE[model].build_meta().parameters())
    assert abs(count / published[model] - 1) < 0.12  # SD3.5-medium's 2.5 B counts its VAE


def test_every_backend_has_a_one_gpu_lora_and_a_many_gpu_full_preset():
    for model in ("flux", "flux2", "qwen-image", "sd3", "z-image"):
        names = [n for n in PRESETS if preset(n).model == model]
        assert any(preset(n).lora is not None for n in names), model
        assert any(preset(n).lora is None and PRESET_GPUS.get(n, 1) > 1 for n in names), model


def test_qwen_image_preset_is_the_official_run():
    config = preset("qwen-image-official-32gpu")
    assert config.adamw()["lr"] == 3e-6 and config.shift == 1.0
    assert not config.direct_align.inversion and config.reward == "pickscore"
    assert (config.resolution, config.rollout_steps, config.gradient_accumulation) == (720, 26, 2)


def test_explain_plans_a_preset_over_its_own_gpus(capsys):
    assert main(["explain", "qwen-image-official-32gpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    memory = summary["memory_per_gpu"]
    assert summary["processes"] == 32 and memory["sharded_over"] == 32
    gib = memory["gib"]
    assert gib["activations_with_checkpointing"] < gib["activations_without_checkpointing"]
    assert "memory per GPU (sharded over 32)" in explain_markdown(summary)
