"""The identities of method.md, checked numerically and through autograd."""

import pytest
import torch

from srpo import direct_align as da
from srpo import flow
from srpo.config import make_config, preset
from srpo.recovery import recovery_mse


class OracleGenerator:
    """Predicts the true velocity, optionally plus a learnable offset, for identity checks."""

    def __init__(self, x0, eps, offset=None):
        self.x0, self.eps, self.offset = x0, eps, offset

    def velocity(self, latents, sigma, cond, guidance=None):
        v = flow.true_velocity(self.x0, self.eps)
        return v if self.offset is None else v + self.offset


@pytest.mark.parametrize("direction", ["denoise", "inversion"])
@pytest.mark.parametrize("s_star", [0.1, 0.5, 0.9])
def test_exact_recovery_when_prediction_is_the_true_velocity(direction, s_star):
    x0, eps = torch.randn(4, 8, 6, dtype=torch.float64), torch.randn(4, 8, 6, dtype=torch.float64)
    result = da.branch(OracleGenerator(x0, eps), x0, eps, s_star, 0.05, None, direction)
    assert torch.allclose(result.x0_hat, x0, atol=1e-12)


@pytest.mark.parametrize(("direction", "sign"), [("denoise", -1), ("inversion", 1)])
@pytest.mark.parametrize(("s_star", "d"), [(0.75, 0.022), (0.5, 0.1), (0.9, 0.05)])
def test_gradient_of_recovery_with_respect_to_prediction(direction, sign, s_star, d):
    x0, eps = torch.randn(2, 5), torch.randn(2, 5)
    offset = torch.zeros(2, 5, requires_grad=True)
    result = da.branch(OracleGenerator(x0, eps, offset), x0, eps, s_star, d, None, direction)
    (grad,) = torch.autograd.grad(result.x0_hat.sum(), offset)
    assert torch.allclose(grad, torch.full_like(grad, sign * d / (1 - s_star)), atol=1e-6)


@pytest.mark.parametrize(("sigma", "d"), [(0.95, 0.025), (0.95, 0.075), (0.6, 0.05)])
def test_error_ratio_against_naive_estimate_for_any_prediction_error(sigma, d):
    x0, eps = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    error = torch.randn(3, 7, dtype=torch.float64)
    v_hat = flow.true_velocity(x0, eps) + error
    x_s = flow.add_noise(x0, eps, sigma)
    naive_err = flow.naive_x0(x_s, v_hat, sigma) - x0
    direct = da.branch(OracleGenerator(x0, eps, error), x0, eps, sigma - d, d, None, "denoise")
    ratio = (direct.x0_hat - x0) / naive_err
    assert torch.allclose(ratio, torch.full_like(ratio, flow.recovery_error_ratio(sigma, d)))


@pytest.mark.parametrize(("d", "expected"), [(0.075, 0.40), (0.025, 0.123)])
def test_monte_carlo_mse_at_sigma_095(d, expected):
    result = recovery_mse(0.95, d, samples=50_000, dim=8, seed=1)
    assert result["mse_naive"] == pytest.approx(1.00, rel=0.03)
    assert result["mse_direct_align"] == pytest.approx(expected, rel=0.04)


def test_discount_is_linear_in_sigma_across_the_training_window():
    k = da.Discount(low=0.1, high=0.25)
    values = k.at(torch.tensor([0.5, 0.6, 0.7, 0.9]), (0.5, 0.7))
    assert torch.allclose(values, torch.tensor([0.1, 0.175, 0.25, 0.25]))
    assert torch.allclose(k.at(torch.tensor([0.3]), (0.5, 0.7)), torch.tensor([0.1]))


