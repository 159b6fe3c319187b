"""The weighted multi-reward: running-statistics normalisation, specs, gradients."""

import pytest
import torch

from srpo.rewards import load_reward, srp_form
from srpo.rewards.base import ScoringReward
from srpo.rewards.multi import Component, WeightedReward, load_weighted_reward, parse_spec
from srpo.rewards.remote import RewardOnly


class Affine(ScoringReward):
    """``a * mean(pixels) + b``: a differentiable reward of a known scale."""

    def __init__(self, a: float, b: float, name: str) -> None:
        super().__init__()
        self.a, self.b, self.name = a, b, name

    def score(self, pixels, texts):
        return self.a * pixels.flatten(1).mean(-1) + self.b


class Fixed(RewardOnly):
    name = "fixed"

    def _scores(self, pixels, texts):
        return [1.0] * len(texts)


def test_each_reward_is_normalised_by_its_running_statistics():
    small, large = Affine(1.0, 0.0, "small"), Affine(100.0, 5.0, "large")
    reward = WeightedReward([small, large], [0.25, 0.75])
    seen = {"small": [], "large": []}
    for seed in range(4):
        pixels = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
        total = reward.score(pixels, ["p"] * 5)
        for r in (small, large):
            seen[r.name].append(r.score(pixels, ["p"] * 5))
        expected = torch.zeros(5)
        for i, (r, w) in enumerate(((small, 0.25), (large, 0.75))):
            history = torch.cat(seen[r.name]).double()
            assert reward.count[i] == history.numel()
            assert reward.mean[i].item() == pytest.approx(history.mean().item(), rel=1e-6)
            assert reward.std[i].item() == pytest.approx(history.std().item(), rel=1e-6)
            z = (seen[r.name][-1] - history.mean().float()) / (history.std().float() + 1e-6)
            expected += w * z
        assert torch.allclose(total, expected, atol=1e-4)
    # both are affine in the same statistic: normalised, they are the same reward
    assert reward.last["small"].shape == (5,)
    state = reward.state_dict()
    assert {"count", "mean", "m2"} <= set(state)


def test_raw_weighted_sum_gradient_and_frozen_statistics():
    a, b = Affine(2.0, 0.0, "a"), Affine(-1.0, 3.0, "b")
    raw = WeightedReward([a, b], [1.0, 0.5], normalize=False)
    pixels = torch.rand(2, 3, 4, 4, requires_grad=True)
    total = raw.score(pixels, ["x", "y"])
    assert torch.allclose(total, a.score(pixels, "xy") + 0.5 * b.score(pixels, "xy"))
    total.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert raw.differentiable and srp_form(raw) == "difference"
    normalised = WeightedReward([a, b], [1.0, 1.0])
    normalised.score(torch.rand(4, 3, 4, 4), ["x"] * 4)
    normalised.track = False
    before = normalised.mean.clone()
    normalised.score(torch.rand(4, 3, 4, 4), ["x"] * 4)
    assert torch.equal(before, normalised.mean)


def test_a_reward_only_component_makes_the_sum_reward_only():
    mixed = WeightedReward([Affine(1.0, 0.0, "a"), Fixed()], [1.0, 1.0])
    assert not mixed.differentiable


def test_spec_strings_and_mappings():
    assert parse_spec("0.7*hpsv2.1+0.3*pickscore@/w/pick") == [
        Component("hpsv2.1", 0.7),
        Component("pickscore", 0.3, "/w/pick"),
    ]
    assert parse_spec("clip + 2*tiny") == [Component("clip", 1.0), Component("tiny", 2.0)]
    for bad, message in (
        ("x*tiny", "not a number"),
        ("0.5*+tiny", "no reward name"),
        ("tiny@", "empty path"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)
    loaded = []

    def loader(name, path):
        loaded.append((name, path))
        return Affine(1.0, 0.0, name)

    reward = load_weighted_reward({"a": 2.0, "b": {"weight": 0.5, "path": "/p"}}, loader=loader)
    assert loaded == [("a", None), ("b", "/p")] and reward.weights == [2.0, 0.5]
    assert reward.name == "2*a+0.5*b"
    with pytest.raises(ValueError, match="unknown settings"):
        load_weighted_reward({"a": {"wieght": 1}}, loader=loader)
    with pytest.raises(ValueError, match="do not nest"):
        load_weighted_reward([Component("a+b", 1.0)], loader=loader)
    with pytest.raises(ValueError, match="not all zero"):
        WeightedReward([Affine(1, 0, "a")], [0.0])


def test_load_reward_takes_a_spec_of_registered_rewards(tmp_path):
    from tests.factories import save_small_clip_folder

    folder = save_small_clip_folder(tmp_path / "clip")
    reward = load_reward(f"0.5*clip@{folder}+1.5*clip@{folder}")
    assert isinstance(reward, WeightedReward) and reward.weights == [0.5, 1.5]
    pixels = torch.rand(3, 3, 32, 32)
    total = reward.score(pixels, ["a red circle", "a cat", "a dog"])
    # two copies of one reward, each standardised by the same statistics: 2 * z
    single = reward.rewards[0].score(pixels, ["a red circle", "a cat", "a dog"])
    z = (single - single.mean()) / (single.std() + 1e-6)
    assert torch.allclose(total, 2 * z, atol=1e-4)
    with pytest.raises(ValueError, match="name@path"):
        load_reward("clip+tiny", folder)


def test_casting_the_reward_keeps_its_statistics_in_float64():
    reward = WeightedReward([Affine(1.0, 0.0, "a")], [1.0])
    reward.score(torch.rand(3, 3, 4, 4), ["x"] * 3)
    mean = reward.mean.clone()
    reward.to(torch.bfloat16)
    assert reward.mean.dtype == torch.float64 and torch.equal(reward.mean, mean)
    assert reward._anchor.dtype == torch.bfloat16
