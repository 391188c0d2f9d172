"""Sampling a next-X model, entity by entity, as ``cotlab.sampling.Paths``.

One step of a path is one autoregressive step: entity k is drawn from its seed's noise by S flow steps
from σ = 1 to 0, its context the entities 0 … k−1 the model has already made, fed *clean* (at t = 0),
as xAR samples:

- the first flow step runs the context and the noisy entity together under the block-causal mask
  and keeps the context's keys and values (the KV cache); the other S − 1 steps run only the
  entity's tokens against that cache;
- ``solver="euler"``: the ODE, x ← x + (σ' − σ)·v on σ_j = 1 − j/S; ``solver="sde"``: Euler–Maruyama
  (``cotlab.flow.euler_maruyama_step``) on σ from 1 to 0.04, then a last step to the predicted x̂_0;
- guidance v = v(∅) + w_k·(v(c) − v(∅)) with w_k = 1 + (w − 1)·k/(N − 1) ramped across the entities
  (xAR: the first entity is drawn unguided, the last with the full weight).

A path costs S forward passes per entity (2S with guidance, batched as one of twice the rows). Its
intermediate image after k entities is the latent with the entities not yet made at the mean latent 0
(for ``scale``: the last scale made, upsampled). ``give(latents, n)`` hands a path the first n
entities of a ground-truth latent instead: the exposure-bias measurement of ``cotlab.xar.bench``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from cotlab.flow import euler_maruyama_step
from cotlab.latents import prefix_rows
from cotlab.sampling import Paths

SOLVER_NAMES = {"sde": "Euler–Maruyama", "euler": "flow-Euler"}  # the solvers, in words
SDE_LAST_SIGMA = 0.04  # Euler–Maruyama stops here and jumps to the predicted clean entity (xAR's sampler)


def flow_grid(solver: str, steps: int) -> list[float]:
    """The σ grid of one entity's S = ``steps`` flow steps, from 1 down to 0."""
    if solver == "euler":
        return torch.linspace(1.0, 0.0, steps + 1).tolist()
    if solver == "sde":
        return torch.linspace(1.0, SDE_LAST_SIGMA, steps).tolist() + [0.0]
    raise ValueError(f"unknown solver '{solver}': a next-X model samples with one of {', '.join(sorted(SOLVER_NAMES))}")


def cfg_ramp(cfg: float, entity: int, entities: int) -> float:
    """w_k = 1 + (w − 1)·k/(N − 1): unguided at the first entity, the full weight at the last."""
    return cfg if entities == 1 else 1 + (cfg - 1) * entity / (entities - 1)


