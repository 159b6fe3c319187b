"""The baselines (ReFL, DRaFT-K/LV, DanceGRPO-style GRPO) on small random FLUX configs."""

import copy
import random

import pytest
import torch
from pydantic import ValidationError

from srpo import flow
from srpo.baselines import (
    DRaFTConfig,
    ReFLConfig,
    clipped_loss,
    draft_chain,
    group_advantages,
    refl_predict,
    refl_stop_range,
    renoised_last_step,
    sde_rollout,
    sde_step,
    step_log_prob,
)
from srpo.baselines.grpo import policy_log_prob
from srpo.config import ConfigError, make_config
from srpo.methods import make_update, method
from srpo.rewards.clip import CLIPReward
from srpo.update import Draw, UpdateInputs
from tests.factories import save_small_clip_folder, small_flux

PROMPTS = ["a red circle", "a photo of a blue square"]
# Small step counts and groups keep the tests fast; the algorithms are the defaults'.
FAST = {
    "refl": {"steps": 8},
    "draft": {"steps": 4},
    "grpo": {"steps": 5, "group_size": 3, "samples_per_step": 2},
}


def run_update(name, generator, reward, backward, seed=0, optimizer_step=None, **sections):
    """One update of method ``name`` through the registry, on PROMPTS, at 20 steps / shift 3."""
    config = make_config(
        {
            "prompts": PROMPTS,
            "method": name,
            "rollout_steps": 20,
            "shift": 3.0,
            "batch_size": len(PROMPTS),
            **FAST,
            **sections,
        }
    )
    update = make_update(UpdateInputs(config, generator, reward, None, optimizer_step))
    shared, local = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    return update(0, Draw(list(PROMPTS), random.Random(seed), shared, local), backward)


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    return CLIPReward.from_pretrained(save_small_clip_folder(tmp_path_factory.mktemp("clip")))


@pytest.fixture
def generator():
    return small_flux()


