"""Direct Preference Optimization for a masked token generator.

*Direct Preference Optimization* (Rafailov et al., arXiv 2305.18290) trains a policy π_θ from pairs of
a chosen image x⁺ and a rejected one x⁻ for the same caption c, against a frozen reference π_ref:

    L = − log σ(β [(log π_θ(x⁺|c) − log π_ref(x⁺|c)) − (log π_θ(x⁻|c) − log π_ref(x⁻|c))]),

the implicit reward of an image being r(x) = β (log π_θ(x|c) − log π_ref(x|c)). A masked generator has no
exact log π(x|c); as in the paper's released ``train_dpo.py`` it is estimated by masked training's
own quantity — mask positions with the cosine schedule and sum the log-probabilities of the true
tokens there, given the rest:

    log π(x|c) ≈ Σ_{i ∈ M} log p_θ(k_i | k_{∖M}, c).

The released code masks chosen and rejected *independently* (different shares and positions), which
adds noise to the margin; here both images of a pair share one mask M by default, and policy and
reference always see the same masked input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cotlab.masked_ar.model import MaskedAR, random_mask


def masked_logp(model: MaskedAR, tokens: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor,
                masked: torch.Tensor) -> torch.Tensor:
    """Σ_{i masked} log p(k_i | unmasked tokens, caption) for each row: (B,). tokens (B, N) are the
    image's codes, masked (B, N) True where the position is replaced by [MASK]."""
    logits = model(tokens.masked_fill(masked, model.mask_id), text, text_pad)  # (B, N, K)
    logp = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]  # (B, N): log p of the true token
    return (logp * masked).sum(-1)


def pair_masks(B: int, N: int, shared: bool = True, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The masks (B, N) of the chosen and the rejected images of B pairs: one draw for both
    (``shared``), or two independent ones as the released code does."""
    chosen = random_mask(B, N, device)
    return chosen, chosen if shared else random_mask(B, N, device)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss (module docstring), mean over pairs, from the four log-likelihoods (B,) each; and
    what to log: the reward margin r(x⁺) − r(x⁻) and the share of pairs it ranks right (implicit-reward
    accuracy)."""
    chosen = beta * (policy_chosen - reference_chosen)  # (B,) implicit rewards
    rejected = beta * (policy_rejected - reference_rejected)
    margin = chosen - rejected
    return -F.logsigmoid(margin).mean(), {"margin": margin.mean().detach(),
                                           "reward_accuracy": (margin > 0).float().mean()}
