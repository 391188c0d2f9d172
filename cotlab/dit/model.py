"""A SANA text-to-image model: diffusers' ``SanaTransformer2DModel`` trained by flow matching on DC-AE latents.

*SANA: Efficient High-Resolution Image Synthesis with Linear Diffusion Transformers* (arXiv
2410.10629) at toy size. An image x (3, 32, 32) is the latent z = E(x)·s of a frozen deep-compression
autoencoder (notebook 01: ``dcae_f8`` gives z (32, 4, 4), ``dcae_f4`` (8, 8, 8); s its scaling
factor, so z has unit variance). Each latent position is one token (patch size 1), and the
transformer's blocks are SANA's:

    x = x + gate₁ · LinearAttention(adaLN(x))     ReLU linear attention, O(N·d²) (``cotlab.dit.attention``)
    x = x + CrossAttention(x, text)                softmax attention to the caption's token states
    x = x + gate₂ · MixFFN(adaLN(x))               1×1 conv → 3×3 depthwise conv → GLU → 1×1 conv

with no positional embedding (the depthwise convolution tells tokens where they are) and adaLN-single
(one timestep MLP shared by every block, plus a learned per-block table). The caption is the
notebook-00 text encoder's per-token states; with probability ``p_uncond`` it is replaced by the empty
caption, so one model also learns the unconditional velocity for classifier-free guidance.

**Flow matching** (``cotlab.flow``): x_σ = (1 − σ)·z + σ·ε, target v = ε − z, plain MSE, with σ drawn
logit-normally and shifted towards noise by SANA's training shift. Sampling integrates dx/dσ = v from
σ = 1 to 0 with flow Euler or Flow-DPM-Solver (``cotlab.dit.decoding``), guided by
v = v(∅) + w·(v(c) − v(∅)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import SanaTransformer2DModel

from cotlab.flow import flow_loss, interpolate, logit_normal_sigmas
from cotlab.latents import LatentGenerator
from cotlab.profiles import ProfileConfig


@dataclass
class SanaConfig(ProfileConfig):
    """Sizes and training of the linear DiT; the defaults are the ``cpu`` profile of ``sana``."""
    autoencoder: str = "dcae_f8"  # checkpoint whose latents are generated
    text_encoder: str = "clip"  # checkpoint of the ShapesCLIP whose text tower conditions
    width: int = 192  # D = heads × 32 (SANA's linear head size is 32)
    layers: int = 6
    cross_heads: int = 6  # cross-attention heads of D / cross_heads each
    mlp_ratio: float = 2.5  # Mix-FFN's hidden width h = 2.5·D
    qk_norm: bool = False  # RMSNorm on queries and keys (SANA-Sprint's teacher and student)
    time_scale: float = 1000.0  # σ is embedded as time_scale·σ: 1000 (diffusers' timesteps) or 1 (SANA-Sprint's dense time)
    p_uncond: float = 0.1  # caption dropout, for classifier-free guidance
    train_shift: float = 3.0  # σ' = shift·σ / (1 + (shift − 1)·σ) on the training times (SANA: 3)
    sample_shift: float = 3.0  # the same on the sampling grid
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_steps: int = 3000
    max_minutes: float | None = 30.0  # a cap on wall time; max_steps should end first
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=32, layers=1, cross_heads=1, batch_size=16, warmup_steps=2, max_steps=8, max_minutes=1.0),
        "gpu": dict(width=576, layers=16, cross_heads=9, batch_size=512, lr=3e-4, warmup_steps=1000,
                    max_steps=50_000, max_minutes=120.0),
    }

    HEAD_DIM: ClassVar[int] = 32

    def __post_init__(self):
        if self.width % self.HEAD_DIM or self.width % self.cross_heads:
            raise ValueError(f"width {self.width} must be a multiple of {self.HEAD_DIM} (the linear heads' size) "
                             f"and of cross_heads={self.cross_heads}")


class SanaDiT(LatentGenerator):
    """SANA's linear diffusion transformer on a DC-AE's latents, conditioned on the CLIP text encoder.
    Its autoencoder and text encoder are frozen parts (``LatentGenerator``)."""

    Config = SanaConfig

    def __init__(self, config: SanaConfig):
        super().__init__(config)
        c = config
        self.transformer = SanaTransformer2DModel(
            in_channels=self.latent_channels, out_channels=self.latent_channels, patch_size=1,
            sample_size=self.latent_size, num_layers=c.layers,
            num_attention_heads=c.width // c.HEAD_DIM, attention_head_dim=c.HEAD_DIM,
            num_cross_attention_heads=c.cross_heads, cross_attention_head_dim=c.width // c.cross_heads,
            cross_attention_dim=c.width, caption_channels=self.text_width, mlp_ratio=c.mlp_ratio,
            qk_norm="rms_norm_across_heads" if c.qk_norm else None,
            interpolation_scale=None,  # None: no positional embedding (NoPE)
            **self.transformer_options())

    def transformer_options(self) -> dict:
        """More arguments of the ``SanaTransformer2DModel`` (a subclass's: e.g. a guidance embedding)."""
        return {}

    # --- the transformer -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
                ) -> torch.Tensor:
        """The velocity v_θ(x_σ, σ, c) (B, C, h, w) at noisy latents x (B, C, h, w), times σ (B,) in [0, 1]
        (fed as ``time_scale``·σ: diffusers' timesteps 1000·σ, or dense σ) and text states (B, T, D_text)
        with mask (B, T)."""
        return self.transformer(x, encoder_hidden_states=text, timestep=self.config.time_scale * sigma,
                                encoder_attention_mask=text_mask, return_dict=False)[0]

    def guided_velocity(self, x: torch.Tensor, sigma: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor],
                        cfg: float = 1.0) -> torch.Tensor:
        """v(∅) + w·(v(c) − v(∅)) (B, C, h, w); w = 1 is plain conditioning (one forward pass), w ≠ 1
        costs two (batched as one of 2B)."""
        if cfg == 1.0:
            return self(x, sigma, *prefix)
        cond, uncond = self(x.repeat(2, 1, 1, 1), sigma.repeat(2), *prefix).chunk(2)
        return uncond + cfg * (cond - uncond)

    def paths(self, captions: list[str], seeds=0, steps: int = 20, cfg: float = 4.5, solver: str = "euler"):
        """Sampling paths for ``captions``, one seed each (``cotlab.sampling``): ``steps`` steps of
        ``solver`` ("euler": flow Euler; "dpm": Flow-DPM-Solver) from each seed's noise."""
        from cotlab.dit.decoding import FlowPaths

        return FlowPaths(self, captions, seeds, steps, cfg, solver)

    # --- training ------------------------------------------------------------------------------
    def noised(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """A training batch of images and captions made ready for the transformer: ``noised_latents``
        of its encoded images and its captions' states after caption dropout."""
        z = self.encode_images(batch["image"])  # (B, C, h, w)
        captions = ["" if u < self.config.p_uncond else c
                    for c, u in zip(batch["caption"], torch.rand(len(z)).tolist())]  # caption dropout
        return self.noised_latents(z, *self.encode_text(captions))

    def noised_latents(self, z: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flow matching's input for clean latents z (B, C, h, w) and text states (B, T, D_text), mask
        (B, T): the noisy latents x_σ (B, C, h, w), their times σ (B,) (logit-normal, shifted), the text
        states and mask, and z and the noise ε (B, C, h, w)."""
        sigma = logit_normal_sigmas(len(z), shift=self.config.train_shift, device=self.device)  # (B,)
        noise = torch.randn_like(z)
        return interpolate(z, noise, sigma), sigma, text, mask, z, noise

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Flow matching's MSE on a batch of images and captions (module docstring)."""
        x, sigma, text, mask, z, noise = self.noised(batch)
        return flow_loss(self(x, sigma, text, mask), z, noise), {}
