"""Rollout and training guidance are separate (official: rollout 1 for HPS, training 3.5)."""

import random

import torch

from srpo.config import make_config
from srpo.direct_align import DirectAlignUpdate
from srpo.rewards.clip import CLIPReward
from srpo.update import Draw, UpdateInputs
from tests.factories import save_small_clip_folder, small_flux


class GuidanceRecorder:
    """Records, per velocity call, whether it carried gradient and the guidance it used."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def velocity(self, latents, sigma, cond, guidance=None):
        used = self.inner.guidance if guidance is None else guidance
        self.calls.append((torch.is_grad_enabled(), used))
        return self.inner.velocity(latents, sigma, cond, guidance)

    def sample(self, cond, noise, num_steps, shift, guidance=None):
        from srpo.flow import euler_sample, sigma_schedule

        with torch.no_grad():
            return euler_sample(
                lambda x, s: self.velocity(x, s, cond, guidance),
                noise,
                sigma_schedule(num_steps, shift),
            )

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_rollout_and_the_gradient_forward_use_their_own_guidance(tmp_path):
    generator = small_flux()
    generator.guidance = 3.5  # what the loader sets from train_guidance
    recorder = GuidanceRecorder(generator)
    reward = CLIPReward.from_pretrained(save_small_clip_folder(tmp_path / "clip"))
    config = make_config(
        {
            "prompts": ["a red circle"],
            "positive_words": ["photo"],
            "negative_words": ["painting"],
            "rollout_steps": 3,
            "rollout_guidance": 1.0,
            "train_guidance": 3.5,
            "direct_align": {"sigma_range": [0.5, 0.9], "d": 0.05},
        }
    )
    update = DirectAlignUpdate(UpdateInputs(config, recorder, reward))
    gens = (torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    update(0, Draw(["a red circle"], random.Random(0), *gens), lambda loss: loss.backward())
    assert recorder.calls == [(False, 1.0)] * 3 + [(True, 3.5)] * 2


def test_the_guidance_override_reaches_the_transformer():
    generator = small_flux()
    cond = generator.encode_prompts(["a red circle"])
    x, sigma = generator.noise(1, torch.Generator().manual_seed(0)), torch.tensor([0.5])
    with torch.no_grad():
        low = generator.velocity(x, sigma, cond, guidance=1.0)
        high = generator.velocity(x, sigma, cond, guidance=3.5)
        default = generator.velocity(x, sigma, cond)
    assert not torch.allclose(low, high) and torch.equal(default, high)
