"""The official Qwen-Image SRPO run's settings: the reward multiplier, the clamped slice, the
rollout's own CFG, and the preset that uses them (fastvideo/SRPO_Qwen.py)."""

import random

import pytest
import torch

from srpo import direct_align as da
from srpo import flow
from srpo.config import ConfigError, make_config, preset
from srpo.explain import explain, explain_markdown
from srpo.models import loader
from srpo.train import render_samples
from srpo.update import Draw, UpdateInputs

QWEN = "qwen-image-official-32gpu"


def official_level(index: int) -> float:
    """s* of the official run's ``timestep_select = index`` (100 levels from 0.9 to 0.2)."""
    return 0.9 - 0.7 * (100 - index) / 99


class LearnableOracle:
    """The true velocity plus a learnable offset; decodes latents to pixels in [0, 1]."""

    cfg_scale = 1.0

    def __init__(self, x0, eps):
        self.x0, self.eps = x0, eps
        self.offset = torch.zeros_like(x0, requires_grad=True)

    def velocity(self, latents, sigma, cond, guidance=None):
        return flow.true_velocity(self.x0, self.eps) + self.offset

    def decode(self, latents):
        return torch.sigmoid(latents).reshape(latents.shape[0], 3, 2, 2)


class PixelReward:
    """A reward that depends on the pixels (so the gradient reaches the offset)."""

    def score(self, pixels, texts):
        return pixels.mean(dim=(1, 2, 3)) * 10


def loss_and_grad(settings, s_star):
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    generator = LearnableOracle(x0, eps)
    objective = da.srpo_objective(
        generator, PixelReward(), x0, eps, None, ["p"] * 3, s_star, settings
    )
    (grad,) = torch.autograd.grad(objective.loss, generator.offset)
    return objective, grad


def test_the_multiplier_scales_each_samples_loss_and_gradient_by_its_factor():
    window = {"sigma_range": (0.2, 0.9), "d": 0.1, "inversion": False}
    plain = da.DirectAlignConfig(**window)
    scaled = da.DirectAlignConfig(**window, reward_multiplier={"scale": 0.05, "shift": 3.0})
    s_star = torch.tensor([0.3, 0.55, 0.8])
    base, base_grad = loss_and_grad(plain, s_star)
    result, grad = loss_and_grad(scaled, s_star)
    factor = scaled.multiplier_at(s_star)
    assert len(set(factor.tolist())) == 3  # a different factor per sample
    # The loss is -mean(m_i r_i); each sample's gradient is its own factor times the plain one.
    assert torch.allclose(result.loss, -(factor * result.rewards["denoise"]).mean())
    assert torch.allclose(grad, base_grad * factor[:, None, None], atol=1e-7)
    assert torch.allclose(base_grad.abs().sum(dim=(1, 2)) > 0, torch.tensor(True))
    # The logged reward stays unscaled.
    assert torch.allclose(result.rewards["denoise"], base.rewards["denoise"])


def test_a_constant_multiplier_scales_the_loss():
    settings = da.DirectAlignConfig(
        sigma_range=(0.5, 0.9), d=0.05, inversion=False, reward_multiplier={"scale": 2.5}
    )
    plain = da.DirectAlignConfig(sigma_range=(0.5, 0.9), d=0.05, inversion=False)
    s_star = torch.tensor([0.6, 0.7, 0.8])
    assert torch.allclose(
        loss_and_grad(settings, s_star)[0].loss, 2.5 * loss_and_grad(plain, s_star)[0].loss
    )


def test_the_presets_multiplier_is_the_official_discount_over_20():
    settings = preset(QWEN).direct_align
    for index in range(2, 99):  # random.randint(2, timestep_length - 2)
        t = index / 100
        official = (3 * t / (1 + 2 * t)) / 20  # discount[index] * score / 20
        ours = float(settings.multiplier_at(torch.tensor([official_level(index)])))
        assert abs(ours - official) < 0.002, index


def test_the_presets_slice_is_the_official_clamped_one():
    settings = preset(QWEN).direct_align
    step = 0.7 / 99
    for index in range(2, 99):
        k = min(min(100 - index, 41), index)  # k = int((1 - 0.6) * 100) + 1, then clamped
        s_star = torch.tensor([official_level(index)], dtype=torch.float64)
        d = float(settings.slice_at(s_star))
        assert abs(d - k * step) <= step + 1e-9, index
        assert float(s_star) + d <= 0.9 + 1e-9 and float(s_star) - d >= 0.2 - 1e-9


def test_clamped_draws_never_give_a_zero_slice():
    s = da.sample_target_sigma(
        200, (0.2, 0.9), 0.29, "index", 26, 1.0, torch.Generator().manual_seed(0), True
    )
    settings = preset(QWEN).direct_align
    assert (settings.slice_at(s) > 0).all()


def test_the_qwen_preset_resolves_to_the_official_run():
    config = preset(QWEN)
    assert config.adamw() == {
        "lr": 3e-6,
        "weight_decay": 1e-4,
        "betas": (0.9, 0.999),
        "grad_clip": 50.0,
    }
    assert config.shift == 1.0 and config.rollout_steps == 26
    assert not config.direct_align.inversion
    assert config.cfg_scale == 1.0 and config.effective_rollout_cfg_scale == 4.0
    multiplier = config.direct_align.reward_multiplier
    assert (multiplier.scale, multiplier.shift) == (0.05, 3.0)
    assert config.direct_align.slice_clamp and tuple(config.direct_align.sigma_range) == (0.2, 0.9)
    lora = preset("qwen-image-lora-1gpu")
    assert lora.direct_align == config.direct_align and lora.rollout_cfg_scale == 4.0
    summary = explain(config, processes=32, count=False)
    assert summary["cfg"] == {"rollout": 4.0, "train": 1.0}
    assert summary["reward_multiplier"] == {"low": 0.0, "mid": 0.0375, "high": 0.05}
    text = explain_markdown(summary)
    assert "CFG: rollout 4.0, train 1.0" in text and "reward multiplier 0.0" in text


