import math

import pytest
import torch

from srpo import flow


def test_schedule_runs_from_one_to_zero_and_shift_moves_it_up():
    plain = flow.sigma_schedule(10)
    shifted = flow.sigma_schedule(10, shift=3.0)
    assert plain[0] == 1 and plain[-1] == 0 and len(plain) == 11
    assert torch.all(plain[:-1] > plain[1:])
    assert torch.all(shifted[1:-1] > plain[1:-1])
    assert shifted[5].item() == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))


def test_shift_rejects_non_positive_and_steps_must_be_positive():
    with pytest.raises(ValueError, match="shift"):
        flow.time_shift(torch.tensor([0.5]), 0)
    with pytest.raises(ValueError, match="num_steps"):
        flow.sigma_schedule(0)


def test_euler_with_true_velocity_follows_the_straight_path():
    x0, eps = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    sigma = torch.tensor([0.9, 0.5, 0.3])
    x = flow.add_noise(x0, eps, sigma)
    down = flow.euler_step(x, flow.true_velocity(x0, eps), sigma, sigma - 0.2)
    assert torch.allclose(down, flow.add_noise(x0, eps, sigma - 0.2), atol=1e-6)
    assert torch.allclose(flow.recover_x0(x, eps, sigma), x0, atol=1e-5)
    assert torch.allclose(flow.naive_x0(x, flow.true_velocity(x0, eps), sigma), x0, atol=1e-5)


def test_euler_sample_with_true_velocity_lands_on_x0():
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    out = flow.euler_sample(lambda x, s: eps - x0, eps, flow.sigma_schedule(7, 3.0))
    assert torch.allclose(out, x0, atol=1e-5)


def test_error_ratio_values_from_method_md():
    assert flow.recovery_error_ratio(0.95, 0.025) == pytest.approx(0.351, abs=1e-3)
    assert flow.recovery_error_ratio(0.95, 0.075) == pytest.approx(0.632, abs=1e-3)
    assert math.isclose(flow.recovery_error_ratio(0.5, 0.5), 1.0)
