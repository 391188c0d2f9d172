"""Flow matching, once, in diffusers' convention: σ = 1 is pure noise, σ = 0 is data.

*Flow Matching for Generative Modeling* (arXiv 2210.02747) and rectified flow (arXiv 2209.03003), as
SD3 (arXiv 2403.03206) and SANA (arXiv 2410.10629) train it. With x_0 data and ε ~ N(0, I):

    x_σ = (1 − σ)·x_0 + σ·ε                        the straight path from data (σ = 0) to noise (σ = 1)
    v   = dx_σ/dσ = ε − x_0                        the velocity target
    L   = E_{σ, x_0, ε} ‖v_θ(x_σ, σ) − (ε − x_0)‖²  plain MSE, no weighting (SANA)

σ is drawn uniformly or logit-normally, σ = sigmoid(m + s·z) with z ~ N(0, 1), and may be shifted
towards noise by σ' = shift·σ / (1 + (shift − 1)·σ) (SD3's and SANA's timestep shift). Sampling
integrates dx/dσ = v_θ(x, σ) from σ = 1 (noise) down to σ = 0 with Euler steps
x_{σ'} = x_σ + (σ' − σ)·v, exactly what diffusers' ``FlowMatchEulerDiscreteScheduler.step`` does. A
prediction v gives the data and the noise it implies: x̂_0 = x_σ − σ·v and ε̂ = x_σ + (1 − σ)·v.

SANA-Sprint's TrigFlow (arXiv 2503.09641, Prop. 3.1) views the same model on the path
x_θ = cos θ·x_0 + sin θ·ε, θ ∈ [0, π/2] (θ = 0 data, θ = π/2 noise; data scale σ_d = 1): see
``trigflow_to_flow`` and ``trigflow_velocity``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import get_timestep_embedding


def _per_sample(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t (B,) (or a scalar) shaped (B, 1, …, 1) to broadcast over the trailing dimensions of x (B, …)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x_0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x_0 + σ·ε for data x_0 (B, …), noise ε (B, …) and σ (B,) (or a scalar)."""
    sigma = _per_sample(sigma, x_0)  # (B, 1, …, 1)
    return (1 - sigma) * x_0 + sigma * noise


def velocity_target(x_0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = dx_σ/dσ = ε − x_0 (B, …), the same at every σ along the straight path."""
    return noise - x_0


def flow_loss(v_pred: torch.Tensor, x_0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """L = mean ‖v_pred − (ε − x_0)‖², averaged over every element."""
    return F.mse_loss(v_pred, velocity_target(x_0, noise))


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = shift·σ / (1 + (shift − 1)·σ): keeps σ = 0 and σ = 1, moves the rest towards noise when
    shift > 1 (SD3, SANA's ``flow_shift``; diffusers' ``FlowMatchEulerDiscreteScheduler(shift=...)``)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def logit_normal_sigmas(n: int, mean: float = 0.0, std: float = 1.0, shift: float = 1.0,
                        generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n training times (n,) in (0, 1): σ = sigmoid(mean + std·z), z ~ N(0, 1), then shifted."""
    z = torch.randn(n, generator=generator, device=device)
    return shift_sigmas(torch.sigmoid(mean + std * z), shift)


def timestep_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features (B, dim) of σ (B,), as diffusers' flow transformers embed time: t = 1000·σ
    through ``get_timestep_embedding`` with SANA's and SD3's settings (``Timesteps(dim,
    flip_sin_to_cos=True, downscale_freq_shift=0)``), i.e. [cos(t·ω_k), sin(t·ω_k)] with
    ω_k = 10000^(−k/(dim/2)), k = 0 … dim/2 − 1."""
    return get_timestep_embedding(1000 * sigma, dim, flip_sin_to_cos=True, downscale_freq_shift=0)


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int, shift: float = 1.0) -> torch.Tensor:
    """x_0 (B, …): integrate dx/dσ = velocity(x, σ) from x = noise at σ = 1 to σ = 0 in ``steps`` Euler
    steps over the uniform grid σ_k = 1 − k/steps, shifted by ``shift``. ``velocity`` takes x (B, …)
    and σ (B,). The steps are diffusers' ``FlowMatchEulerDiscreteScheduler``'s: x ← x + (σ_{k+1} − σ_k)·v."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    # Passing the grid as ``sigmas`` (its default grid ends at σ = 1/1000, not a uniform one): the
    # scheduler shifts them and appends the final σ = 0.
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device=noise.device)
    scheduler.set_begin_index(0)
    x = noise  # x at σ = 1
    for k, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[k].expand(len(x))  # (B,)
        x = scheduler.step(velocity(x, sigma), t, x).prev_sample
    return x


