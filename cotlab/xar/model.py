"""xAR: next-X prediction with flow matching per autoregressive step, and noisy context learning.

*Beyond Next-Token: Next-X Prediction for Autoregressive Visual Generation* (arXiv 2502.20388) at toy
size, on ``dcae_f8`` latents (4×4 positions × 32 channels). The latent is cut into N entities
(``cotlab.xar.entities``: token, cell, subsample, scale or the whole image) and a transformer
predicts them one after another. Its attention is **block-causal**: bidirectional inside an entity,
causal across entities. Each entity is predicted not as a token distribution but by **flow matching**
(``cotlab.flow``, diffusers' convention, σ = 1 noise):

    F_n = (1 − t_n)·X_n + t_n·ε_n          entity n at its own time t_n ~ logit-normal
    L   = Σ_n ‖v_θ(F_1 … F_n, t_n, c) − (ε_n − X_n)‖²

Every token is modulated (adaLN) by the embedding of *its own entity's* time, plus the pooled caption;
the caption's token states also enter by cross-attention, and are dropped (the empty caption) with
probability ``p_uncond`` for classifier-free guidance.

**Noisy context learning** (``noisy_context=True``, xAR's choice): every entity, context included, is
noised at its own independent t_n, and all N entities are trained in one pass — so the model learns
to predict entity n from a *corrupted* past, and at sampling time (clean context: its own outputs, at
t = 0) it is not thrown by its own mistakes. **Teacher forcing** (``noisy_context=False``): the
context is the clean ground truth; done in one pass over [clean copy; noisy copy] of the sequence with
``Layout.teacher_forcing_mask`` (twice the tokens per pass). At sampling time the context is the
model's own output, which it never saw in training: exposure bias.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding

from cotlab.flow import flow_loss, interpolate, logit_normal_sigmas, timestep_embedding
from cotlab.latents import LatentGenerator
from cotlab.profiles import ProfileConfig
from cotlab.xar.entities import Layout

TIME_FEATURES = 256  # sinusoidal features of t before the time MLP (DiT's frequency_embedding_size)


@dataclass
class XARConfig(ProfileConfig):
    """Sizes and training of a next-X model; the defaults are the ``cpu`` profile of ``xar`` (cell, NCL)."""
    autoencoder: str = "dcae_f8"  # checkpoint whose latents are generated
    text_encoder: str = "clip"  # checkpoint of the ShapesCLIP whose text tower conditions
    entity: str = "cell"  # token | cell | subsample | scale | image (cotlab.xar.entities)
    noisy_context: bool = True  # noisy context learning; False: teacher forcing (clean context)
    width: int = 192
    layers: int = 6
    heads: int = 6
    mlp_ratio: int = 4
    p_uncond: float = 0.1  # caption dropout, for classifier-free guidance
    cache_scenes: int = 65536  # training scenes encoded once (cotlab.latents.CachedLatents)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_steps: int = 2600
    max_minutes: float | None = 20.0  # the wall-time budget; the cosine schedule is laid over max_steps
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, layers=1, heads=2, cache_scenes=256, batch_size=16, warmup_steps=2, max_steps=8,
                      max_minutes=1.0),
        "gpu": dict(width=768, layers=16, heads=12, cache_scenes=1_000_000, batch_size=1024, lr=4e-4,
                    warmup_steps=2000, max_steps=100_000, max_minutes=240.0),
    }

    def __post_init__(self):
        Layout(self.entity)  # an unknown entity fails here, with the choices
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads={self.heads}")


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x·(1 + scale) + shift, all (B, L, D): per token, so each entity gets its own time's."""
    return x * (1 + scale) + shift


class XARBlock(nn.Module):
    """One transformer block: self-attention under the block-causal mask (written out, for its KV
    cache), cross-attention to the caption (diffusers' ``Attention``), an MLP (diffusers'
    ``FeedForward``); self-attention and MLP modulated per token by adaLN-Zero."""

    def __init__(self, width: int, heads: int, text_width: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.cross = Attention(query_dim=width, cross_attention_dim=text_width, heads=heads, dim_head=width // heads,
                               bias=True)
        self.norm3 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(width, mult=mlp_ratio, activation_fn="gelu-approximate")
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight), nn.init.zeros_(self.ada[1].bias)  # every block starts as the identity

    def forward(self, x: torch.Tensor, c: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor,
                mask: torch.Tensor | None, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, L, D) tokens, c (B, L, D) their conditioning, text (B, T, D_text), text_bias (B, 1, T)
        (0 or −10⁴), mask (L, L_cache + L) bool or None (all visible), cache the keys and values
        (B, H, L_cache, D/H) of earlier tokens. Returns (x, (keys, values) of cache + these tokens)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # (B, L, D) each
        B, L, D = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), shift1, scale1)).view(B, L, 3, self.heads, D // self.heads
                                                                         ).permute(2, 0, 3, 1, 4)  # (B, H, L, D/H)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, H, L_cache + L, D/H)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D/H)
        x = x + gate1 * self.proj(attended.transpose(1, 2).reshape(B, L, D))
        x = x + self.cross(self.norm2(x), encoder_hidden_states=text, attention_mask=text_bias)
        x = x + gate2 * self.mlp(modulate(self.norm3(x), shift2, scale2))
        return x, (k, v)


