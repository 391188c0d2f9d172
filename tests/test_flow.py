"""Flow matching in diffusers' convention (σ = 1 noise, σ = 0 data), checked against known answers."""
import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import Timesteps

from cotlab.flow import (euler_maruyama_step, euler_sample, flow_loss, interpolate, logit_normal_sigmas, shift_sigmas,
                         timestep_embedding, trigflow, trigflow_euler_sample, trigflow_thetas, trigflow_to_flow,
                         trigflow_velocity, velocity_target)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    x_0, noise = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    return x_0, noise


def test_interpolant_runs_from_data_to_noise(pair):
    x_0, noise = pair
    assert torch.equal(interpolate(x_0, noise, torch.zeros(3)), x_0)
    assert torch.equal(interpolate(x_0, noise, torch.ones(3)), noise)
    x = interpolate(x_0, noise, torch.tensor([0.0, 1.0, 0.25]))  # one σ per sample
    assert torch.equal(x[0], x_0[0]) and torch.equal(x[1], noise[1])
    assert torch.allclose(x[2], 0.75 * x_0[2] + 0.25 * noise[2])
    # by hand, one σ for the batch: (1 − 0.25)·2 + 0.25·(−1) = 1.25
    assert interpolate(torch.tensor([[2.0]]), torch.tensor([[-1.0]]), 0.25).item() == 1.25
    # a Python σ is taken in the data's precision (0.1 in float32 is 0.10000000149…)
    assert torch.allclose(interpolate(x_0, noise, 0.1), 0.9 * x_0 + 0.1 * noise, rtol=0, atol=1e-15)


def test_velocity_target_is_the_derivative_of_the_path(pair):
    x_0, noise = pair
    sigma, h = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), 1e-6
    dx = (interpolate(x_0, noise, sigma + h) - interpolate(x_0, noise, sigma - h)) / (2 * h)
    assert torch.allclose(velocity_target(x_0, noise), dx, atol=1e-8)


def test_flow_loss_is_the_mean_squared_error_to_the_target(pair):
    x_0, noise = pair
    assert flow_loss(noise - x_0, x_0, noise) == 0
    assert torch.isclose(flow_loss(torch.zeros_like(x_0), x_0, noise), ((noise - x_0) ** 2).mean())
    # by hand: target ε − x_0 = (1 − 3, 0 − (−1)) = (−2, 1); errors (0 − (−2), 3 − 1) = (2, 2): mean of 4, 4 = 4
    assert flow_loss(torch.tensor([0.0, 3.0]), torch.tensor([3.0, -1.0]), torch.tensor([1.0, 0.0])).item() == 4.0


def test_shift_by_hand():
    # 3·0.5 / (1 + 2·0.5) = 0.75; 3·0.25 / (1 + 2·0.25) = 0.5; the ends stay put
    assert shift_sigmas(torch.tensor([0.0, 0.25, 0.5, 1.0]), 3.0).tolist() == [0.0, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
def test_shift_equals_diffusers_schedulers(shift):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)  # its training sigmas: the grid k/1000, shifted
    grid = torch.arange(1000, 0, -1, dtype=torch.float32) / 1000
    assert torch.allclose(shift_sigmas(grid, shift), scheduler.sigmas, atol=1e-6)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, 9)[:-1])  # and a sampling grid
    assert torch.allclose(shift_sigmas(torch.linspace(1, 0, 9), shift), scheduler.sigmas, atol=1e-6)


def test_logit_normal_sigmas_have_the_stated_logit_statistics():
    sigma = logit_normal_sigmas(200_000, mean=0.5, std=0.8, generator=torch.Generator().manual_seed(0))
    assert sigma.shape == (200_000,) and 0 < sigma.min() and sigma.max() < 1
    logits = torch.logit(sigma.double())
    assert abs(logits.mean() - 0.5) < 0.01 and abs(logits.std() - 0.8) < 0.01
    shifted = logit_normal_sigmas(200_000, mean=0.5, std=0.8, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted, shift_sigmas(sigma, 3.0)) and shifted.mean() > sigma.mean()
    standard = torch.logit(logit_normal_sigmas(200_000, generator=torch.Generator().manual_seed(1)).double())
    assert abs(standard.mean()) < 0.01 and abs(standard.std() - 1) < 0.01  # the defaults: logit ~ N(0, 1)


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_sample_follows_a_straight_path_to_its_data(steps, shift):
    g = torch.Generator().manual_seed(steps)
    x_0, noise = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    seen = []

    def toward_x_0(x, sigma):  # the exact velocity of the straight paths ending at x_0: v = ε̂ − x_0 = (x − x_0)/σ
        assert sigma.shape == (2,)
        seen.append(sigma[0].item())
        return (x - x_0) / sigma[:, None, None]

    assert torch.allclose(euler_sample(toward_x_0, noise, steps, shift), x_0, atol=1e-5)
    assert np.allclose(seen, shift_sigmas(np.linspace(1.0, 0.0, steps + 1)[:-1], shift), atol=1e-6)
    constant = euler_sample(lambda x, sigma: velocity_target(x_0, noise), noise, steps, shift)  # v = ε − x_0
    assert torch.allclose(constant, x_0, atol=1e-5)