class XARPaths(Paths):
    """B sampling paths of a next-X model (``XAR.paths``): ``tokens`` (B, L, C) the entities made so
    far (zeros beyond), ``trajectory[row]`` the row's last entity as predicted clean after each flow
    step (S, L_k, C). A path's state is its tokens and its position (the entities made)."""

    def __init__(self, model, captions: list[str], seeds: int | Sequence[int] = 0, steps: int = 20,
                 cfg: float = 5.0, solver: str = "sde"):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.grid = flow_grid(solver, steps)
        self.layout = model.layout
        super().__init__(captions, self.layout.entities, seeds, cost=steps if cfg == 1.0 else 2 * steps)
        self.model, self.cfg, self.solver, self.flow_steps = model, cfg, solver, steps
        self.prefix = model.prefix(captions, cfg)  # (B or 2B, T, D_text), (B or 2B, T)
        B, (C, _, _) = len(captions), model.latent_shape
        self.tokens = torch.zeros(B, self.layout.length, C, device=model.device)
        self.trajectory: dict[int, torch.Tensor] = {}

    def give(self, latents: torch.Tensor, entities: int) -> None:
        """Start every path after the first ``entities`` entities of ``latents`` (B, C, h, w), given
        (e.g. the ground truth's) instead of sampled."""
        keep = self.layout.entity < entities  # (L,)
        self.tokens[:, keep] = self.layout.to_tokens(latents.to(self.tokens))[:, keep]
        self.position[:] = entities

    @torch.no_grad()
    def step(self, rows: torch.Tensor, shared: bool) -> None:
        for k in self.position[rows].unique().tolist():  # paths at the same entity run together
            group = rows[self.position[rows] == k]
            run = group[:1] if shared else group  # branches of one state: one run, the same entity
            entity, trajectory = self._draw(run, k)
            for i, row in enumerate(group.tolist()):
                j = 0 if shared else i
                self.tokens[row, self.layout.entity == k] = entity[j]
                self.trajectory[row] = trajectory[j]

    def _draw(self, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Entity k (R, L_k, C) of ``rows`` drawn by S flow steps after their context, and the predicted
        clean entity after each flow step (R, S, L_k, C)."""
        model, layout = self.model, self.layout
        before, current = layout.entity < k, layout.entity == k  # (L,) each
        w = cfg_ramp(self.cfg, k, layout.entities)
        copies = 1 if self.cfg == 1.0 else 2  # guided: conditional and unconditional rows in one batch
        generators = [self.generators[r] for r in rows.tolist()]
        C, n = self.tokens.shape[2], int(current.sum())
        x = torch.stack([torch.randn(n, C, generator=g) for g in generators]).to(self.tokens)  # (R, L_k, C)
        context = self.tokens[rows.to(self.tokens.device)][:, before].repeat(copies, 1, 1)  # (copies·R, L_c, C)
        text = prefix_rows(self.prefix, rows, self.cfg != 1.0)
        positions = model.positions.to(x.device)
        mask = layout.block_causal_mask()[before | current][:, before | current].to(x.device)
        cache, trajectory = None, []
        for j, (sigma, next_sigma) in enumerate(zip(self.grid[:-1], self.grid[1:])):
            times = torch.full((copies * len(rows), n), sigma, device=x.device)
            if cache is None:  # the context, clean at t = 0, and the entity: keep the context's keys and values
                tokens = torch.cat([context, x.repeat(copies, 1, 1)], 1)
                times = torch.cat([torch.zeros(context.shape[:2], device=x.device), times], 1)
                v, kv = model(tokens, times, positions[before | current], *text, mask)
                v, L_c = v[:, context.shape[1]:], context.shape[1]
                cache = [(keys[:, :, :L_c], values[:, :, :L_c]) for keys, values in kv]
            else:
                v, _ = model(x.repeat(copies, 1, 1), times, positions[current], *text, None, cache)
            if copies == 2:
                cond, uncond = v.chunk(2)
                v = uncond + w * (cond - uncond)  # (R, L_k, C)
            clean = x - sigma * v  # x̂_0 = x_σ − σ·v
            trajectory.append(clean.cpu())
            if self.solver == "sde" and next_sigma > 0:
                z = torch.stack([torch.randn(n, C, generator=g) for g in generators]).to(x)
                x = euler_maruyama_step(x, v, sigma, next_sigma, z)
            elif self.solver == "sde":
                x = clean  # the last step: the predicted clean entity
            else:
                x = x + (next_sigma - sigma) * v
        return x, torch.stack(trajectory, 1)

    @torch.no_grad()
    def images(self, rows=None, final: bool = False) -> torch.Tensor:
        rows = self.rows(rows)
        latents = torch.stack([self.layout.partial_latent(self.tokens[r:r + 1], int(self.position[r]))[0]
                               for r in rows.tolist()])  # (R, C, h, w)
        return self.model.decode_latents(latents).cpu()

    @torch.no_grad()
    def record(self) -> dict:
        """The image after this entity (``image``), and the entity's flow: the image with this entity's
        predicted clean value after each flow step (``flow`` (B, S, 3, H, W)) — what the viewer steps through."""
        flow = []
        for s in range(len(self.grid) - 1):
            tokens = self.tokens.clone()
            for r, trajectory in self.trajectory.items():
                tokens[r, self.layout.entity == int(self.position[r]) - 1] = trajectory[s].to(tokens)
            flow.append(torch.stack([self.layout.partial_latent(tokens[r:r + 1], int(self.position[r]))[0]
                                     for r in range(len(tokens))]))
        flow = self.model.decode_latents(torch.stack(flow, 1).flatten(0, 1)).cpu()
        return {"image": self.images(), "flow": flow.view(len(self.captions), -1, *flow.shape[1:])}

    def state(self, row: int):
        return self.tokens[row].clone(), int(self.position[row])

    def restore(self, row: int, state) -> None:
        tokens, position = state
        self.tokens[row] = tokens
        self.position[row] = position