BASE = {
    "model": "tiny",
    "prompts": ["a red circle"],
    "positive_words": ["photo"],
    "negative_words": ["painting"],
}


@pytest.mark.parametrize(
    ("direct_align", "message"),
    [
        ({"reward_multiplier": {"scale": 0}}, "direct_align.reward_multiplier.scale"),
        ({"reward_multiplier": {"scale": 1, "shift": -1}}, "direct_align.reward_multiplier.shift"),
        ({"reward_multiplier": {"factor": 1}}, "direct_align.reward_multiplier.factor"),
        ({"sigma_range": [0.2, 0.9], "d": 0.29}, "too large"),
        ({"sigma_range": [0.5, 0.5], "d": 0.1, "slice_clamp": True}, "low < high"),
    ],
)
def test_bad_multiplier_and_slice_settings_are_named(direct_align, message):
    with pytest.raises(ConfigError, match=message):
        make_config({**BASE, "direct_align": direct_align})


def test_rollout_cfg_scale_is_validated_and_defaults_to_cfg_scale():
    assert make_config({**BASE, "cfg_scale": 2.0}).effective_rollout_cfg_scale == 2.0
    with pytest.raises(ConfigError, match="rollout_cfg_scale"):
        make_config({**BASE, "rollout_cfg_scale": 0.5})
    clamped = make_config(
        {**BASE, "direct_align": {"sigma_range": [0.2, 0.9], "d": 0.29, "slice_clamp": True}}
    )
    assert clamped.direct_align.slice_clamp


class RecordingGenerator:
    """Records the CFG scale each call sees."""

    def __init__(self, cfg_scale):
        self.cfg_scale, self.calls = cfg_scale, []

    def noise(self, batch, generator=None):
        return torch.randn(batch, 4, 3, generator=generator)

    def encode_prompts(self, prompts):
        self.calls.append(("encode", self.cfg_scale))
        return None

    def sample(self, cond, noise, num_steps, shift, guidance=None):
        self.calls.append(("sample", self.cfg_scale))
        return noise


def test_the_rollout_runs_at_its_own_cfg_and_the_generator_keeps_the_training_one():
    config = preset(QWEN, prompts=["a cat"], prompts_file=None)
    generator = RecordingGenerator(config.cfg_scale)
    update = da.DirectAlignUpdate(UpdateInputs(config, generator, reward=None))
    draw = Draw(["a cat"], random.Random(0), torch.Generator(), torch.Generator())
    update.clean_latents(draw)
    assert generator.calls == [("encode", 4.0), ("sample", 4.0)]
    assert generator.cfg_scale == 1.0


def test_cfg_scale_1_is_cfg_off_on_diffusers_backends(monkeypatch):
    """Regression: cfg_scale 1 loaded Qwen-Image and SD3 at their pipelines' CFG (4, 4.5), so
    the Qwen preset's gradient forward ran with CFG."""
    seen = {}
    monkeypatch.setattr(loader, "load_generator", lambda *a, **kw: seen.update(kw))
    loader.generator_for(preset(QWEN, prompts=["a cat"], prompts_file=None))
    assert seen["cfg_scale"] == 1.0
    loader.generator_for(preset("tiny-demo"))
    assert seen["cfg_scale"] is None  # the tiny world keeps its manifest's scale


class RenderingGenerator(RecordingGenerator):
    def decode(self, latents):
        return torch.zeros(latents.shape[0], 3, 2, 2)


def test_sample_grids_are_drawn_at_the_rollouts_cfg():
    """Regression: the grid of every sample step was drawn at the gradient forward's CFG (1 in
    the official Qwen-Image run, which rolls out and visualises at 4)."""
    config = preset(QWEN, prompts=["a cat"], prompts_file=None, eval_seeds=[0, 1])
    generator = RenderingGenerator(config.cfg_scale)
    images, texts, seeds = render_samples(generator, config, ["a cat"])
    assert generator.calls == [("encode", 4.0), ("sample", 4.0)]
    assert generator.cfg_scale == 1.0 and (texts, seeds) == (["a cat"] * 2, [0, 1])
    assert images.shape == (2, 3, 2, 2)


def test_a_finetuned_run_samples_at_its_rollouts_cfg(monkeypatch):
    """Regression: a Qwen-Image checkpoint loaded at the training CFG 1 while its base model
    loads at its pipeline's 4, so the arena compared them at different CFG."""
    config = preset(QWEN, prompts=["a cat"], prompts_file=None)
    monkeypatch.setattr(loader, "load_run_checkpoint", lambda path: (None, config))
    monkeypatch.setattr(loader, "generator_for", lambda c: RecordingGenerator(c.cfg_scale))
    monkeypatch.setattr(loader, "apply_checkpoint", lambda *args: None)
    generator, _ = loader.load_finetuned("checkpoint")
    assert generator.cfg_scale == 4.0
