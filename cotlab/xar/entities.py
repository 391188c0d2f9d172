"""What a "token" can be: the five entities of xAR (arXiv 2502.20388, Alg. 1), on a latent (C, h, w).

An autoregressive model predicts one *entity* per step. The latent's h·w positions (16 on
``dcae_f8``'s 4×4 grid) are cut into N entities and laid out as a sequence of L tokens, entity after
entity:

    token      1 position per step, in raster order           N = h·w (16),   L = h·w
    cell       k×k neighbouring positions (k = 2)             N = (h/k)² (4), L = h·w
    subsample  positions (k·i + a, k·j + b) for one (a, b):   N = k² (4),     L = h·w
               a strided, non-local grid of the whole image
    scale      the latent area-downsampled to 1×1, 2×2, 4×4:  N = 3,          L = 1 + 4 + 16
               coarse to fine; the image is the last scale
    image      the whole latent at once: plain flow matching  N = 1,          L = h·w

A ``Layout`` keeps, per token, its entity (``entity`` (L,)) and its position-embedding index
(``position`` (L,): a distinct index for every token, so the scales' tokens get their own), and turns
latents into token sequences and back.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ENTITIES = ("token", "cell", "subsample", "scale", "image")


@dataclass(frozen=True)
class Layout:
    """The entities of ``kind`` on an h×w grid (``size`` = h = w); ``k`` the cell side and subsampling
    stride. ``order`` (h·w,) lists the flat positions in sequence order (all but ``scale``)."""
    kind: str
    size: int = 4
    k: int = 2

    def __post_init__(self):
        if self.kind not in ENTITIES:
            raise ValueError(f"unknown entity '{self.kind}': choose one of {', '.join(ENTITIES)}")
        if self.size % self.k:
            raise ValueError(f"the grid side {self.size} must be a multiple of k={self.k}")

    @property
    def scales(self) -> list[int]:
        """The sides of the scale entity's latents, coarse to fine: 1, 2, 4, …, size."""
        return [2 ** i for i in range(self.size.bit_length()) if 2 ** i <= self.size]

    @property
    def order(self) -> torch.Tensor:
        """(h·w,): the flat position (row·size + column) of each token, in sequence order."""
        s, k = self.size, self.k
        grid = torch.arange(s * s).reshape(s, s)
        if self.kind == "cell":  # (h k1) (w k2) -> (h w) (k1 k2): one k×k block after another
            return grid.reshape(s // k, k, s // k, k).permute(0, 2, 1, 3).reshape(-1)
        if self.kind == "subsample":  # (h d1) (w d2) -> (d1 d2) (h w): one stride-k offset after another
            return grid.reshape(s // k, k, s // k, k).permute(1, 3, 0, 2).reshape(-1)
        return grid.reshape(-1)  # token and image: raster order

    @property
    def entity(self) -> torch.Tensor:
        """(L,): the entity of each token."""
        s, k = self.size, self.k
        if self.kind == "token":
            return torch.arange(s * s)
        if self.kind in ("cell", "subsample"):
            return torch.arange(s * s) // (k * k)
        if self.kind == "scale":
            return torch.cat([torch.full((side * side,), n) for n, side in enumerate(self.scales)])
        return torch.zeros(s * s, dtype=torch.long)  # image

    @property
    def entities(self) -> int:
        """N, the number of autoregressive steps."""
        return int(self.entity.max()) + 1

    @property
    def length(self) -> int:
        """L, the tokens of a sequence."""
        return len(self.entity)

    @property
    def position(self) -> torch.Tensor:
        """(L,): a position-embedding index per token (the flat position; the scales' tokens each their own)."""
        return torch.arange(self.length) if self.kind == "scale" else self.order

    def to_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """The token sequence (B, L, C) of latents z (B, C, h, w)."""
        if self.kind == "scale":
            return torch.cat([F.interpolate(z, size=(side, side), mode="area").flatten(2) for side in self.scales],
                             dim=2).transpose(1, 2)
        return z.flatten(2).transpose(1, 2)[:, self.order.to(z.device)]

    def to_latent(self, tokens: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) of a token sequence (B, L, C): the inverse of ``to_tokens`` (for ``scale``
        the last, finest scale)."""
        B, _, C = tokens.shape
        s = self.size
        if self.kind == "scale":
            return tokens[:, -s * s:].transpose(1, 2).reshape(B, C, s, s)
        flat = torch.empty_like(tokens)
        flat[:, self.order.to(tokens.device)] = tokens
        return flat.transpose(1, 2).reshape(B, C, s, s)

    def partial_latent(self, tokens: torch.Tensor, entities: int) -> torch.Tensor:
        """Latents (B, C, h, w) of the first ``entities`` entities of ``tokens`` (B, L, C), the rest at the
        mean latent 0 — for ``scale``, the finest scale made so far, upsampled: the image after that step."""
        if entities <= 0:
            return torch.zeros(len(tokens), tokens.shape[2], self.size, self.size, dtype=tokens.dtype,
                               device=tokens.device)
        if self.kind == "scale":
            side = self.scales[entities - 1]
            start = sum(s * s for s in self.scales[:entities - 1])
            coarse = tokens[:, start:start + side * side].transpose(1, 2).reshape(len(tokens), -1, side, side)
            return F.interpolate(coarse, size=(self.size, self.size), mode="nearest")
        kept = (self.entity < entities).to(tokens.device)[None, :, None]
        return self.to_latent(torch.where(kept, tokens, torch.zeros_like(tokens)))

    def block_causal_mask(self) -> torch.Tensor:
        """(L, L) bool, True where query i may attend to key j: entity(j) ≤ entity(i) — bidirectional
        inside an entity, causal across entities."""
        e = self.entity
        return e[None, :] <= e[:, None]

    def teacher_forcing_mask(self) -> torch.Tensor:
        """(2L, 2L) bool for teacher forcing in one pass over [clean copy; noisy copy] of a sequence:
        a clean token sees the clean tokens of its own and earlier entities (as at sampling time, where
        the context is the model's clean output); a noisy token sees the clean tokens of *earlier*
        entities and the noisy tokens of its own entity — never a clean copy of what it predicts."""
        e = self.entity
        before, same = e[None, :] < e[:, None], e[None, :] == e[:, None]
        clean_rows = torch.cat([before | same, torch.zeros_like(same)], dim=1)
        noisy_rows = torch.cat([before, same], dim=1)
        return torch.cat([clean_rows, noisy_rows])