def test_euler_sample_integrates_a_time_dependent_field_as_a_left_riemann_sum():
    """dx/dσ = σ: Euler evaluates v at the left end of each step, so from x = 0 over the grid 1, ½, 0 it
    lands on 0 + (½ − 1)·1 + (0 − ½)·½ = −0.75, where the exact solution is −½."""
    x = euler_sample(lambda x, sigma: sigma[:, None].expand_as(x), torch.zeros(3, 2), steps=2)
    assert torch.allclose(x, torch.full((3, 2), -0.75))


def test_euler_maruyama_step_by_hand():
    # x = 1, v = 0.5, σ = 0.5 → σ' = 0.25, z = 2: ε̂ = 1 + 0.5·0.5 = 1.25, s = −ε̂/σ = −2.5,
    # drift (v − σ·s)·(σ' − σ) = 1.75·(−0.25) = −0.4375, noise √(2·0.5·0.25)·2 = 1: x' = 1.5625
    # x = 2, v = −1, σ = 0.8 → σ' = 0.5, z = −1: ε̂ = 2 − 0.2 = 1.8, s = −2.25, drift (−1 + 1.8)·(−0.3) = −0.24,
    # noise √(2·0.8·0.3)·(−1) = −√0.48: x' = 1.76 − √0.48
    one = euler_maruyama_step(torch.tensor([1.0]), torch.tensor([0.5]), 0.5, 0.25, torch.tensor([2.0]))
    two = euler_maruyama_step(torch.tensor([2.0]), torch.tensor([-1.0]), 0.8, 0.5, torch.tensor([-1.0]))
    assert one.item() == pytest.approx(1.5625) and two.item() == pytest.approx(1.76 - math.sqrt(0.48))


def test_timestep_embedding_is_sanas_time_projection_of_1000_sigma():
    sigma = torch.tensor([0.0, 0.3, 1.0])
    e = timestep_embedding(sigma, 64)
    assert torch.equal(e, Timesteps(64, flip_sin_to_cos=True, downscale_freq_shift=0)(1000 * sigma))
    assert torch.equal(e[0], torch.cat([torch.ones(32), torch.zeros(32)]))  # σ = 0: cos 0, sin 0
    assert torch.isclose(e[1, 0], torch.tensor(math.cos(300.0)))  # the highest frequency, ω_0 = 1
    assert torch.isclose(e[1, 32], torch.tensor(math.sin(300.0)))


def test_trigflow_point_maps_onto_the_flow_path(pair):
    x_0, noise = pair
    theta = torch.tensor([0.0, 0.7, math.pi / 2], dtype=torch.float64)
    x_theta = theta.cos()[:, None, None] * x_0 + theta.sin()[:, None, None] * noise
    x_sigma, sigma = trigflow_to_flow(x_theta, theta)
    assert torch.allclose(sigma, theta.sin() / (theta.sin() + theta.cos()))
    assert torch.allclose(sigma[[0, 2]], torch.tensor([0.0, 1.0], dtype=torch.float64))  # data and noise stay put
    assert torch.allclose(x_sigma, interpolate(x_0, noise, sigma))


def test_trigflow_velocity_of_the_exact_flow_velocity(pair):
    x_0, noise = pair
    theta = torch.tensor([0.2, 0.7, 1.4], dtype=torch.float64)
    s, c = theta.sin()[:, None, None], theta.cos()[:, None, None]
    x_sigma, sigma = trigflow_to_flow(c * x_0 + s * noise, theta)
    F = trigflow_velocity(velocity_target(x_0, noise), x_sigma, theta)
    assert torch.allclose(F, -s * x_0 + c * noise)  # dx_θ/dθ
    # SANA-Sprint's Prop. 3.1 as printed (σ_d = 1): F̂ = [(1 − 2σ)·x_σ + (1 − 2σ + 2σ²)·v] / √(σ² + (1 − σ)²)
    t, v = sigma[:, None, None], velocity_target(x_0, noise)
    r = (t**2 + (1 - t) ** 2).sqrt()
    assert torch.allclose(x_sigma, (c * x_0 + s * noise) * r)
    assert torch.allclose(F, ((1 - 2 * t) * x_sigma + (1 - 2 * t + 2 * t**2) * v) / r)


