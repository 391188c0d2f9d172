"""Deep-compression autoencoders: diffusers' ``AutoencoderDC`` at toy size, the latent space of SANA.

*Deep Compression Autoencoder for Efficient High-Resolution Diffusion Models* (Chen et al.,
arXiv 2410.10733). An encoder E maps an image x (3, H, W) to a small latent z = E(x) of shape
(C, H/f, W/f) — few positions, many channels — and a decoder D maps it back, x̂ = D(z). Here f = 8
turns 32×32 images into 4×4 latents (one per grid cell of the Shapes world), f = 4 into 8×8.

**Residual autoencoding.** Each change of resolution adds a *non-parametric* space-to-channel
shortcut, so the learned convolution only has to learn a residual on top of it:

    down:  h' = pixel_unshuffle(conv(h), 2) + mean_groups(pixel_unshuffle(h, 2))  # 2×2 space -> channels
    up:    h' = pixel_shuffle(conv(h), 2) + pixel_shuffle(repeat(h), 2)           # channels -> 2×2 space
    encoder out:  z = conv_out(h) + mean_groups(h)                                # down to C channels
    decoder in:   h = conv_in(z) + repeat(z)                                      # up to the widest width

The paper credits these shortcuts with making high compression (f32–f128) trainable; ``shortcut=False``
switches all of them off (``disable_shortcuts``) to measure what they buy at toy size.

**Training.** Deterministic (no KL term): the loss is a pixel-weighted mean squared error

    L = Σ_p w_p ‖x̂_p − x_p‖² / Σ_p w_p,   w_p = 1 + λ·[max_c |x_pc − bg_c| > 0.02],

with pixels in the model's range [−1, 1]. The plain background covers most pixels, so λ
(``foreground_extra``) makes the small shapes, whose colour and outline the evaluator reads, count more.
``foreground_weights`` and ``weighted_error`` are the one home of this loss: the VQ and hybrid
tokenizers use them too.

**Scaling factor.** A diffusion model wants latents of unit variance, so the module keeps a running
estimate of the latents' standard deviation σ_z while it trains; ``scaling_factor`` = 1/σ_z, and
generators work on z · scaling_factor (diffusers' convention, SANA's AE has 0.41407).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import AutoencoderDC
from diffusers.models.autoencoders.autoencoder_dc import DCDownBlock2d, DCUpBlock2d
from torchmetrics.functional.image import peak_signal_noise_ratio

from cotlab.harness import Model
from cotlab.profiles import ProfileConfig
from cotlab.shapes import BACKGROUND


@dataclass
class DCAEConfig(ProfileConfig):
    """Sizes and training of a DC-AE; the defaults are the f8 ``cpu`` profile."""
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)  # one stage per resolution: f = 2^(stages-1)
    layers_per_block: tuple[int, ...] = (1, 1, 1, 1)  # ResBlocks per stage, encoder and decoder alike
    latent_channels: int = 32  # C: f8 gives (32, 4, 4) = 512 numbers per image
    shortcut: bool = True  # the space-to-channel shortcuts of residual autoencoding
    foreground_extra: float = 4.0  # λ: a pixel that differs from the background weighs 1 + λ, others 1
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    max_steps: int = 2000
    max_minutes: float | None = 8.0  # a cap on wall time; max_steps should end first
    scale_momentum: float = 0.99  # of the running estimate of the latents' std
    eval_n: int = 500  # scenes for the recipe's evaluation
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(block_out_channels=(8, 16, 32, 32), latent_channels=16, batch_size=8,
                      warmup_steps=2, max_steps=6, max_minutes=1.0, eval_n=32),
        "gpu": dict(block_out_channels=(64, 128, 256, 256), layers_per_block=(2, 2, 2, 2),
                    batch_size=256, lr=1e-3, warmup_steps=500, max_steps=20_000, max_minutes=60.0,
                    eval_n=2000),
    }

    @property
    def f(self) -> int:
        """Spatial compression: each stage after the first halves the resolution."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class DCAEF4Config(DCAEConfig):
    """The f4 DC-AE: 8×8 latents of 8 channels (the same 512 numbers per image as f8)."""
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: tuple[int, ...] = (1, 1, 1)
    latent_channels: int = 8
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(block_out_channels=(8, 16, 32), latent_channels=4, batch_size=8,
                      warmup_steps=2, max_steps=6, max_minutes=1.0, eval_n=32),
        "gpu": dict(block_out_channels=(64, 128, 256), layers_per_block=(2, 2, 2), latent_channels=16,
                    batch_size=256, lr=1e-3, warmup_steps=500, max_steps=20_000, max_minutes=60.0,
                    eval_n=2000),
    }


def build_autoencoder(block_out_channels: tuple[int, ...], layers_per_block: tuple[int, ...],
                      latent_channels: int, shortcut: bool = True) -> AutoencoderDC:
    """diffusers' ``AutoencoderDC`` at toy size: one stage per resolution, ResBlocks only (the
    EfficientViT attention blocks of the large models buy nothing on 4×4 latents), the same widths in
    the encoder and the decoder; without ``shortcut``, every space-to-channel shortcut is off."""
    stages = len(block_out_channels)
    ae = AutoencoderDC(
        in_channels=3,
        latent_channels=latent_channels,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=tuple(block_out_channels),
        decoder_block_out_channels=tuple(block_out_channels),
        encoder_layers_per_block=tuple(layers_per_block),
        decoder_layers_per_block=tuple(layers_per_block),
        encoder_qkv_multiscales=((),) * stages,
        decoder_qkv_multiscales=((),) * stages,
        encoder_out_shortcut=shortcut,
        decoder_in_shortcut=shortcut,
    )
    if not shortcut:
        disable_shortcuts(ae)
    return ae