class Recording:
    """A generator proxy that records, per velocity call, (grad enabled, input requires grad)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[bool, bool]] = []
        self.inputs: list[torch.Tensor] = []

    def velocity(self, latents, sigma, cond, guidance=None):
        self.calls.append((torch.is_grad_enabled(), latents.requires_grad))
        self.inputs.append(latents.detach().clone())
        return self.inner.velocity(latents, sigma, cond, guidance)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def param_grads(generator):
    return [p.grad.clone() for p in generator.transformer.parameters() if p.grad is not None]


def test_authors_defaults_validate_and_bad_combinations_name_the_field():
    defaults = ReFLConfig()
    assert refl_stop_range(defaults.steps, defaults.stop_fraction) == (30, 39)
    assert refl_stop_range(20, (0.75, 1.0)) == (15, 19)
    with pytest.raises(ValueError, match="no step index"):
        refl_stop_range(4, (0.8, 0.9))
    with pytest.raises(ValidationError, match="DRaFT-LV"):
        DRaFTConfig(k=2)
    DRaFTConfig(k=2, lv_samples=0)
    with pytest.raises(ConfigError, match=r"refl: .*no step index"):
        make_config({"prompts": ["a"], "method": "refl", "refl": {"steps": 3}})


def test_refl_predicts_x0_in_one_step_with_grad_only_at_the_stop_step(generator):
    recorder = Recording(generator)
    cond = generator.encode_prompts(PROMPTS)
    noise = generator.noise(2, torch.Generator().manual_seed(0))
    sigmas = flow.sigma_schedule(8, 3.0)
    stop = 6
    prediction = refl_predict(recorder, cond, noise, sigmas, stop)
    assert recorder.calls == [(False, False)] * stop + [(True, False)]
    with torch.no_grad():
        expected_state = flow.euler_sample(
            lambda x, s: generator.velocity(x, s, cond), noise, sigmas[: stop + 1]
        )
    assert torch.allclose(prediction.state, expected_state, atol=1e-6)
    assert torch.allclose(prediction.sigma, sigmas[stop].expand(2))
    s = float(sigmas[stop])
    assert torch.allclose(prediction.x0_hat, prediction.state - s * prediction.velocity)
    (d_velocity,) = torch.autograd.grad(
        prediction.x0_hat.sum(), prediction.velocity, retain_graph=True
    )
    assert torch.allclose(d_velocity, torch.full_like(d_velocity, -s))
    prediction.x0_hat.square().sum().backward()
    assert param_grads(generator) and all(p.grad is None for p in generator.vae.parameters())


def test_draft_k1_backpropagates_only_the_last_step_and_k2_differs(generator):
    cond = generator.encode_prompts(PROMPTS)
    noise = generator.noise(2, torch.Generator().manual_seed(1))
    sigmas = flow.sigma_schedule(4, 3.0)
    weight = torch.randn(noise.shape, generator=torch.Generator().manual_seed(2))

    recorder = Recording(generator)
    (draft_chain(recorder, cond, noise, sigmas, 1) * weight).sum().backward()
    assert recorder.calls == [(False, False)] * 3 + [(True, False)]
    k1 = param_grads(generator)
    generator.transformer.zero_grad(set_to_none=True)

    with torch.no_grad():
        before_last = flow.euler_sample(
            lambda x, s: generator.velocity(x, s, cond), noise, sigmas[:4]
        )
    last = flow.euler_step(
        before_last, generator.velocity(before_last, sigmas[3].expand(2), cond), sigmas[3], 0.0
    )
    (last * weight).sum().backward()
    manual = param_grads(generator)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(k1, manual, strict=True))
    generator.transformer.zero_grad(set_to_none=True)

    recorder = Recording(generator)
    (draft_chain(recorder, cond, noise, sigmas, 2) * weight).sum().backward()
    assert recorder.calls == [(False, False)] * 2 + [(True, False), (True, True)]
    k2 = param_grads(generator)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(k1, k2, strict=True))


def test_draft_lv_copies_restart_from_the_detached_sample(generator):
    cond = generator.encode_prompts(PROMPTS)
    noise = generator.noise(2, torch.Generator().manual_seed(3))
    sigmas = flow.sigma_schedule(4, 3.0)
    x0 = draft_chain(generator, cond, noise, sigmas, 1)
    eps = generator.noise(2, torch.Generator().manual_seed(4))
    s_last = float(sigmas[-2])
    copy_ = renoised_last_step(generator, cond, x0, eps, s_last)
    (to_x0,) = torch.autograd.grad(copy_.sum(), x0, allow_unused=True, retain_graph=True)
    assert to_x0 is None
    state = flow.add_noise(x0.detach(), eps, s_last)
    with torch.no_grad():
        expected = state - s_last * generator.velocity(state, torch.full((2,), s_last), cond)
    assert torch.allclose(copy_, expected, atol=1e-6)
    assert copy_.requires_grad


@pytest.mark.parametrize("lv", [0, 2])
def test_draft_k_backpropagates_the_chain_and_draft_lv_only_its_copies(generator, reward, lv):
    """DRaFT-LV (the paper's Algorithm 1): the chain runs without gradient and only the ``n``
    re-noised copies of its sample are backpropagated; DRaFT-1 backpropagates the chain."""
    recorder, losses = Recording(generator), []
    stats = run_update(
        "draft",
        recorder,
        reward,
        lambda loss: (losses.append(loss), loss.backward()),
        draft={"steps": 4, "lv_samples": lv},
    )
    assert len(losses) == (lv or 1)
    with_grad = [grad for grad, _ in recorder.calls]
    assert with_grad == ([False] * 4 + [True] * lv if lv else [False] * 3 + [True])
    assert stats.loss == pytest.approx(sum(loss.item() for loss in losses))
    assert stats.rewards.shape == (2,) and not stats.rewards.requires_grad


def test_sde_step_is_the_score_corrected_euler_step_and_log_prob_is_gaussian():
    gen = torch.Generator().manual_seed(5)
    x0, eps, noise = (torch.randn(3, 8, 4, generator=gen) for _ in range(3))
    sigma, sigma_next, eta = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.8, 0.3, 0.0]), 0.3
    x = flow.add_noise(x0, eps, sigma)
    step = sde_step(x, eps - x0, sigma, sigma_next, eta, noise)
    s, ds = sigma.view(-1, 1, 1), (sigma_next - sigma).view(-1, 1, 1)
    # With the true velocity the score estimate is -eps / s.
    expected_mean = x + ds * (eps - x0) + 0.5 * eta**2 * ds * eps / s
    assert torch.allclose(step.x0_hat, x0, atol=1e-5)
    assert torch.allclose(step.mean, expected_mean, atol=1e-5)
    assert torch.allclose(step.std, eta * (s - sigma_next.view(-1, 1, 1)).sqrt())
    assert torch.allclose(step.sample, step.mean + step.std * noise)
    reference = torch.distributions.Normal(step.mean, step.std.expand_as(step.mean))
    expected_log_prob = reference.log_prob(step.sample).mean(dim=(1, 2))
    assert torch.allclose(step_log_prob(step.sample, step.mean, step.std), expected_log_prob)
    deterministic = sde_step(x, eps - x0, sigma, sigma_next, 1e-12)
    assert torch.allclose(deterministic.mean, flow.euler_step(x, eps - x0, sigma, sigma_next))


def test_advantages_are_normalised_per_group_and_clipped():
    gen = torch.Generator().manual_seed(6)
    rewards = torch.cat([torch.randn(12, generator=gen), 100 + 5 * torch.randn(12, generator=gen)])
    advantages = group_advantages(rewards, 12, clip=5.0).view(2, 12)
    assert torch.allclose(advantages.mean(1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(advantages.std(1), torch.ones(2), atol=1e-5)
    outlier = torch.zeros(12)
    outlier[0] = 1.0  # normalised to (11/12) / sqrt(1/12) = 3.175...
    assert group_advantages(outlier, 12, clip=5.0)[0] == pytest.approx(3.1754, abs=1e-3)
    assert group_advantages(outlier, 12, clip=2.0)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="groups of 5"):
        group_advantages(torch.zeros(12), 5, clip=5.0)


def test_on_policy_ratio_is_one_and_the_clipped_gradient_is_the_policy_gradient():
    gen = torch.Generator().manual_seed(7)
    old = torch.randn(6, generator=gen)
    advantages = torch.randn(6, generator=gen)
    new = old.clone().requires_grad_(True)
    loss = clipped_loss(new, old, advantages, 1e-4)
    assert torch.equal(loss, -advantages)
    (grad,) = torch.autograd.grad(loss.sum(), new)
    plain = new.detach().clone().requires_grad_(True)
    (policy_gradient,) = torch.autograd.grad((-advantages * torch.exp(plain - old)).sum(), plain)
    assert torch.allclose(grad, policy_gradient) and torch.allclose(grad, -advantages)
    # Off-policy beyond the clip: no gradient where the clip binds, the full one where not.
    moved = (old + 0.01).requires_grad_(True)
    signs = torch.tensor([1.0, -1.0])
    (grad,) = torch.autograd.grad(clipped_loss(moved[:2], old[:2], signs, 1e-4).sum(), moved)
    assert grad[0] == 0 and grad[1] == pytest.approx(float(torch.exp(torch.tensor(0.01))))


def test_rollout_log_probs_match_the_training_pass_on_policy(generator):
    cond = generator.encode_prompts(PROMPTS).repeat_interleave(2)
    noise = generator.noise(4, torch.Generator().manual_seed(8))
    sigmas = flow.sigma_schedule(5, 3.0)
    rollout = sde_rollout(generator, cond, noise, sigmas, 0.3, torch.Generator().manual_seed(9))
    assert rollout.latents.shape == (4, 6, *noise.shape[1:])
    assert rollout.log_probs.shape == (4, 5)
    index, step = torch.tensor([3, 0, 2]), torch.tensor([1, 3, 0])
    new = policy_log_prob(generator, cond, rollout, sigmas, index, step, 0.3)
    assert new.requires_grad
    assert torch.allclose(torch.exp(new - rollout.log_probs[index, step]), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("intermediate", [False, True])
def test_grpo_update_groups_noise_and_backpropagates_per_timestep(generator, reward, intermediate):
    recorder, losses, steps = Recording(generator), [], []
    # FAST: 5 steps -> 4 candidates -> int(4 * 0.6) = 2 trained
    stats = run_update(
        "grpo",
        recorder,
        reward,
        lambda loss: (losses.append(loss), loss.backward()),
        optimizer_step=(lambda: steps.append(len(losses))) if intermediate else None,
    )
    # Rolled out in the policy pass's chunks of 2: 3 chunks x 5 steps without grad.
    assert recorder.calls[:15] == [(False, False)] * 15
    first = torch.cat([recorder.inputs[i] for i in (0, 5, 10)])
    assert first.shape[0] == 6 and torch.equal(first[0], first[2])
    assert not torch.equal(first[0], first[3])
    assert len(losses) == 3 * 2  # chunks of 2 samples x 2 timesteps
    assert steps == ([2, 4] if intermediate else [])
    assert stats.rewards.shape == (6,)
    assert recorder.calls[15:] == [(True, False)] * 6
    if not intermediate:  # on-policy throughout: ratio 1, each loss is -sum(A) / (6 x 2)
        advantages = group_advantages(stats.rewards, 3, clip=5.0)
        expected = [-advantages[c].sum() / 12 for c in torch.arange(6).split(2) for _ in range(2)]
        assert torch.allclose(torch.stack(losses).detach(), torch.stack(expected), atol=1e-6)
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in generator.transformer.parameters()
    )


@pytest.mark.parametrize("name", ["refl", "draft", "grpo"])
def test_one_update_changes_the_transformer_and_is_reproducible(reward, name):
    base = small_flux()
    sections = {
        "refl": {"steps": 4},
        "draft": {"steps": 3},
        "grpo": {"steps": 4, "group_size": 2, "samples_per_step": 2},
    }

    def run(seed):
        generator = copy.deepcopy(base)
        optimizer = torch.optim.AdamW(generator.transformer.parameters(), lr=1e-3)
        stats = run_update(
            name, generator, reward, lambda loss: loss.backward(), seed=seed, **sections
        )
        optimizer.step()
        return [p.detach().clone() for p in generator.transformer.parameters()], stats

    first, stats = run(0)
    again, stats_again = run(0)
    other, _ = run(1)
    before = list(base.transformer.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(first, before, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.equal(stats.rewards, stats_again.rewards) and stats.loss == stats_again.loss
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_baselines_score_the_raw_prompt_unless_a_prefix_is_set(generator, reward):
    """Table 1's baselines optimise HPS(p): the control words are not prefixed."""
    scored = []
    original = reward.score

    def spy(pixels, texts):
        scored.append(list(texts))
        return original(pixels, texts)

    reward.score = spy
    try:
        words = {"positive_words": ["photo"], "negative_words": ["painting"]}
        run_update("refl", generator, reward, lambda loss: loss.backward(), **words)
        run_update("refl", generator, reward, lambda loss: None, reward_prefix="photo", **words)
    finally:
        del reward.score
    assert scored == [PROMPTS, [f"photo. {p}" for p in PROMPTS]]


def test_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        method("ppo")
