"""The hybrid tokenizer: discrete tokens for structure, a continuous residual for the rest.

*HART: Efficient Visual Generation with Hybrid Autoregressive Transformer* (Tang et al.,
arXiv 2410.10812) and DC-AR's deep-compression hybrid tokenizer DC-HT (*DC-AR: Efficient Masked
Autoregressive Image Generation with Deep Compression Hybrid Tokenizer*, arXiv 2507.04947). With the
DC-AE f8 encoder E, a vector quantizer and one decoder D,

    Z   = E(x)                      (B, C, 4, 4)   one latent per grid cell
    k   = argmin_j ‖Z − e_j‖²        (B, 16)        the discrete tokens
    Z_q = e_k,   Z_r = Z − Z_q                      the quantized latent and the continuous residual
    x̂_discrete = D(Z_q),   x̂ = D(Z_q + Z_r) = D(Z)   the same decoder for both

A generator then predicts the 16 tokens (what is in each cell) and, optionally, the residual (exactly
how it is drawn); the decoder must turn either into an image.

**Training in three stages** (DC-HT), as step ranges of ``max_steps``:

1. *continuous warm-up*, steps [0, warmup_until): encoder and decoder learn L_rec(D(Z));
2. *discrete learning*, [warmup_until, discrete_until): the discrete path alone,
   L_rec(D(Z_q)) + L_vq (straight-through estimator; the codebook starts as k-means of the warmed-up
   latents and is kept alive by EMA updates and restarts), until the codebook is stable;
3. *alternating fine-tune*, [discrete_until, max_steps): encoder and quantizer frozen, each batch
   decodes D(Z) (probability ``p_continuous``) or D(Z_q), and only the decoder learns. DC-HT and HART
   use ½; here 0.7 — measured on 500 scenes after 3,000 steps, the residual was worth +2.15 dB at ½
   and +2.59 dB at 0.7, and the discrete path lost 0.2 dB.

HART's recipe is stage 3 alone, from scratch and with nothing frozen (``cotlab.tokenizers.recipes.HYBRID_F8_ALTERNATING``): the
encoder and the codebook then learn while the decoder is also asked to use the residual.
L_rec is the pixel-weighted MSE of ``cotlab.tokenizers.dcae`` (λ = ``foreground_extra``); L_vq is the commitment term of
``cotlab.tokenizers.vq.VectorQuantizer``.

Two details make the stages work at this size. The codes are looked up by Euclidean distance in Z's
own space, so Z_q is the code nearest to Z and Z_r the quantization error itself (a cosine lookup in
a projected space leaves Z_r as large as Z, and collapsed to one code when stage 2 began). And each
stage starts with its own short learning-rate warm-up (see ``configure_optimizers``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import ClassVar

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from cotlab.harness import Model
from cotlab.profiles import ProfileConfig
from cotlab.tokenizers.dcae import build_autoencoder, foreground_weights, weighted_error
from cotlab.tokenizers.vq import VectorQuantizer


@dataclass
class HybridConfig(ProfileConfig):
    """Sizes, stages and training of the hybrid tokenizer; the defaults are the three-stage ``cpu`` run."""
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)  # the DC-AE f8: 32×32 -> 4×4
    layers_per_block: tuple[int, ...] = (1, 1, 1, 1)
    latent_channels: int = 32  # C of Z, Z_q and Z_r
    codebook_size: int = 256  # K
    decay: float = 0.9  # γ of the EMA codebook: fast, so the codes keep up with a moving encoder
    dead_code_threshold: float = 0.1  # restart codes whose EMA count falls below
    beta: float = 0.25  # commitment weight
    foreground_extra: float = 4.0  # λ of the pixel-weighted MSE: a foreground pixel weighs 1 + λ
    warmup_until: float = 0.2  # stage 1 (continuous warm-up) ends at this share of max_steps
    discrete_until: float = 0.6  # stage 2 (discrete learning) ends here; stage 3 (alternating) follows
    freeze: bool = True  # stage 3 trains the decoder only; False: everything (HART)
    p_continuous: float = 0.7  # stage 3: chance that a batch decodes Z rather than Z_q (HART: 0.5)
    batch_size: int = 32
    lr: float = 1e-3  # 2e-3 threw the latents off the codebook early in stage 2
    weight_decay: float = 0.0
    warmup_steps: int = 100  # at the start of each stage
    max_steps: int = 3000
    max_minutes: float | None = 8.0  # a cap on wall time; max_steps should end first
    eval_n: int = 500  # scenes for the recipe's evaluation
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(block_out_channels=(8, 16, 32, 32), latent_channels=16, codebook_size=32,
                      batch_size=8, warmup_steps=2, max_steps=10, max_minutes=1.0, eval_n=32),
        "gpu": dict(block_out_channels=(64, 128, 256, 256), layers_per_block=(2, 2, 2, 2),
                    codebook_size=512, batch_size=256, warmup_steps=500,
                    max_steps=20_000, max_minutes=60.0, eval_n=2000),
    }

    def __post_init__(self):
        if not 0 <= self.warmup_until <= self.discrete_until <= 1:
            raise ValueError(f"need 0 ≤ warmup_until ≤ discrete_until ≤ 1, got {self.warmup_until} and "
                             f"{self.discrete_until}: e.g. 0.2 and 0.6 (or 0 and 0 for HART's recipe)")


# HART's recipe: the alternating stage alone, from scratch, nothing frozen
ALTERNATING = dict(warmup_until=0.0, discrete_until=0.0, freeze=False)


class HybridTokenizer(Model):
    """A hybrid tokenizer (DC-AE f8 encoder, VQ, one decoder) trained in stages on the Shapes world."""

    Config = HybridConfig
    PROGRESS = ("stage", "usage")

    def __init__(self, config: HybridConfig):
        super().__init__(config)
        c = config
        self.ae = build_autoencoder(c.block_out_channels, c.layers_per_block, c.latent_channels)  # E and D
        # Euclidean lookup in Z's own space (no cosine, no projection): Z_q is the code nearest to Z
        self.quantizer = VectorQuantizer(c.latent_channels, c.codebook_size, beta=c.beta, ema=True,
                                         decay=c.decay, kmeans_init=True,
                                         dead_code_threshold=c.dead_code_threshold)
        # what learns by gradient at all (the EMA codebook learns by running averages instead)
        self.learnable = {name for name, p in self.named_parameters() if p.requires_grad}

    # --- the tokenizer interface -------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return self.config.image_size // 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def tokens_per_image(self) -> int:
        return self.latent_size ** 2

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def discrete_bits_per_image(self) -> float:
        """The tokens alone: N·log2 K."""
        return self.tokens_per_image * math.log2(self.codebook_size)

    @property
    def bits_per_image(self) -> float:
        """Tokens and residual: N·log2 K + N·C·16 (a continuous value counts 16 bits)."""
        return self.discrete_bits_per_image + self.tokens_per_image * self.config.latent_channels * 16

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Z = E(2x − 1), (B, C, 4, 4), of images (B, 3, H, W) in [0, 1]."""
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}) in [0, 1], got "
                             f"{tuple(images.shape)}: render with World(image_size={size})")
        return self.ae.encode(images.to(self.device) * 2 - 1).latent

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (B, N), residual Z_r = Z − Z_q (B, C, h, w)); N = h·w tokens in row-major order."""
        z = self.latents(images)  # (B, C, h, w)
        indices = self.quantizer.encode(z)  # (B, N)
        return indices, z - self.quantizer.lookup(indices)

    def encode_indices(self, images: torch.Tensor) -> torch.Tensor:
        """The discrete tokens (B, N) alone."""
        return self.quantizer.encode(self.latents(images))

    def decode(self, indices: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from D(Z_q + Z_r), or from D(Z_q) when ``residual`` is None."""
        z = self.quantizer.lookup(indices.to(self.device))  # (B, C, h, w): Z_q
        if residual is not None:
            z = z + residual.to(self.device)  # Z = Z_q + Z_r
        return ((self.ae.decode(z).sample + 1) / 2).clamp(0, 1)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """D(Z_q): images from the discrete tokens alone, as the VQ tokenizers decode theirs."""
        return self.decode(indices)

    def reconstruct(self, images: torch.Tensor, residual: bool = True) -> torch.Tensor:
        """Encode and decode, with the residual (discrete + continuous) or without it (discrete only)."""
        indices, z_r = self.encode(images)
        return self.decode(indices, z_r if residual else None)

    # --- stages ------------------------------------------------------------------------------
    def stage(self, step: int) -> int:
        """1 (continuous warm-up), 2 (discrete learning) or 3 (alternating fine-tune) at ``step``."""
        c = self.config
        if step < c.warmup_until * c.max_steps:
            return 1
        return 2 if step < c.discrete_until * c.max_steps else 3

    def stage_start(self, step: int) -> int:
        """The first step of the stage that ``step`` is in."""
        c = self.config
        return math.ceil((0.0, c.warmup_until, c.discrete_until)[self.stage(step) - 1] * c.max_steps)

    def set_stage(self, stage: int) -> None:
        """The one place that freezes: in stage 3 (with ``freeze``) the encoder and the quantizer stop
        learning — no gradients, and the quantizer in eval mode, so no EMA updates or restarts either.
        The optimizer holds every learnable parameter and skips those left without a gradient."""
        frozen = stage == 3 and self.config.freeze
        for name, p in self.named_parameters():
            in_frozen_part = name.startswith(("ae.encoder.", "quantizer."))
            p.requires_grad_(name in self.learnable and not (frozen and in_frozen_part))
        self.quantizer.train(self.training and not frozen)

    # --- training ----------------------------------------------------------------------------
    def losses(self, images: torch.Tensor, stage: int, continuous: bool) -> tuple[torch.Tensor, dict]:
        """The loss of one batch in ``stage``: L_rec(D(Z)) if ``continuous`` else L_rec(D(Z_q)), plus
        L_vq while the quantizer learns; and what to log."""
        x = images.to(self.device) * 2 - 1  # (B, 3, H, W) in [-1, 1]
        z = self.ae.encode(x).latent  # (B, C, h, w): Z
        logs: dict[str, torch.Tensor] = {}
        vq_loss = torch.zeros((), device=self.device)
        if stage == 1:
            z_dec = z
        else:
            z_q, _, vq_loss, stats = self.quantizer(z)  # straight-through Z_q
            z_r = z - z_q
            z_dec = z_q + z_r if continuous else z_q
            logs.update(usage=stats["usage"], perplexity=stats["perplexity"],
                        residual_rms=z_r.detach().pow(2).mean().sqrt())
        x_hat = self.ae.decode(z_dec).sample  # (B, 3, H, W)
        w = foreground_weights(images.to(self.device), self.config.foreground_extra)  # (B, 1, H, W)
        rec = weighted_error(x_hat, x, w)
        learns_codes = stage == 2 or (stage == 3 and not self.config.freeze)
        loss = rec + vq_loss if learns_codes else rec
        psnr = peak_signal_noise_ratio(((x_hat.detach() + 1) / 2).clamp(0, 1), images.to(self.device),
                                       data_range=1.0)
        return loss, {"rec_loss": rec, "vq_loss": vq_loss, "psnr": psnr, **logs}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The loss of the stage at the current step (``losses``), its PSNR named by the path decoded
        (``continuous_psnr`` or ``discrete_psnr``), and the stage. Sets the stage's frozen parts."""
        stage = self.stage(self.global_step)
        self.set_stage(stage)
        # stage 1 decodes Z, stage 2 decodes Z_q, stage 3 either with p = p_continuous
        continuous = stage == 1 or (stage == 3 and random.random() < self.config.p_continuous)
        loss, logs = self.losses(batch["image"], stage, continuous)
        logs[f"{'continuous' if continuous else 'discrete'}_psnr"] = logs.pop("psnr")
        return loss, {"stage": float(stage), **logs}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """The PSNR of both decoding paths (not the training loss, which draws one path at random)."""
        images = batch["image"].to(self.device)
        B = len(images)
        for name, residual in (("discrete", False), ("hybrid", True)):
            psnr = peak_signal_noise_ratio(self.reconstruct(images, residual), images, data_range=1.0)
            self.log(f"val_psnr_{name}", psnr, prog_bar=True, batch_size=B, sync_dist=True)

    def parameter_groups(self) -> list[dict]:
        """Every learnable parameter (frozen ones get no gradient and are skipped)."""
        return [{"params": [p for name, p in self.named_parameters() if name in self.learnable]}]

    def configure_optimizers(self):
        """The base's AdamW, with a schedule of its own: the learning rate decays on one cosine over
        all stages, and *each stage starts with its own linear warm-up*: when a stage begins, the loss
        jumps (a new path to decode) while Adam's second moments still hold the previous stage's small
        gradients, and a full-size step then throws the latents off the freshly initialised codebook."""
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.config.lr,
                                      weight_decay=self.config.weight_decay, betas=self.BETAS)
        warmup, total = self.config.warmup_steps, self.config.max_steps

        def factor(step: int) -> float:
            stage_warmup = min(1.0, (step - self.stage_start(step) + 1) / max(warmup, 1))
            return stage_warmup * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
