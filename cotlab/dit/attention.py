"""Linear attention as SANA computes it (``LiteLA``; diffusers' ``SanaLinearAttnProcessor2_0``).

Softmax attention weighs value j for query i by exp(q_i·k_j/√d), normalised over j: every output
reads an N × N matrix, O(N²·d) time and (without a fused kernel) O(N²) memory. Linear attention
replaces the similarity by a product of feature maps φ(q_i)·φ(k_j), with φ = ReLU (no softmax, no
1/√d):

    O_i = Σ_j v_j (φ(k_j)·φ(q_i)) / (Σ_j φ(k_j)·φ(q_i) + ε)
        = (Σ_j v_j φ(k_j)ᵀ) φ(q_i) / ((Σ_j φ(k_j))·φ(q_i) + ε)

The sums over j do not depend on i: compute the d × d matrix S = Σ_j v_j φ(k_j)ᵀ and the d-vector
z = Σ_j φ(k_j) once, O(N·d²), then each output costs O(d²) — linear in N. SANA gets z for free by
padding each value with a 1: [v_j; 1] φ(k_j)ᵀ stacks S on top of zᵀ, and the last row of the output
is the normaliser. The sums run in fp32 ("necessary for NaN loss" in SANA's configs): N terms of
products of ReLU features overflow half precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-15) -> torch.Tensor:
    """ReLU linear attention (module docstring) of q, k, v (B, h, N, d) → (B, h, N, d), in O(N·d²),
    accumulated in fp32 and returned in q's dtype. ε = 1e-15 as diffusers (SANA's own code: 1e-8)."""
    dtype = q.dtype
    q, k, v = F.relu(q).float(), F.relu(k).float(), v.float()
    v = F.pad(v, (0, 1), value=1.0)  # (B, h, N, d+1): [v_j; 1], so the last column sums φ(k_j)
    state = k.transpose(-2, -1) @ v  # (B, h, d, d+1) = Σ_j φ(k_j) [v_j; 1]ᵀ, the N-independent summary
    out = q @ state  # (B, h, N, d+1): numerators, then the normaliser φ(q_i)·Σ_j φ(k_j)
    return (out[..., :-1] / (out[..., -1:] + eps)).to(dtype)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ/√d) v for q, k, v (B, h, N, d): PyTorch's fused ``scaled_dot_product_attention``."""
    return F.scaled_dot_product_attention(q, k, v)
