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
(``foreground_weight``) makes the small shapes, whose colour and outline the evaluator reads, count more.

**Scaling factor.** A diffusion model wants latents of unit variance, so the module keeps a running
estimate of the latents' standard deviation σ_z while it trains; ``scaling_factor`` = 1/σ_z, and
generators work on z · scaling_factor (diffusers' convention, SANA's AE has 0.41407).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
from diffusers import AutoencoderDC
from diffusers.models.autoencoders.autoencoder_dc import DCDownBlock2d, DCUpBlock2d
from torchmetrics.functional.image import peak_signal_noise_ratio

from cotlab.harness import Recipe, warmup_cosine
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
    foreground_weight: float = 4.0  # λ: extra weight of pixels that differ from the background
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


def foreground_weights(images: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """w_p = 1 + λ·[max_c |x_pc − bg_c| > 0.02] for images (B, 3, H, W) in [0, 1]; shape (B, 1, H, W)."""
    bg = torch.tensor(BACKGROUND, dtype=images.dtype, device=images.device).view(1, 3, 1, 1) / 255
    foreground = (images - bg).abs().amax(1, keepdim=True) > 0.02  # (B, 1, H, W)
    return 1 + foreground_weight * foreground.to(images.dtype)


def weighted_mse(x_hat: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_p w_p ‖x̂_p − x_p‖² / Σ_p w_p, averaged over channels; x (B, 3, H, W), w (B, 1, H, W)."""
    return (w * (x_hat - x) ** 2).sum() / (w.sum() * x.shape[1])


class DCAETokenizer(L.LightningModule):
    """A deep-compression autoencoder (diffusers' ``AutoencoderDC``) trained on the Shapes world."""

    Config = DCAEConfig

    def __init__(self, config: DCAEConfig):
        super().__init__()
        self.config = config
        self.save_hyperparameters(config.to_dict())
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
    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L, z, x̂): the pixel-weighted MSE in [−1, 1], the latents and the raw reconstruction."""
        x = self._check(images) * 2 - 1  # (B, 3, H, W) in [-1, 1]
        z = self.ae.encode(x).latent  # (B, C, h, w)
        x_hat = self.ae.decode(z).sample  # (B, 3, H, W)
        w = foreground_weights(images.to(self.device), self.config.foreground_weight)
        return weighted_mse(x_hat, x, w), z, x_hat

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        loss, z, x_hat = self.loss(images)
        with torch.no_grad():  # the running σ_z behind the scaling factor
            self.latent_std.lerp_(z.std(), 1 - self.config.scale_momentum)
            psnr = peak_signal_noise_ratio(((x_hat + 1) / 2).clamp(0, 1), images.to(self.device), data_range=1.0)
        B = len(images)
        self.log("train_loss", loss, prog_bar=True, batch_size=B)
        self.log("train_psnr", psnr, batch_size=B)
        self.log("latent_std", self.latent_std, batch_size=B)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images = batch["image"]
        loss, _, x_hat = self.loss(images)
        psnr = peak_signal_noise_ratio(((x_hat + 1) / 2).clamp(0, 1), images.to(self.device), data_range=1.0)
        B = len(images)
        self.log("val_loss", loss, prog_bar=True, batch_size=B, sync_dist=True)
        self.log("val_psnr", psnr, prog_bar=True, batch_size=B, sync_dist=True)

    def configure_optimizers(self):
        """AdamW; linear warm-up, then cosine decay to zero."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.lr,
                                      weight_decay=self.config.weight_decay)
        scheduler = warmup_cosine(optimizer, self.config.warmup_steps, self.config.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# --- recipes -----------------------------------------------------------------------------------
def _evaluate(model: DCAETokenizer, profile: str) -> dict:
    from cotlab.tokenizers.metrics import evaluate_tokenizer

    return evaluate_tokenizer(model, n=model.config.eval_n)


RECIPE_F8 = Recipe.of("dcae_f8", DCAETokenizer, "AutoencoderDC f8: 32×32 images to 4×4×32 latents, with "
                      "space-to-channel shortcuts", _evaluate)
RECIPE_F4 = Recipe.of("dcae_f4", DCAETokenizer, "AutoencoderDC f4: 32×32 images to 8×8×8 latents, with "
                      "space-to-channel shortcuts", _evaluate, DCAEF4Config)
RECIPE_F8_NOSHORTCUT = Recipe.of("dcae_f8_noshortcut", DCAETokenizer, "AutoencoderDC f8 with every "
                                 "space-to-channel shortcut switched off (the ablation)", _evaluate, shortcut=False)
