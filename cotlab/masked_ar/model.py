"""A text-conditioned transformer over image tokens: masked (MaskGIT) or raster-order (AR) training.

*MaskGIT: Masked Generative Image Transformer* (Chang et al., arXiv 2202.04200), with text conditioning
as in MUSE (arXiv 2301.00704) and Show-o (arXiv 2408.12528). An image is N tokens k_1 … k_N of a frozen
tokenizer (``vq_f8``: 16 tokens of K = 256 codes, one per grid cell); a caption c is the per-token
hidden states of the frozen text encoder of notebook 00, projected to the transformer's width and put
in front of the image tokens as a prefix.

**Masked training.** Draw r ~ U(0, 1), mask n = ⌈γ(r)·N⌉ random positions with the cosine schedule
γ(r) = cos(π r / 2), replace them by [MASK], and predict them with a bidirectional transformer:

    L = − Σ_{i masked} log p_θ(k_i | k_unmasked, c)        (loss on masked positions only)

**Raster training** (the baseline): the same transformer with a causal mask over the image positions,
input [START], k_1 … k_{N−1}, and L = − Σ_i log p_θ(k_i | k_<i, c).

**Caption dropout.** With probability ``p_uncond`` the caption is replaced by the empty one, so the same
model also learns p(k) and decoding can use classifier-free guidance,
logits = ℓ(∅) + w · (ℓ(c) − ℓ(∅)). Decoding lives in ``cotlab.masked_ar.decoding``; ``MaskedAR.paths``
offers it to every search as ``cotlab.sampling.Paths``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cotlab.harness import Model, checkpoint_config
from cotlab.masked_ar.decoding import MaskGITPaths, RasterPaths
from cotlab.profiles import ProfileConfig

ORDERS = ("masked", "raster")


@dataclass
class MaskedARConfig(ProfileConfig):
    """Sizes and training of the token transformer; the defaults are the ``cpu`` profile of ``maskgit``."""
    tokenizer: str = "vq_f8"  # checkpoint (name or folder) whose tokens are generated
    text_encoder: str = "clip"  # checkpoint of the ShapesCLIP whose text tower conditions
    order: str = "masked"  # "masked" (MaskGIT, bidirectional) or "raster" (causal, next token)
    width: int = 192  # D
    layers: int = 4
    heads: int = 4
    p_uncond: float = 0.1  # caption dropout, for classifier-free guidance
    label_smoothing: float = 0.1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    max_steps: int = 4000
    max_minutes: float | None = 28.0  # a cap on wall time; max_steps should end first
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, layers=1, heads=2, batch_size=16, warmup_steps=2, max_steps=8, max_minutes=1.0),
        "gpu": dict(width=512, layers=12, heads=8, batch_size=512, lr=5e-4, warmup_steps=1000,
                    max_steps=50_000, max_minutes=120.0),
    }

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"unknown order {self.order!r}: choose 'masked' (MaskGIT) or 'raster' (AR)")


def cosine_schedule(r: torch.Tensor) -> torch.Tensor:
    """γ(r) = cos(π r / 2): the share of tokens masked at r ∈ [0, 1] (all at 0, none at 1)."""
    return torch.cos(math.pi / 2 * r)


def random_mask(B: int, N: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Masked training's mask (B, N), True = masked: r ~ U(0, 1) per row, then n = ⌈γ(r)·N⌉ ≥ 1
    positions in a random order."""
    n_masked = torch.ceil(cosine_schedule(torch.rand(B, device=device)) * N).clamp(min=1)  # (B,)
    ranks = torch.rand(B, N, device=device).argsort(1).argsort(1)  # a random order of positions
    return ranks < n_masked[:, None]  # (B, N): the first n in that order