def test_trigflow_by_hand():
    """θ = arctan(3/4): sin θ = 0.6, cos θ = 0.8, sin θ + cos θ = 1.4, so x_θ = 1.4 is x_σ = 1 at
    σ = 0.6/1.4 = 3/7; a flow velocity v = 2.8 there gives F = (0.8 − 0.6)·1 + 2.8/1.4 = 2.2."""
    theta, x_theta = torch.tensor([math.atan(0.75)]), torch.tensor([[1.4]])
    x_sigma, sigma = trigflow_to_flow(x_theta, theta)
    assert x_sigma.item() == pytest.approx(1.0) and sigma.item() == pytest.approx(3 / 7)
    assert trigflow_velocity(torch.tensor([[2.8]]), x_sigma, theta).item() == pytest.approx(2.2)
    asked = []

    def velocity(x, sigma):
        asked.append((x.item(), sigma.item()))
        return torch.full_like(x, 2.8)

    assert trigflow(velocity, x_theta, theta).item() == pytest.approx(2.2)
    assert asked == [pytest.approx((1.0, 3 / 7))]  # the flow model is asked at x_θ's point of its own path


def test_trigflow_euler_sample_steps_on_the_uniform_angle_grid():
    """From θ = π/2 to 0 in Euler steps, F taken at the left end: a constant F moves x by −(π/2)·F
    exactly; F = θ (a left Riemann sum) by −(π/(2n))·Σ_k (π/2)(1 − k/n) = −π²(n + 1)/(8n)."""
    noise, seen = torch.randn(2, 3, dtype=torch.float64), []

    def angle(x, theta):
        assert theta.shape == (2,)
        seen.append(theta[0].item())
        return theta[:, None].expand_as(x)

    exactly = dict(rtol=0, atol=1e-14)  # in the noise's precision: float64 here
    assert torch.allclose(trigflow_euler_sample(lambda x, theta: torch.full_like(x, 3.0), noise, 4), noise - 1.5 * math.pi, **exactly)
    assert torch.allclose(trigflow_euler_sample(angle, noise, 3), noise - math.pi**2 * 4 / 24, **exactly)
    assert seen == pytest.approx([math.pi / 2, math.pi / 3, math.pi / 6])


def test_the_transformed_flow_follows_the_circle_to_its_data(pair):
    """The flow velocity of the straight paths through x_0, seen through ``trigflow``, is the exact
    velocity of the circle x_θ = cos θ·x_0 + sin θ·ε, F = (cos θ·x_θ − x_0)/sin θ. TrigFlow Euler from ε
    reaches x_0 up to the last step's error: from x_h ≈ x_0 at θ = h = π/(2n) it lands on
    x_h·(1 − h·cot h) + x_0·h/sin h ≈ x_0·(1 + h²/2), i.e. an error of (h²/2)·x_0 to third order."""
    x_0, noise = pair
    F = lambda x, theta: trigflow(lambda x_sigma, sigma: (x_sigma - x_0) / sigma[:, None, None], x, theta)
    h = math.pi / 2 / 50
    error, expected = trigflow_euler_sample(F, noise, 50) - x_0, h**2 / 2 * x_0
    assert (error - expected).abs().max() < 0.03 * expected.abs().max()


def test_trigflow_thetas_are_angles_of_log_normal_noise_levels():
    """θ = arctan(e^τ/σ_d), τ ~ N(mean, std²): log(σ_d·tan θ) has the stated mean and deviation, and
    the median θ is arctan(e^mean/σ_d) (σ_d = 0.5 by default)."""
    theta = trigflow_thetas(40_000, 0.2, 1.6, generator=torch.Generator().manual_seed(0)).double()
    tau = torch.log(0.5 * theta.tan())
    assert abs(tau.mean().item() - 0.2) < 0.02 and abs(tau.std().item() - 1.6) < 0.02
    assert theta.median().item() == pytest.approx(math.atan(math.exp(0.2) / 0.5), abs=0.01)
    unit = trigflow_thetas(40_000, -0.6, 1.0, sigma_data=1.0, generator=torch.Generator().manual_seed(1)).double()
    assert unit.median().item() == pytest.approx(math.atan(math.exp(-0.6)), abs=0.01)


def test_seeded_times_are_reproducible():
    seeded = lambda draw, seed: draw(generator=torch.Generator().manual_seed(seed))
    for draw in (lambda **kw: logit_normal_sigmas(8, **kw), lambda **kw: trigflow_thetas(8, 0.2, 1.6, **kw)):
        torch.manual_seed(0)
        first = seeded(draw, 3)
        assert torch.equal(first, seeded(draw, 3)) and not torch.equal(first, seeded(draw, 4))


def test_every_tensor_stays_on_the_input_device():
    """On the meta device (a stand-in for a GPU): the σ and θ the models are asked at, the interpolant
    and the samplers' results live where the input does (a CPU tensor there fails or moves the work)."""
    x = torch.zeros(2, 3, device="meta")
    asked = []

    def velocity(x, t):
        asked.append(t.device.type)
        return x

    assert interpolate(x, x, 0.3).device.type == "meta" and interpolate(x, x, torch.zeros(2, device="meta")).device.type == "meta"
    assert euler_sample(velocity, x, 2).device.type == trigflow_euler_sample(velocity, x, 2).device.type == "meta"
    assert asked == ["meta"] * 4
    assert logit_normal_sigmas(3, device="meta").device.type == trigflow_thetas(3, 0.0, 1.0, device="meta").device.type == "meta"
