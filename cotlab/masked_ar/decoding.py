"""Decoding a token transformer: MaskGIT's confidence-based parallel decoding, and raster order.

**MaskGIT decoding** (Chang et al., arXiv 2202.04200, §3.2) fills N tokens in T steps. Start with every
position masked; at step t = 1 … T:

1. predict logits at every position (with classifier-free guidance, ``cfg`` = w),
2. *sample* a token at each masked position from softmax(logits / τ_sample); committed tokens stay,
3. score each sampled token by its confidence log p, plus annealed Gumbel noise
   τ_choice · (1 − t/T) · g, g ~ Gumbel(0, 1) (a high choice temperature early explores, late it commits
   the sure tokens),
4. keep the n_t = ⌊γ(t/T) · N⌋ least confident of the newly sampled tokens masked (γ the cosine
   schedule of training), commit the rest. At t = T, n_T = 0: every position is filled.

The decoder returns the final tokens of step T (every token sampled and committed), not a re-masked
state. At each step the *intermediate image* — committed plus freshly sampled tokens, decoded — is
what Show-o shows and what the verifiers of notebook 06 judge.

**Raster decoding** samples k_1, k_2, … k_N one per forward pass, each conditioned on those before.

Both report their cost in transformer forward passes per image (two per step with guidance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from cotlab.masked_ar.model import MaskedAR, cosine_schedule


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


def gumbel(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Standard Gumbel noise −log(−log u), u ~ U(0, 1)."""
    u = torch.rand(shape, generator=generator, device=device).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


def mask_schedule(steps: int, N: int) -> list[int]:
    """n_t, the number of positions still masked after step t = 1 … T: ⌊γ(t/T) · N⌋, ending at 0,
    and at least one fewer each step, so every step commits a token."""
    counts, previous = [], N
    for t in range(1, steps + 1):
        n = int(math.floor(cosine_schedule(torch.tensor(t / steps)).item() * N))
        n = min(n, previous - 1) if previous > 0 else 0
        counts.append(max(n, 0))
        previous = counts[-1]
    return counts


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
    B = len(captions)
    tokens = torch.full((B, N), model.mask_id, dtype=torch.long, device=device)
    prefix = model.prefix(captions, cfg)
    record = []
    for t, n_masked in enumerate(mask_schedule(steps, N), start=1):
        masked = tokens == model.mask_id  # (B, N)
        logits = model.guided_logits(tokens, prefix, cfg) / sample_temperature  # (B, N, K)
        probs = logits.softmax(-1)
        sampled = torch.multinomial(probs.reshape(B * N, -1), 1, generator=g).reshape(B, N)
        sampled = torch.where(masked, sampled, tokens)  # committed tokens stay
        confidence = probs.gather(-1, sampled[..., None])[..., 0].clamp_min(1e-12).log()  # (B, N)
        confidence = confidence + choice_temperature * (1 - t / steps) * gumbel((B, N), g, device)
        confidence = confidence.masked_fill(~masked, math.inf)  # committed: never re-masked
        remask = torch.zeros_like(masked)
        if n_masked > 0:
            remask.scatter_(1, confidence.argsort(1)[:, :n_masked], True)  # the n least confident
        if keep_steps:
            record.append({"masked": remask.cpu(), "sampled": sampled.cpu(),
                           "image": model.decode_tokens(sampled).cpu()})
        tokens = sampled.masked_fill(remask, model.mask_id)
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