class MaskedAR(Model):
    """A text-conditioned token transformer (MaskGIT when ``order='masked'``, raster AR when 'raster').
    Its tokenizer and text encoder are frozen parts (``frozen("tokenizer")``, ``frozen("text_encoder")``)."""

    Config = MaskedARConfig
    PROGRESS = ("accuracy",)
    BETAS = (0.9, 0.98)

    def __init__(self, config: MaskedARConfig):
        super().__init__(config)
        c = config
        tokenizer_config = self._tokenizer_facts()
        self.codebook_size, self.num_tokens, self.text_width, self.text_length = tokenizer_config
        self.mask_id = self.codebook_size  # [MASK], and [START] for raster order
        D = c.width
        self.token_embedding = nn.Embedding(self.codebook_size + 1, D)
        self.image_position = nn.Parameter(torch.zeros(1, self.num_tokens, D))
        self.text_projection = nn.Linear(self.text_width, D)
        self.text_position = nn.Parameter(torch.zeros(1, self.text_length, D))
        nn.init.normal_(self.image_position, std=0.02)
        nn.init.normal_(self.text_position, std=0.02)
        layer = nn.TransformerEncoderLayer(D, c.heads, 4 * D, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, self.codebook_size)

    # --- the frozen parts ----------------------------------------------------------------------
    def _tokenizer_facts(self) -> tuple[int, int, int, int]:
        """(K, N, text width, text length) from the checkpoints' configs, without loading weights."""
        tokenizer = checkpoint_config(self.config.tokenizer)
        text = checkpoint_config(self.config.text_encoder)
        side = tokenizer["image_size"] // 2 ** (len(tokenizer["block_out_channels"]) - 1)
        return tokenizer["codebook_size"], side * side, text["width"], text["max_length"]

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Token indices (B, N) of images (B, 3, H, W) in [0, 1]."""
        return self.frozen("tokenizer").encode_indices(images.to(self.device))

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] of token indices (B, N)."""
        return self.frozen("tokenizer").decode_indices(tokens.to(self.device))

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The caption prefix: per-token text states (B, T, D_text) and padding mask (B, T), True = pad."""
        _, hidden, mask = self.frozen("text_encoder").encode_text(list(captions))
        return hidden, mask == 0

    # --- the transformer ---------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, K) over the codes at every image position (see ``hidden``)."""
        return self.head(self.hidden(tokens, text, text_pad))

    def hidden(self, tokens: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor) -> torch.Tensor:
        """The final hidden states (B, N, D) at the image positions, after the last layer norm.

        tokens (B, N) in [0, K] (K = [MASK], or [START] at position 0 in raster order, where the
        input is shifted right by one); text (B, T, D_text) and text_pad (B, T) from ``encode_text``.
        The caption prefix sees only itself; image positions see the prefix and — masked order —
        every image position, or — raster order — those up to their own.
        """
        B, N = tokens.shape
        T = text.shape[1]
        x = torch.cat([self.text_projection(text) + self.text_position[:, :T],
                       self.token_embedding(tokens) + self.image_position[:, :N]], dim=1)  # (B, T+N, D)
        blocked = torch.zeros(T + N, T + N, dtype=torch.bool, device=x.device)  # True: may not attend
        blocked[:T, T:] = True  # the prefix does not read the image
        if self.config.order == "raster":
            blocked[T:, T:] = torch.ones(N, N, dtype=torch.bool, device=x.device).triu(1)
        pad = torch.cat([text_pad, torch.zeros(B, N, dtype=torch.bool, device=x.device)], dim=1)  # (B, T+N)
        h = self.transformer(x, mask=blocked, src_key_padding_mask=pad)  # (B, T+N, D)
        return self.norm(h[:, T:])  # (B, N, D)

    def prefix(self, captions: list[str], cfg: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The text prefix for decoding, computed once: the captions' states, followed by as many
        empty captions when guidance is on (cfg ≠ 1)."""
        captions = list(captions)
        return self.encode_text(captions if cfg == 1.0 else captions + [""] * len(captions))

    def guided_logits(self, tokens: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor],
                      cfg: float = 1.0) -> torch.Tensor:
        """Logits (B, N, K) with classifier-free guidance ℓ(∅) + w·(ℓ(c) − ℓ(∅)); w = 1 is plain
        conditioning (one forward pass), w ≠ 1 costs two (batched as one of 2B)."""
        if cfg == 1.0:
            return self(tokens, *prefix)
        cond, uncond = self(tokens.repeat(2, 1), *prefix).chunk(2)
        return uncond + cfg * (cond - uncond)

    def paths(self, captions: list[str], seeds=0, steps: int = 8, cfg: float = 3.0, sample_temperature: float = 1.0,
              choice_temperature: float = 4.5):
        """Decoding paths for ``captions``, one seed each (``cotlab.sampling``): MaskGIT in ``steps``
        steps for a masked model, token by token for a raster one (which takes N steps and has no
        choice temperature)."""
        if self.config.order == "masked":
            return MaskGITPaths(self, captions, seeds, steps, cfg, sample_temperature, choice_temperature)
        return RasterPaths(self, captions, seeds, cfg, sample_temperature)

    # --- training ------------------------------------------------------------------------------
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The training loss of a batch (see the module docstring) and what to log."""
        k, captions = self.encode_images(batch["image"]), batch["caption"]  # (B, N) targets
        B, N = k.shape
        captions = ["" if u < self.config.p_uncond else c
                    for c, u in zip(captions, torch.rand(B).tolist())]  # caption dropout
        text, pad = self.encode_text(captions)
        if self.config.order == "masked":
            masked = random_mask(B, N, self.device)  # (B, N)
            inputs = k.masked_fill(masked, self.mask_id)
        else:
            masked = torch.ones_like(k, dtype=torch.bool)  # every position is predicted
            inputs = torch.cat([torch.full_like(k[:, :1], self.mask_id), k[:, :-1]], dim=1)  # [START] k_1 …
        logits = self(inputs, text, pad)  # (B, N, K)
        loss = F.cross_entropy(logits[masked], k[masked], label_smoothing=self.config.label_smoothing)
        accuracy = (logits[masked].argmax(-1) == k[masked]).float().mean()
        return loss, {"accuracy": accuracy, "masked_share": masked.float().mean()}

    def parameter_groups(self) -> list[dict]:
        """No weight decay on embeddings, positions, norms and biases."""
        def decays(name: str, p: torch.Tensor) -> bool:
            return p.ndim >= 2 and "embedding" not in name and "position" not in name

        named = list(self.named_parameters())
        return [{"params": [p for n, p in named if decays(n, p)], "weight_decay": self.config.weight_decay},
                {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}]
