"""SANA 1.5's training-time scaling: grow a trained model deeper, or prune the blocks that matter least.

*SANA 1.5: Efficient Scaling of Training-Time and Inference-Time Compute* (arXiv 2501.18427).

**Depth growth** ("partial preservation init"; the released ``ModelGrowthInitializer.init_constant``):
the deep model keeps the shallow one's embeddings, output layer and its L blocks, and appends new
blocks whose three output projections — self-attention's, cross-attention's and the Mix-FFN's last
1×1 convolution — are zero. Each block adds its branches to the residual stream,

    x ← x + gate₁·W_o·LinearAttention(…) + W_o'·CrossAttention(…) + gate₂·W_point·MixFFN(…),

so with W_o = W_o' = W_point = 0 (and their biases 0) a new block is the exact identity: the grown model
computes what the shallow one did, and training starts from there rather than from noise.

**Block importance** (ShortGPT-style; SANA 1.5 §3 prunes its 4.8B model with it): a block that barely
turns its input matters little,

    BI_i = 1 − E_{x, σ, token}[ cos(X_i, X_{i+1}) ],

X_i the hidden states entering block i and X_{i+1} those leaving it, averaged over tokens, a
calibration set of captioned images and the noise levels σ. Pruning keeps the blocks of highest BI, in
their order, and a short fine-tune heals the rest.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from cotlab.dit.model import SanaDiT
from cotlab.flow import interpolate


def with_blocks(model: SanaDiT, blocks: list[int | None]) -> SanaDiT:
    """A new model whose i-th block is a copy of ``model``'s block ``blocks[i]`` (None: a new block, an
    exact identity), with every other weight copied; frozen parts are shared."""
    new = SanaDiT(replace(model.config, layers=len(blocks))).to(model.device)
    source = model.transformer.state_dict()
    new.transformer.load_state_dict({k: v for k, v in source.items() if not k.startswith("transformer_blocks.")},
                                    strict=False)
    for i, j in enumerate(blocks):
        block = new.transformer.transformer_blocks[i]
        if j is None:
            zero_output(block)
        else:
            block.load_state_dict(model.transformer.transformer_blocks[j].state_dict())
    for field in ("autoencoder", "text_encoder"):
        new.set_frozen(field, model.frozen(field))
    return new


@torch.no_grad()
def zero_output(block: torch.nn.Module) -> None:
    """Zero a SANA block's three output projections (and their biases): the block becomes the identity."""
    for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.conv_point):
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def grow(model: SanaDiT, layers: int) -> SanaDiT:
    """``model`` grown to ``layers`` blocks: its own blocks, then identity blocks (module docstring)."""
    L = model.config.layers
    if layers <= L:
        raise ValueError(f"growing needs more than the model's {L} blocks, got {layers}")
    return with_blocks(model, list(range(L)) + [None] * (layers - L))


@torch.no_grad()
def block_importance(model: SanaDiT, images: torch.Tensor, captions: list[str],
                     sigmas: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9), seed: int = 0) -> torch.Tensor:
    """BI_i (L,) of every block (module docstring) over a calibration set of images (B, 3, H, W) in
    [0, 1] with their captions, noised to each σ in ``sigmas`` with seeded noise."""
    blocks = model.transformer.transformer_blocks
    similarity = torch.zeros(len(blocks))
    inputs: dict[int, torch.Tensor] = {}

    def keep_input(i):
        return lambda module, args: inputs.__setitem__(i, args[0])

    def compare(i):
        def hook(module, args, output):  # cos over the width, per token, averaged: (B, N, D) → scalar
            similarity[i] += F.cosine_similarity(inputs[i], output, dim=-1).mean().item() / len(sigmas)
        return hook

    handles = [h for i, b in enumerate(blocks)
               for h in (b.register_forward_pre_hook(keep_input(i)), b.register_forward_hook(compare(i)))]
    try:
        z = model.encode_images(images)  # (B, C, h, w)
        text, mask = model.encode_text(captions)
        generator = torch.Generator().manual_seed(seed)
        for sigma in sigmas:
            noise = torch.randn(z.shape, generator=generator).to(z)
            s = torch.full((len(z),), sigma, device=z.device)
            model(interpolate(z, noise, s), s, text, mask)
    finally:
        for h in handles:
            h.remove()
    return 1 - similarity


def prune(model: SanaDiT, importance: torch.Tensor, keep: int) -> SanaDiT:
    """``model`` with only its ``keep`` blocks of highest importance (L,), in their original order."""
    kept = sorted(importance.topk(keep).indices.tolist())
    return with_blocks(model, kept)
