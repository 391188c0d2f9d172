"""Decoding a token transformer: MaskGIT's confidence-based parallel decoding, and raster order.

**MaskGIT decoding** (Chang et al., arXiv 2202.04200, §3.2) fills N tokens in T steps. Start with every
position masked; at step t = 1 … T:

1. predict logits at every position (with classifier-free guidance, ``cfg`` = w),
2. *sample* a token at each masked position from softmax(logits / τ_sample); committed tokens stay,
3. score each sampled token by its confidence log p plus annealed Gumbel noise τ_t · g,
   g ~ Gumbel(0, 1), τ_t falling linearly from ``choice_temperature`` at t = 1 to 0 at t = T (a high
   choice temperature early explores, late it commits the sure tokens),
4. keep the n_t least confident of the newly sampled tokens masked and commit the rest, with
   n_t = max(1, min(n_{t−1} − 1, ⌊γ(t/T) · N⌋)) for t < T (γ the cosine schedule of training; at
   least one token committed and one kept back per step) and n_T = 0: every position is filled.

Steps 2–4 are one ``step`` of diffusers' ``AmusedScheduler`` (the scheduler of aMUSEd, arXiv
2401.01808, an open MUSE), used as it is; ``mask_schedule`` states its n_t. The decoder returns the
final tokens of step T (every token sampled and committed), not a re-masked state. At each step the
*intermediate image* — committed plus freshly sampled tokens, decoded — is what Show-o shows and what
the verifiers of notebook 06 judge.

**Raster decoding** samples k_1, k_2, … k_N one per forward pass, each conditioned on those before.

Both report their cost in transformer forward passes per image (two per step with guidance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from diffusers import AmusedScheduler

from cotlab.masked_ar.model import MaskedAR


@dataclass
class DecodeResult:
    """What a decoding run made: ``tokens`` (B, N), their ``images`` (B, 3, H, W) in [0, 1], the
    ``forward_passes`` per image, and per step (when asked) ``steps``: a list of dicts with
    ``masked`` (B, N) bool — still masked *after* the step —, ``sampled`` (B, N) — committed plus
    sampled tokens — and ``image`` (B, 3, H, W), the decoded intermediate."""
    tokens: torch.Tensor
    images: torch.Tensor
    forward_passes: int
    steps: list[dict] = field(default_factory=list)


def mask_schedule(steps: int, N: int) -> list[int]:
    """n_t, the number of positions still masked after step t = 1 … T, as ``AmusedScheduler`` counts
    them: max(1, min(n_{t−1} − 1, ⌊γ(t/T) · N⌋)) before the last step, then 0."""
    counts, previous = [], N
    for t in range(1, steps):
        previous = max(1, min(previous - 1, math.floor(N * math.cos(math.pi / 2 * t / steps))))
        counts.append(previous)
    return counts + [0]


@torch.no_grad()
def maskgit_decode(model: MaskedAR, captions: list[str], steps: int = 8, cfg: float = 3.0,
                   sample_temperature: float = 1.0, choice_temperature: float = 4.5, seed: int = 0,
                   keep_steps: bool = False) -> DecodeResult:
    """Generate one image per caption by MaskGIT decoding in ``steps`` steps (see the module docstring)."""
    if model.config.order != "masked":
        raise ValueError("maskgit_decode needs a model trained with order='masked'; use raster_decode")
    N, device = model.num_tokens, model.device
    if not 1 <= steps <= N:
        raise ValueError(f"steps must be between 1 and the {N} tokens of an image, got {steps}")
    g = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.full((len(captions), N), model.mask_id, dtype=torch.long, device=device)  # (B, N)
    prefix = model.prefix(captions, cfg)
    scheduler = AmusedScheduler(mask_token_id=model.mask_id, masking_schedule="cosine")
    scheduler.set_timesteps(steps, temperature=(choice_temperature, 0.0), device=device)
    record = []
    for t in scheduler.timesteps:  # T − 1 … 0
        logits = model.guided_logits(tokens, prefix, cfg) / sample_temperature  # (B, N, K)
        out = scheduler.step(logits, t, tokens, generator=g)
        if keep_steps:
            record.append({"masked": (out.prev_sample == model.mask_id).cpu(),
                           "sampled": out.pred_original_sample.cpu(),
                           "image": model.decode_tokens(out.pred_original_sample).cpu()})
        tokens = out.prev_sample  # (B, N): committed tokens, [MASK] elsewhere
    passes = steps * (1 if cfg == 1.0 else 2)
    return DecodeResult(tokens, model.decode_tokens(tokens).cpu(), passes, record)


@torch.no_grad()
def raster_decode(model: MaskedAR, captions: list[str], cfg: float = 3.0, temperature: float = 1.0,
                  seed: int = 0) -> DecodeResult:
    """Generate one image per caption token by token in raster order (N forward passes)."""
    if model.config.order != "raster":
        raise ValueError("raster_decode needs a model trained with order='raster'; use maskgit_decode")
    N, device = model.num_tokens, model.device
    g = torch.Generator(device=device).manual_seed(seed)
    B = len(captions)
    prefix = model.prefix(captions, cfg)
    tokens = torch.full((B, N), model.mask_id, dtype=torch.long, device=device)  # [START] k_1 … k_N
    tokens = torch.cat([tokens[:, :1], tokens], dim=1)  # (B, N + 1)
    for i in range(N):
        logits = model.guided_logits(tokens[:, :N], prefix, cfg)[:, i] / temperature  # (B, K)
        tokens[:, i + 1] = torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0]
    tokens = tokens[:, 1:]
    passes = N * (1 if cfg == 1.0 else 2)
    return DecodeResult(tokens, model.decode_tokens(tokens).cpu(), passes)