def test_paper_preset_discount_spans_the_window_not_sigma_0_to_1():
    settings = preset("flux-paper-32gpu").direct_align
    low, high = settings.sigma_range
    ends = torch.tensor([low, high])
    k_den = settings.discount_denoise.at(ends, (low, high))
    k_inv = settings.discount_inversion.at(ends, (low, high))
    assert torch.allclose(k_den, torch.tensor([0.10, 0.25]))
    assert torch.allclose(k_inv, torch.tensor([0.30, 0.01]))
    # The cleaner half of the window: the inversion branch outweighs, k_den - k_inv < 0.
    assert (k_den - k_inv)[0] < 0 < (k_den - k_inv)[1]


def test_negative_discounts_are_allowed():
    config = make_config(
        {
            "prompts": ["a red circle"],
            "positive_words": ["photo"],
            "negative_words": ["painting"],
            "direct_align": {"discount_denoise": {"low": -0.1, "high": 0.2}},
        }
    )
    assert config.direct_align.discount_denoise.low == -0.1


class ConstantReward:
    """Image embedding = the pixels' mean colour; texts are one-hot by word, so the SRP reward
    of each branch reveals the k it was given."""

    scale = 1.0
    device = torch.device("cpu")

    def encode_text(self, texts):
        return torch.stack(
            [
                torch.tensor([1.0, 0.0]) if t.startswith("pos") else torch.tensor([0.0, 1.0])
                for t in texts
            ]
        )

    def encode_image(self, pixels):
        return torch.ones(pixels.shape[0], 2)

    def score(self, pixels, texts):
        return (self.encode_image(pixels) * self.encode_text(texts)).sum(-1)


class DecodingOracle(OracleGenerator):
    def decode(self, latents):
        return torch.zeros(latents.shape[0], 3, 4, 4)


def test_each_branch_reads_its_discount_at_its_own_level():
    settings = da.DirectAlignConfig(sigma_range=(0.5, 0.9), d=0.05)
    x0, eps = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    s_star = torch.tensor([0.7])
    objective = da.srpo_objective(
        DecodingOracle(x0, eps),
        ConstantReward(),
        x0,
        eps,
        None,
        ["p"],
        s_star,
        settings,
        ("pos", "neg"),
    )
    # With unit image and one-hot texts the SRP reward is (1 + k) - 1 = k.
    k_den = settings.discount_denoise.at(s_star, (0.5, 0.9))
    k_inv = settings.discount_inversion.at(s_star - 0.05, (0.5, 0.9))
    assert torch.allclose(objective.rewards["denoise"], k_den)
    assert torch.allclose(objective.rewards["inversion"], k_inv)
    assert not torch.allclose(k_inv, settings.discount_inversion.at(s_star, (0.5, 0.9)))


def test_sigma_sampling_stays_in_range_in_both_modes():
    gen = torch.Generator().manual_seed(0)
    plain = da.sample_target_sigma(500, (0.75, 0.96), 0.022, "sigma", generator=gen)
    assert plain.min() >= 0.75 and plain.max() <= 0.96 and plain.std() > 0.03
    index = da.sample_target_sigma(500, (0.75, 0.96), 0.022, "index", 25, 3.0, generator=gen)
    allowed = flow.sigma_schedule(25, 3.0)
    assert all(torch.isclose(allowed, s).any() for s in index.unique())
    assert index.min() >= 0.75 and index.max() <= 0.96 and len(index.unique()) > 3


@pytest.mark.parametrize(
    ("sigma_range", "d", "message"),
    [
        ((0.0, 0.9), 0.02, "0 < low"),
        ((0.5, 1.0), 0.02, "0 < low"),
        ((0.1, 0.9), 0.15, "too large"),
        ((0.5, 0.99), 0.02, "too large"),
        ((0.5, 0.9), 0.0, "positive"),
    ],
)
def test_sigma_range_errors(sigma_range, d, message):
    with pytest.raises(ValueError, match=message):
        da.sample_target_sigma(4, sigma_range, d)


def test_index_mode_with_no_schedule_level_in_range_is_an_error():
    with pytest.raises(ValueError, match="no level"):
        da.sample_target_sigma(2, (0.61, 0.62), 0.01, "index", num_steps=2, shift=1.0)
