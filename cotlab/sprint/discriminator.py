"""LADD's discriminator: light heads on a frozen teacher's features (SANA-Sprint, after LADD, arXiv 2403.12015).

The discriminator does not look at pixels or latents itself. It re-uses the frozen teacher: a latent
is re-noised to a TrigFlow time θ_D, the teacher runs on it with its caption, and the hidden states
of a few of its blocks (B, N, D) — features that already know the caption and the noise level — go
to one small head each, which gives a logit per token. The heads are StyleGAN-T's (arXiv 2301.09515):
spectral-normalised 1-D convolutions over the token sequence, a local batch norm, LeakyReLU(0.2).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from cotlab.flow import trigflow_to_flow


class LocalBatchNorm(nn.Module):
    """Batch norm over virtual batches of ``group`` samples (StyleGAN-T's BatchNormLocal): each channel
    is normalised by the mean and variance over the group's samples and tokens, with no running
    statistics — a sample's logit depends on a few others, not on the whole batch."""

    def __init__(self, channels: int, group: int = 8, eps: float = 1e-5):
        super().__init__()
        self.group, self.eps = group, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C, N)
        B = len(x)
        groups = B // self.group if B % self.group == 0 else 1
        x = x.reshape(groups, -1, *x.shape[1:])  # (G, B/G, C, N)
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = x.var(dim=(1, 3), keepdim=True, unbiased=False)
        x = ((x - mean) / torch.sqrt(var + self.eps)).reshape(B, *x.shape[2:])
        return x * self.weight[:, None] + self.bias[:, None]


class DiscriminatorHead(nn.Module):
    """Per-token logits (B, N) of teacher features (B, D, N): 1×1 conv → norm → LeakyReLU, then a
    residual block with a kernel-9 circular conv over the tokens, then a 1×1 conv to one channel."""

    def __init__(self, channels: int, kernel: int = 9):
        super().__init__()
        self.inner = nn.Sequential(spectral_norm(nn.Conv1d(channels, channels, 1)), LocalBatchNorm(channels),
                                   nn.LeakyReLU(0.2))
        self.residual = nn.Sequential(
            spectral_norm(nn.Conv1d(channels, channels, kernel, padding=kernel // 2, padding_mode="circular")),
            LocalBatchNorm(channels), nn.LeakyReLU(0.2))
        self.out = spectral_norm(nn.Conv1d(channels, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.inner(features)  # (B, D, N)
        h = (h + self.residual(h)) / math.sqrt(2)
        return self.out(h)[:, 0]  # (B, N)


class Discriminator(nn.Module):
    """Heads on the hidden states of the teacher's blocks ``blocks``; the teacher is passed in (frozen,
    not part of this module). ``forward`` gives (B, len(blocks)·N) logits."""

    def __init__(self, width: int, blocks: tuple[int, ...]):
        super().__init__()
        self.width, self.blocks = width, tuple(blocks)
        self.heads = nn.ModuleList(DiscriminatorHead(width) for _ in self.blocks)

    def forward(self, teacher, x_theta: torch.Tensor, theta: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        """Logits for latents x_θ (B, C, h, w) (unit scale) at TrigFlow times θ (B,) with their captions'
        states (B, T, D_text), mask (B, T). Gradients flow to x_θ through the frozen teacher."""
        features = []
        blocks = teacher.transformer.transformer_blocks
        hooks = [blocks[i].register_forward_hook(lambda module, args, out: features.append(out))
                 for i in self.blocks]
        try:
            teacher(*trigflow_to_flow(x_theta, theta), text, text_mask)  # the teacher at x_θ's point of its flow path
        finally:
            for hook in hooks:
                hook.remove()
        return torch.cat([head(h.transpose(1, 2)) for head, h in zip(self.heads, features)], dim=1)

    def __reduce__(self):
        """Pickled as its sizes and tensors: spectral norm's convolutions cannot be pickled themselves,
        and ``ddp_spawn`` pickles the model it sends to each process."""
        return _unpickled, (self.width, self.blocks, self.training, self.state_dict(keep_vars=True))


def _unpickled(width: int, blocks: tuple[int, ...], training: bool, state: dict) -> Discriminator:
    """The pickled ``Discriminator`` again, holding the pickled tensors (built on the meta device:
    no memory and no random draws for weights that are replaced at once)."""
    with torch.device("meta"):
        discriminator = Discriminator(width, blocks)
    discriminator.load_state_dict(state, assign=True)
    return discriminator.train(training)