class XAR(LatentGenerator):
    """A next-X generator: a block-causal transformer that predicts each entity of a DC-AE latent by
    flow matching, conditioned on the CLIP text encoder (module docstring)."""

    Config = XARConfig

    def __init__(self, config: XARConfig):
        super().__init__(config)
        c = config
        self.layout = Layout(c.entity, size=self.latent_size)
        self.register_buffer("positions", self.layout.position, persistent=False)  # (L,)
        self.register_buffer("entity_of", self.layout.entity, persistent=False)  # (L,)
        self.embed = nn.Linear(self.latent_channels, c.width)
        self.position_embedding = nn.Parameter(torch.zeros(self.layout.length, c.width))
        nn.init.normal_(self.position_embedding, std=0.02)
        self.time = TimestepEmbedding(TIME_FEATURES, c.width)
        self.pooled_text = nn.Linear(self.text_width, c.width)
        self.blocks = nn.ModuleList(XARBlock(c.width, c.heads, self.text_width, c.mlp_ratio) for _ in range(c.layers))
        self.norm_out = nn.LayerNorm(c.width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(c.width, 2 * c.width))
        self.out = nn.Linear(c.width, self.latent_channels)
        for layer in (self.ada_out[1], self.out):  # the untrained model predicts v = 0
            nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)

    # --- the transformer -----------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, times: torch.Tensor, positions: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor, mask: torch.Tensor | None = None, cache: list | None = None):
        """Velocities (B, L, C) of the tokens (B, L, C) at their times (B, L), with position-embedding
        indices (L,), text states (B, T, D_text) and mask (B, T), under the attention ``mask`` (L,
        L_cache + L) bool (None: every key visible) after the per-layer ``cache`` of earlier tokens.
        Returns (velocities, the per-layer (keys, values) of cache + these tokens)."""
        c = self.time(timestep_embedding(times.reshape(-1), TIME_FEATURES).to(tokens.dtype)).view(*times.shape, -1)
        weights = text_mask.to(text.dtype).unsqueeze(-1)  # (B, T, 1)
        pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D_text)
        c = c + self.pooled_text(pooled)[:, None]  # (B, L, D)
        text_bias = ((1 - text_mask.to(text.dtype)) * -10000.0)[:, None]  # (B, 1, T)
        x = self.embed(tokens) + self.position_embedding[positions]  # (B, L, D)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, c, text, text_bias, mask, None if cache is None else cache[i])
            new_cache.append(kv)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm_out(x), shift, scale)), new_cache

    def paths(self, captions: list[str], seeds=0, steps: int = 20, cfg: float = 5.0, solver: str = "sde"):
        """Sampling paths for ``captions``, one seed each (``cotlab.sampling``): one AR step per entity,
        each ``steps`` flow steps of ``solver`` ("sde": Euler–Maruyama, xAR's; "euler": the ODE), guided
        by a weight ramped from 1 at the first entity to ``cfg`` at the last. The defaults were chosen
        on *training* prompts (150 of the caption grammar × 2): CFG 3, 5, 7 × both solvers scored from
        0.533 [0.47, 0.60] (ODE, CFG 3) to 0.593 [0.54, 0.64] (ODE, CFG 7) with the shipped ``xar``; the
        SDE at 5, 0.590 [0.53, 0.65], was among the best (overlapping intervals: a choice, not a win)."""
        from cotlab.xar.decoding import XARPaths

        return XARPaths(self, captions, seeds, steps, cfg, solver)

    # --- training ------------------------------------------------------------------------------
    def empty_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty caption's states (1, T, D_text) and mask (1, T): the unconditional input."""
        if not hasattr(self, "_empty_text"):
            self._empty_text = self.encode_text([""])
        return tuple(t.to(self.device) for t in self._empty_text)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Flow matching on every entity at once, with noisy or clean context (module docstring)."""
        x0 = self.layout.to_tokens(batch["latent"])  # (B, L, C)
        text, text_mask = batch["text"], batch["text_mask"]  # (B, T, D_text), (B, T)
        B, L, _ = x0.shape
        drop = torch.rand(B, device=self.device) < self.config.p_uncond  # caption dropout
        empty, empty_mask = self.empty_text()
        text = torch.where(drop[:, None, None], empty, text)
        text_mask = torch.where(drop[:, None], empty_mask, text_mask)
        t = logit_normal_sigmas(B * self.layout.entities, device=self.device).view(B, -1)[:, self.entity_of]  # (B, L)
        noise = torch.randn_like(x0)
        noisy = interpolate(x0.flatten(0, 1), noise.flatten(0, 1), t.flatten()).view_as(x0)  # (B, L, C)
        if self.config.noisy_context:
            mask = self.layout.block_causal_mask().to(self.device)
            v, _ = self(noisy, t, self.positions, text, text_mask, mask)
        else:  # [clean; noisy]: the noisy copy's entities see the clean copy's earlier ones
            mask = self.layout.teacher_forcing_mask().to(self.device)
            v, _ = self(torch.cat([x0, noisy], 1), torch.cat([torch.zeros_like(t), t], 1),
                        self.positions.repeat(2), text, text_mask, mask)
            v = v[:, L:]
        return flow_loss(v, x0, noise), {}
