"""The precision policy: fp32 masters under bf16, fp32 flow math, bf16 frozen parts."""

import pytest
import torch

from srpo.benchmarks.precision import bench_precision, recovery_error
from srpo.config import make_config
from srpo.direct_align import branch
from srpo.flow import true_velocity
from srpo.models import load_generator
from srpo.precision import Precision
from srpo.train import build_models, prepare_trainable
from tests.factories import save_small_clip_folder, save_small_flux_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return save_small_flux_folder(root / "flux"), save_small_clip_folder(root / "clip")


def flux_config(folders, tmp_path, precision, **fields):
    flux, clip = folders
    return make_config(
        {
            "model": "flux",
            "model_path": str(flux),
            "reward": "clip",
            "reward_path": str(clip),
            "prompts": ["a red circle"],
            "positive_words": ["photo"],
            "negative_words": ["painting"],
            "resolution": 32,
            "precision": precision,
            **fields,
        }
    )


def mean_change_after_adamw(generator, config, steps=4, lr=5e-6):
    params = prepare_trainable(generator, config)
    before = [p.detach().float().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    cond = generator.encode_prompts(["a red circle", "a blue square"])
    for step in range(steps):
        rng = torch.Generator().manual_seed(step)
        eps, x0 = generator.noise(2, rng), generator.noise(2, rng) * 0.5
        result = branch(generator, x0, eps, torch.full((2,), 0.8), 0.05, cond, "denoise")
        (generator.decode(result.x0_hat) - 0.5).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (
        torch.cat(
            [(p.detach().float() - b).abs().flatten() for p, b in zip(params, before, strict=True)]
        )
        .mean()
        .item()
    )


def test_bf16_policy_moves_weights_like_fp32(folders, tmp_path):
    moved = {}
    for precision in ("fp32", "bf16"):
        config = flux_config(folders, tmp_path, precision)
        generator, _ = build_models(config)
        moved[precision] = mean_change_after_adamw(generator, config)
    assert moved["fp32"] > 0
    assert moved["bf16"] / moved["fp32"] == pytest.approx(1.0, abs=0.1)


def test_bf16_policy_dtypes_of_each_part(folders, tmp_path):
    config = flux_config(folders, tmp_path, "bf16")
    generator, reward = build_models(config)
    params = prepare_trainable(generator, config)
    assert {p.dtype for p in params} == {torch.float32}
    assert {p.dtype for p in generator.vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in reward.parameters()} == {torch.bfloat16}
    encoders = generator.prompt_encoder.factory()
    assert {p.dtype for p in encoders.text_encoder_2.parameters()} == {torch.bfloat16}
    cond = generator.encode_prompts(["a red circle"])
    velocity = generator.velocity(generator.noise(1), torch.tensor([0.5]), cond)
    assert velocity.dtype == torch.float32 and generator.noise(1).dtype == torch.float32


def test_lora_under_bf16_keeps_the_base_bf16_and_trains_fp32_adapters(folders, tmp_path):
    config = flux_config(folders, tmp_path, "bf16", lora={"rank": 4, "alpha": 8})
    generator, _ = build_models(config)
    params = prepare_trainable(generator, config)
    frozen = [p for p in generator.transformer.parameters() if not p.requires_grad]
    assert params and {p.dtype for p in params} == {torch.float32}
    assert frozen and {p.dtype for p in frozen} == {torch.bfloat16}
    cond = generator.encode_prompts(["a red circle"])
    generator.velocity(generator.noise(1), torch.tensor([0.5]), cond).square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)


class Exact:
    """The real generator's velocity call (for its dtype), with the true velocity's values."""

    def __init__(self, generator, x0, eps):
        self.generator, self.x0, self.eps = generator, x0, eps

    def velocity(self, latents, sigma, cond, guidance=None):
        real = self.generator.velocity(latents, sigma, cond, guidance)
        return true_velocity(self.x0, self.eps).to(real.dtype)


@pytest.mark.parametrize("direction", ["denoise", "inversion"])
def test_exact_velocity_recovery_under_bf16_is_exact_to_fp32_precision(
    folders, direction, tmp_path
):
    flux, _ = folders
    generator = load_generator(
        "flux",
        str(flux),
        precision="bf16",
        resolution=32,
        max_sequence_length=24,
        cache_dir=tmp_path,
    )
    cond = generator.encode_prompts(["a red circle", "a blue square"])
    eps = generator.noise(2, torch.Generator().manual_seed(7))
    x0 = generator.sample(cond, eps, num_steps=3, shift=3.0)
    result = branch(Exact(generator, x0, eps), x0, eps, 0.96, 0.022, cond, direction)
    error = (result.x0_hat - x0).square().mean().sqrt().item()
    assert error < 1e-5


def test_precision_bench_reports_the_goals():
    row = bench_precision(steps=3)
    assert 0.9 <= row["update_ratio"] <= 1.1
    # The contrast arm shows what the policy prevents: AdamW on bf16 weights barely moves them.
    assert row["bf16_weights_ratio"] < 0.5
    assert row["recovery_error"] < 1e-5 and recovery_error("fp32") < 1e-5


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="'fp32' or 'bf16'"):
        Precision.of("fp16")


def test_real_models_are_watched_by_a_held_out_reward(folders, tmp_path):
    """A FLUX run trained on one reward logs another's score and the image statistics."""
    from srpo.train import Callback, train

    class Keep(Callback):
        def __init__(self):
            self.samples = []

        def on_samples(self, samples):
            self.samples.append(samples)

    _, clip = folders
    keep = Keep()
    fields = {"steps": 1, "rollout_steps": 2, "sample_every": 1, "eval_seeds": [0]}
    watched = flux_config(
        folders,
        tmp_path,
        "fp32",
        monitor_reward="pickscore",
        monitor_reward_path=str(clip),
        **fields,
    )
    train(watched, tmp_path / "run", callbacks=[keep])
    assert [s.step for s in keep.samples] == [0, 1]
    for samples in keep.samples:
        assert samples.metrics["gold"] == samples.metrics["held_out_reward"]
        assert {"saturation", "magenta_cast", "high_frequency", "brightness"} <= set(
            samples.metrics
        )
    unavailable = Keep()
    missing = flux_config(
        folders, tmp_path, "fp32", monitor_reward_path=str(tmp_path / "none.pt"), **fields
    )
    train(missing, tmp_path / "run2", callbacks=[unavailable])
    assert "held_out_reward" not in unavailable.samples[0].metrics
    assert "saturation" in unavailable.samples[0].metrics
