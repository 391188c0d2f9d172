"""Sampling the consistency student: diffusers' ``SCMScheduler``, as ``cotlab.sampling.Paths``.

A path starts from noise x = σ_d·ε at θ_0 ≈ π/2. Each step jumps to the end of the trajectory and
back out: the student's one-step image x̂_0 = cos θ_k·x − sin θ_k·σ_d·F(x/σ_d, θ_k), then fresh noise
to the next time, x ← cos θ_{k+1}·x̂_0 + sin θ_{k+1}·σ_d·z (at θ_S = 0 the image itself). One model
serves every step count; SANA-Sprint found its times by search (Table 7):

    1 step   θ = π/2, 0
    2 steps  θ = 1.5683, 1.3, 0             (1.5683 = arctan(200/σ_d))
    4 steps  θ = 1.5683, 1.3, 1.1, 0.6, 0

other step counts use a uniform grid from π/2. One forward pass per step: the guidance is distilled.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from diffusers import SCMScheduler

from cotlab.dit.decoding import FlowPaths
from cotlab.sampling import Paths

TIMES = {1: [torch.pi / 2, 0.0], 2: [1.5683, 1.3, 0.0], 4: [1.5683, 1.3, 1.1, 0.6, 0.0]}


def sampling_times(steps: int) -> list[float]:
    """θ_0 > θ_1 > … > θ_S = 0 for ``steps`` = S (module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return TIMES.get(steps) or torch.linspace(torch.pi / 2, 0.0, steps + 1).tolist()


def make_scheduler(steps: int, sigma_data: float = 0.5) -> SCMScheduler:
    """diffusers' ``SCMScheduler`` on ``sampling_times(steps)``."""
    scheduler = SCMScheduler(sigma_data=sigma_data)
    scheduler.set_timesteps(steps, timesteps=sampling_times(steps), max_timesteps=None, intermediate_timesteps=None)
    scheduler.set_begin_index(0)
    return scheduler


class SprintPaths(FlowPaths):
    """B paths of the student (``SprintStudent.paths``): ``x`` (B, C, h, w) the current latents at σ_d
    scale, ``clean`` (B, C, h, w) the last one-step images x̂_0 (unit scale); a path's state is its
    (x, x̂_0, scheduler), kept, restored and drawn as a flow model's paths are. Cost: one forward pass per step."""

    def __init__(self, model, captions: list[str], seeds: int | Sequence[int] = 0, steps: int = 1, cfg: float = 4.5):
        prototype = make_scheduler(steps, model.config.sigma_data)
        Paths.__init__(self, captions, steps, seeds, cost=1)  # not FlowPaths': no guidance batch, other schedulers
        self.model = model
        self.schedulers = [copy.deepcopy(prototype) for _ in captions]
        self.text = model.encode_text(captions)  # (B, T, D_text), (B, T)
        self.cfg = torch.full((len(captions),), float(cfg), device=model.device)  # (B,)
        noise = torch.stack([torch.randn(model.latent_shape, generator=g) for g in self.generators])  # (B, C, h, w)
        self.x = model.config.sigma_data * noise.to(model.device)
        self.clean = torch.zeros_like(self.x)

    @property
    def tokens(self) -> torch.Tensor:
        """The unit-scale latents (B, C, h, w): the final ones once every path is done."""
        return self.x / self.model.config.sigma_data

    @torch.no_grad()
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        run = rows[:1] if shared else rows  # branches of one state: one forward pass, each its own noise
        sd = self.model.config.sigma_data
        theta = torch.stack([self.schedulers[r].timesteps[self.schedulers[r].step_index or 0] for r in run.tolist()])
        theta = theta.to(self.x)  # (R,)
        index = run.to(self.x.device)
        x = self.x[index]  # (R, C, h, w)
        F = self.model.trigflow(x / sd, theta, self.text[0][index], self.text[1][index], self.cfg[index])
        for i, row in enumerate(rows.tolist()):
            j = 0 if shared else i
            scheduler = self.schedulers[row]
            out = scheduler.step(sd * F[j:j + 1], scheduler.timesteps[scheduler.step_index or 0], x[j:j + 1],
                                 generator=self.generators[row])
            self.x[row] = out.prev_sample[0]
            self.clean[row] = out.pred_original_sample[0] / sd

    @torch.no_grad()
    def record(self) -> dict:
        """Each step's one-step image x̂_0 (``image``) and the latent the sampler now holds, decoded
        (``noisy``), and the θ each path stands at (``theta``) (B,)."""
        theta = torch.stack([s.timesteps[s.step_index] for s in self.schedulers])
        return {"image": self.images(), "noisy": self.model.decode_latents(self.tokens).cpu(), "theta": theta}
