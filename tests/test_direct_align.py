"""The identities of method.md, checked numerically and through autograd."""

import pytest
import torch

from srpo import direct_align as da
from srpo import flow
from srpo.recovery import recovery_mse


class OracleGenerator:
    """Predicts the true velocity, optionally plus a learnable offset, for identity checks."""

    def __init__(self, x0, eps, offset=None):
        self.x0, self.eps, self.offset = x0, eps, offset

    def velocity(self, latents, sigma, cond):
        v = flow.true_velocity(self.x0, self.eps)
        return v if self.offset is None else v + self.offset


@pytest.mark.parametrize("branch", [da.denoise_branch, da.inversion_branch])
@pytest.mark.parametrize("s_star", [0.1, 0.5, 0.9])
def test_exact_recovery_when_prediction_is_the_true_velocity(branch, s_star):
    x0, eps = torch.randn(4, 8, 6, dtype=torch.float64), torch.randn(4, 8, 6, dtype=torch.float64)
    result = branch(OracleGenerator(x0, eps), x0, eps, s_star, 0.05, cond=None)
    assert torch.allclose(result.x0_hat, x0, atol=1e-12)


@pytest.mark.parametrize(("branch", "sign"), [(da.denoise_branch, -1), (da.inversion_branch, 1)])
@pytest.mark.parametrize(("s_star", "d"), [(0.75, 0.022), (0.5, 0.1), (0.9, 0.05)])
def test_gradient_of_recovery_with_respect_to_prediction(branch, sign, s_star, d):
    x0, eps = torch.randn(2, 5), torch.randn(2, 5)
    offset = torch.zeros(2, 5, requires_grad=True)
    result = branch(OracleGenerator(x0, eps, offset), x0, eps, s_star, d, cond=None)
    (grad,) = torch.autograd.grad(result.x0_hat.sum(), offset)
    assert torch.allclose(grad, torch.full_like(grad, sign * d / (1 - s_star)), atol=1e-6)


@pytest.mark.parametrize(("sigma", "d"), [(0.95, 0.025), (0.95, 0.075), (0.6, 0.05)])
def test_error_ratio_against_naive_estimate_for_any_prediction_error(sigma, d):
    x0, eps = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    error = torch.randn(3, 7, dtype=torch.float64)
    v_hat = flow.true_velocity(x0, eps) + error
    x_s = flow.add_noise(x0, eps, sigma)
    naive_err = flow.naive_x0(x_s, v_hat, sigma) - x0
    direct = da.denoise_branch(OracleGenerator(x0, eps, error), x0, eps, sigma - d, d, None)
    ratio = (direct.x0_hat - x0) / naive_err
    assert torch.allclose(ratio, torch.full_like(ratio, flow.recovery_error_ratio(sigma, d)))


@pytest.mark.parametrize(("d", "expected"), [(0.075, 0.40), (0.025, 0.123)])
def test_monte_carlo_mse_at_sigma_095(d, expected):
    result = recovery_mse(0.95, d, samples=50_000, dim=8, seed=1)
    assert result["mse_naive"] == pytest.approx(1.00, rel=0.03)
    assert result["mse_direct_align"] == pytest.approx(expected, rel=0.04)


def test_discount_is_linear_in_sigma_between_its_endpoints():
    k = da.Discount(clean=0.1, noisy=0.25)
    values = k(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(values, torch.tensor([0.1, 0.175, 0.25]))


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
