"""Sampling a flow-matching model: flow Euler and Flow-DPM-Solver, as ``cotlab.sampling.Paths``.

A path starts from its seed's noise x = ε at σ = 1 and integrates dx/dσ = v_θ(x, σ) down to σ = 0 on
a grid σ_0 = 1 > σ_1 > … > σ_S = 0 (shifted by ``sample_shift``):

- **flow Euler** (diffusers' ``FlowMatchEulerDiscreteScheduler``): x ← x + (σ_{k+1} − σ_k)·v, first
  order; SANA samples with 28–50 of these steps.
- **Flow-DPM-Solver** (diffusers' ``DPMSolverMultistepScheduler`` with ``use_flow_sigmas`` and
  ``prediction_type="flow_prediction"``): DPM-Solver++ in its second-order multistep form on the flow
  path, α_σ = 1 − σ, λ = log((1 − σ)/σ); the velocity becomes the data prediction x̂_0 = x − σ·v, and
  each step extrapolates x̂_0 from the last two. SANA's default: 14–20 steps.

Each path has its own scheduler (the multistep solver remembers its last predictions), so paths may
stand at different steps. The intermediate image at step k is the predicted clean latent
x̂_0 = x_σ − σ·v, decoded: what the model believes the image is at that moment.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

from cotlab.latents import prefix_rows
from cotlab.sampling import Paths

SOLVERS = ("euler", "dpm")


def make_scheduler(solver: str, steps: int, shift: float = 1.0):
    """A diffusers scheduler for ``steps`` steps of ``solver`` from σ = 1 to 0 (module docstring)."""
    if solver == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])  # a uniform grid, then shifted
    elif solver == "dpm":
        scheduler = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                                flow_shift=shift, solver_order=2, algorithm_type="dpmsolver++",
                                                final_sigmas_type="zero", lower_order_final=True)
        scheduler.set_timesteps(steps)
    else:
        raise ValueError(f"unknown solver '{solver}': choose one of {', '.join(SOLVERS)}")
    scheduler.set_begin_index(0)
    return scheduler


class FlowPaths(Paths):
    """B sampling paths of a flow-matching model (``SanaDiT.paths``): ``x`` (B, C, h, w) the current
    latents, ``clean`` (B, C, h, w) the last predicted clean latents x̂_0; a path's state is its
    (x, x̂_0, scheduler). Cost: one forward pass per step, two with guidance."""

    def __init__(self, model, captions: list[str], seeds: int | Sequence[int] = 0, steps: int = 20,
                 cfg: float = 3.0, solver: str = "euler"):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(captions, steps, seeds, cost=1 if cfg == 1.0 else 2)
        self.model, self.cfg = model, cfg
        prototype = make_scheduler(solver, steps, model.config.sample_shift)
        self.schedulers = [copy.deepcopy(prototype) for _ in captions]
        self.prefix = model.prefix(captions, cfg)  # (B or 2B, T, D_text), (B or 2B, T)
        noise = torch.stack([torch.randn(model.latent_shape, generator=g) for g in self.generators])  # (B, C, h, w)
        self.x = noise.to(model.device)
        self.clean = torch.zeros_like(self.x)  # nothing predicted yet: the mean latent

    @property
    def tokens(self) -> torch.Tensor:
        """The latents (B, C, h, w): the final ones once every path is done."""
        return self.x

    @torch.no_grad()
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        run = rows[:1] if shared else rows  # branches of one state: one forward pass, the same ODE step
        sigma = torch.stack([self.schedulers[r].sigmas[self.schedulers[r].step_index or 0] for r in run.tolist()])
        sigma = sigma.to(self.x)  # (R,)
        x = self.x[run.to(self.x.device)]  # (R, C, h, w)
        v = self.model.guided_velocity(x, sigma, prefix_rows(self.prefix, run, self.cfg != 1.0), self.cfg)  # (R, C, h, w)
        clean = x - sigma[:, None, None, None] * v  # x̂_0 = x_σ − σ·v
        for i, row in enumerate(rows.tolist()):
            j = 0 if shared else i
            scheduler = self.schedulers[row]
            t = scheduler.timesteps[scheduler.step_index or 0]
            self.x[row] = scheduler.step(v[j:j + 1], t, x[j:j + 1]).prev_sample[0]
            self.clean[row] = clean[j]

    @torch.no_grad()
    def record(self) -> dict:
        """Each step's predicted clean image x̂_0 (``image``), the latent the sampler now holds, decoded
        as it is (``noisy``: at σ > 0 part noise), and the σ it stands at (``sigma``) (B,)."""
        sigma = torch.stack([s.sigmas[s.step_index] for s in self.schedulers])  # (B,): where each path now is
        return {"image": self.images(), "noisy": self.model.decode_latents(self.x).cpu(), "sigma": sigma}

    @torch.no_grad()
    def images(self, rows=None, final: bool = False) -> torch.Tensor:
        rows = self.rows(rows).to(self.x.device)
        done = self.done(rows.cpu()).to(self.x.device)[:, None, None, None]
        latents = torch.where(done, self.tokens[rows], self.clean[rows]) if final else self.clean[rows]
        return self.model.decode_latents(latents).cpu()

    def state(self, row: int):
        return self.x[row].clone(), self.clean[row].clone(), copy.deepcopy(self.schedulers[row])

    def restore(self, row: int, state) -> None:
        x, clean, scheduler = state
        self.x[row], self.clean[row] = x, clean
        self.schedulers[row] = copy.deepcopy(scheduler)
        self.position[row] = scheduler.step_index or 0
