"""Flow matching in diffusers' convention (σ = 1 noise, σ = 0 data), checked against known answers."""
import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import Timesteps

from cotlab.flow import (euler_sample, flow_loss, interpolate, logit_normal_sigmas, shift_sigmas, timestep_embedding,
                         trigflow_to_flow, trigflow_velocity, velocity_target)


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


def test_velocity_target_is_the_derivative_of_the_path(pair):
    x_0, noise = pair
    sigma, h = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), 1e-6
    dx = (interpolate(x_0, noise, sigma + h) - interpolate(x_0, noise, sigma - h)) / (2 * h)
    assert torch.allclose(velocity_target(x_0, noise), dx, atol=1e-8)


def test_flow_loss_is_the_mean_squared_error_to_the_target(pair):
    x_0, noise = pair
    assert flow_loss(noise - x_0, x_0, noise) == 0
    assert torch.isclose(flow_loss(torch.zeros_like(x_0), x_0, noise), ((noise - x_0) ** 2).mean())


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