def euler_maruyama_step(x: torch.Tensor, v: torch.Tensor, sigma: float, next_sigma: float,
                        noise: torch.Tensor) -> torch.Tensor:
    """One Euler–Maruyama step from σ to σ' < σ of the reverse SDE that has the flow ODE's marginals
    (xAR's sampler): with the score s = −ε̂/σ = −(x + (1 − σ)·v)/σ and diffusion g² = 2σ,

        x ← x + (v − σ·s)·(σ' − σ) + √(2σ·(σ − σ'))·z,   z ~ N(0, I)  (``noise``, like x (B, …)).

    Every step re-injects noise the drift then removes, so errors made early are washed out (SDE)
    rather than carried to the end (ODE)."""
    score = -(x + (1 - sigma) * v) / sigma
    return x + (v - sigma * score) * (next_sigma - sigma) + (2 * sigma * (sigma - next_sigma)) ** 0.5 * noise


# --- TrigFlow (SANA-Sprint) ----------------------------------------------------------------------
# On x_θ = cos θ·x_0 + sin θ·ε, dividing by (sin θ + cos θ) gives the flow path's x_σ with
# σ = sin θ / (sin θ + cos θ), 1 − σ = cos θ / (sin θ + cos θ). TrigFlow's velocity is
#     F = dx_θ/dθ = −sin θ·x_0 + cos θ·ε,
# and with the flow model's x̂_0 = x_σ − σ·v, ε̂ = x_σ + (1 − σ)·v:
#     F = (cos θ − sin θ)·x_σ + (σ·sin θ + (1 − σ)·cos θ)·v = (cos θ − sin θ)·x_σ + v / (sin θ + cos θ),
# since σ·sin θ + (1 − σ)·cos θ = (sin²θ + cos²θ)/(sin θ + cos θ). This is SANA-Sprint's Prop. 3.1
# with σ_d = 1 (for another data scale σ_d, pass x_θ/σ_d; SANA-Sprint's dx_θ/dθ = σ_d·F).

def trigflow_to_flow(x_theta: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow-matching input for a TrigFlow point: x_σ = x_θ / (sin θ + cos θ) (B, …) and
    σ = sin θ / (sin θ + cos θ) (B,), for x_θ (B, …) and θ (B,) in [0, π/2]."""
    s, c = theta.sin(), theta.cos()
    return x_theta / _per_sample(s + c, x_theta), s / (s + c)


def trigflow_velocity(v: torch.Tensor, x_sigma: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """TrigFlow's velocity F = dx_θ/dθ (B, …) from the flow model's v (B, …) at x_σ (B, …), θ (B,):
    F = (cos θ − sin θ)·x_σ + v / (sin θ + cos θ)."""
    s, c = _per_sample(theta.sin(), v), _per_sample(theta.cos(), v)
    return (c - s) * x_sigma + v / (s + c)


def trigflow(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x_theta: torch.Tensor,
             theta: torch.Tensor) -> torch.Tensor:
    """SANA-Sprint's training-free transform (Prop. 3.1): the TrigFlow velocity F(x_θ, θ) (B, …) of a
    flow model ``velocity(x_σ, σ)``, at x_θ (B, …) and θ (B,). No retraining: the flow model is asked at
    the point of its own path that x_θ corresponds to, and its answer is mapped."""
    x_sigma, sigma = trigflow_to_flow(x_theta, theta)
    return trigflow_velocity(velocity(x_sigma, sigma), x_sigma, theta)


def trigflow_euler_sample(F: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                          steps: int) -> torch.Tensor:
    """x_0 (B, …): integrate dx_θ/dθ = F(x_θ, θ) from x = noise at θ = π/2 to θ = 0 in ``steps`` Euler
    steps on the uniform grid θ_k = (π/2)(1 − k/steps). ``F`` takes x (B, …) and θ (B,)."""
    thetas = torch.linspace(torch.pi / 2, 0.0, steps + 1, dtype=noise.dtype, device=noise.device)
    x = noise
    for theta, next_theta in zip(thetas[:-1], thetas[1:]):
        x = x + (next_theta - theta) * F(x, theta.expand(len(x)))
    return x


def trigflow_thetas(n: int, mean: float, std: float, sigma_data: float = 0.5,
                    generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n TrigFlow training times (n,) in (0, π/2): θ = arctan(e^τ/σ_d) with τ ~ N(mean, std²), the
    log-normal noise level e^τ of EDM seen as an angle (sCM, SANA-Sprint: mean 0.2, std 1.6)."""
    tau = mean + std * torch.randn(n, generator=generator, device=device)
    return torch.atan(tau.exp() / sigma_data)