def disable_shortcuts(ae: AutoencoderDC) -> AutoencoderDC:
    """Switch off every space-to-channel shortcut of ``ae``, in place.

    diffusers 0.42 exposes only the outermost two as constructor options (``encoder_out_shortcut``,
    ``decoder_in_shortcut``); each ``DCDownBlock2d`` / ``DCUpBlock2d`` between stages is built with
    ``shortcut=True`` and reads its ``shortcut`` attribute in ``forward``, so it is switched here.
    Without them a down block is h' = pixel_unshuffle(conv(h), 2) and an up block
    h' = pixel_shuffle(conv(h), 2).
    """
    ae.encoder.out_shortcut = False
    ae.decoder.in_shortcut = False
    for module in ae.modules():
        if isinstance(module, (DCDownBlock2d, DCUpBlock2d)):
            module.shortcut = False
    return ae


def foreground_weights(images: torch.Tensor, extra: float, threshold: float = 0.02) -> torch.Tensor:
    """w_p = 1 + λ·[max_c |x_pc − bg_c| > threshold], λ = ``extra``: a pixel of a shape (or of its
    antialiased edge) weighs 1 + λ, a background pixel 1. Images (B, 3, H, W) in [0, 1]; w (B, 1, H, W)."""
    bg = torch.tensor(BACKGROUND, dtype=images.dtype, device=images.device).view(1, 3, 1, 1) / 255
    foreground = (images - bg).abs().amax(1, keepdim=True) > threshold  # (B, 1, H, W)
    return 1 + extra * foreground.to(images.dtype)


def weighted_error(x_hat: torch.Tensor, x: torch.Tensor, w: torch.Tensor, norm: str = "mse") -> torch.Tensor:
    """Σ_p w_p e_p / Σ_p w_p with e_p the squared (``"mse"``) or absolute (``"l1"``) error of pixel p,
    averaged over channels; x̂, x (B, C, H, W), w (B, 1, H, W)."""
    error = (x_hat - x).pow(2) if norm == "mse" else (x_hat - x).abs()  # (B, C, H, W)
    return (w * error).sum() / (w.sum() * x.shape[1])


class DCAETokenizer(Model):
    """A deep-compression autoencoder (diffusers' ``AutoencoderDC``) trained on the Shapes world."""

    Config = DCAEConfig
    PROGRESS = ("psnr",)

    def __init__(self, config: DCAEConfig):
        super().__init__(config)  # trained by AdamW with a linear warm-up and a cosine decay
        self.ae = build_autoencoder(config.block_out_channels, config.layers_per_block,
                                    config.latent_channels, config.shortcut)
        self.register_buffer("latent_std", torch.ones(()))  # σ_z, running estimate

    # --- the tokenizer interface -------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def latent_size(self) -> int:
        return self.config.image_size // self.config.f

    @property
    def tokens_per_image(self) -> int:
        return self.latent_size ** 2

    @property
    def bits_per_image(self) -> float:
        """Continuous values count 16 bits each: (H/f)·(W/f)·C·16."""
        return float(self.tokens_per_image * self.latent_channels * 16)

    @property
    def scaling_factor(self) -> float:
        """1/σ_z: generators work on z · scaling_factor, which has unit variance."""
        return 1.0 / self.latent_std.item()

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}) in [0, 1], got "
                             f"{tuple(images.shape)}: render with World(image_size={size})")
        return images.to(self.device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents z = E(2x − 1), shape (B, C, H/f, W/f), unscaled."""
        return self.ae.encode(self._check(images) * 2 - 1).latent

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from unscaled latents (B, C, H/f, W/f)."""
        x_hat = self.ae.decode(latents.to(self.device)).sample  # (B, 3, H, W) in about [-1, 1]
        return ((x_hat + 1) / 2).clamp(0, 1)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    @torch.no_grad()
    def fit_scaling_factor(self, images: torch.Tensor) -> float:
        """Set σ_z exactly from the latents of ``images`` (e.g. a large batch); return the scaling factor."""
        self.latent_std.copy_(self.encode(images).std())
        return self.scaling_factor

    # --- training ----------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log_step("val", batch)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pixel-weighted MSE in [−1, 1], and the PSNR of the reconstruction. In training mode
        it also moves the running σ_z behind the scaling factor toward the batch's latents."""
        images = self._check(batch["image"])  # (B, 3, H, W) in [0, 1]
        x = images * 2 - 1  # (B, 3, H, W) in [-1, 1]
        z = self.ae.encode(x).latent  # (B, C, h, w)
        x_hat = self.ae.decode(z).sample  # (B, 3, H, W)
        loss = weighted_error(x_hat, x, foreground_weights(images, self.config.foreground_extra))
        with torch.no_grad():
            if self.training:
                self.latent_std.lerp_(z.std(), 1 - self.config.scale_momentum)
            psnr = peak_signal_noise_ratio(((x_hat + 1) / 2).clamp(0, 1), images, data_range=1.0)
        return loss, {"psnr": psnr, "latent_std": self.latent_std}
