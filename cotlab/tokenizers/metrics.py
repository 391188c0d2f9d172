"""How good is a tokenizer? PSNR, SSIM, Shapes-FD, evaluator agreement and codebook statistics.

A tokenizer is judged by what survives the round trip image → tokens → image:

- **PSNR** = 10·log10(1 / MSE) on [0, 1] images and **SSIM** (Wang et al., *Image Quality Assessment:
  From Error Visibility to Structural Similarity*, IEEE TIP 2004), the windowed product of luminance,
  contrast and structure terms; both per image (torchmetrics), then averaged. Identical images have
  PSNR = ∞ and SSIM = 1.
- **Shapes-FD**: as FID does (Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium*, arXiv 1706.08500), fit a Gaussian (μ, Σ) to features of real renders
  and one to features of reconstructions or generations, and take their Fréchet distance

      FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).

  The features are the pooled penultimate activations of ``ShapesClassifier``, a small CNN trained
  here to name each grid cell's content, since Inception's weights cannot be downloaded (and Shapes
  are not ImageNet). **Shapes-FD is not comparable to Inception FID**, nor to a Shapes-FD of another
  classifier checkpoint; compare it only at equal numbers of images (FD is biased upward at small n).
  For scale, with the shipped classifier and 500 images: two independent sets of renders are ≈ 0.12
  apart; the same renders blurred by σ = 0.5, 1 and 1.5 px are ≈ 0.05, 0.75 and 1.9 from the originals.
- **Evaluator agreement**: the share of sampled scenes, each judged against its own prompt by the
  exact GenEval-style evaluator (``cotlab.geneval``, after arXiv 2310.11513), whose verdict is the
  same after reconstruction as before. PSNR forgives a small shape that went missing or changed
  colour; agreement does not, and it is the measure that matters for every generator downstream.
- **Codebook usage**, the share of the K codes used on the evaluation set, and **perplexity**
  exp(−Σ_k p_k log p_k) of the code histogram p: K when every code is used equally, 1 when one is.

``evaluate_tokenizer`` measures all of these on the same seeded scenes for any object with the
tokenizer interface (``cotlab.tokenizers``).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.image import (peak_signal_noise_ratio,
                                           structural_similarity_index_measure)

from cotlab import geneval
from cotlab.harness import Recipe
from cotlab.profiles import ProfileConfig
from cotlab.shapes import COLORS, SHAPES, Scene, World, make_batch


# --- pixel metrics -----------------------------------------------------------------------------
def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of 10·log10(1 / MSE), for (B, 3, H, W) images in [0, 1] (∞ if identical)."""
    return peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean().item()


def pooled_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """10·log10(1 / MSE) with the MSE pooled over every pixel of every image (finite even when one
    image matches exactly), for (B, 3, H, W) images in [0, 1]."""
    return (10 * torch.log10(1 / (x - y).square().mean())).item()


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of SSIM (11-px Gaussian window, σ = 1.5), for images in [0, 1]."""
    return structural_similarity_index_measure(x, y, data_range=1.0, reduction="none").mean().item()


# --- the Shapes classifier, whose features define Shapes-FD ------------------------------------
CLASSES = ("empty",) + tuple(f"{c} {s}" for s in SHAPES for c in COLORS)  # what a cell can hold
CLASS_INDEX = {name: k for k, name in enumerate(CLASSES)}


def cell_labels(scenes: list[Scene]) -> torch.Tensor:
    """Each grid cell's class, (B, g, g) long: 0 if empty, else the index of "colour shape"."""
    g = scenes[0].grid
    labels = torch.zeros(len(scenes), g, g, dtype=torch.long)
    for b, scene in enumerate(scenes):
        for o in scene.objects:
            labels[b, o.row, o.col] = CLASS_INDEX[f"{o.color} {o.shape}"]
    return labels


@dataclass
class ShapesClassifierConfig(ProfileConfig):
    """Sizes and training of the Shapes classifier; the defaults are the ``cpu`` profile."""
    width: int = 16  # channels of the first stage, doubled at each of the three downsamplings
    features: int = 128  # D: the per-cell features, pooled into Shapes-FD's space
    grid: int = 4  # cells per side: the logits are (B, classes, grid, grid)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    max_steps: int = 200  # cell accuracy reaches 1.0 on clean renders after ~100
    max_minutes: float | None = 2.0  # a cap on wall time; max_steps should end first
    eval_images: int = 1000  # scenes for the reported cell accuracy
    PROFILES: ClassVar[dict[str, dict]] = {
        "smoke": dict(width=8, features=16, batch_size=32, max_steps=5, max_minutes=1.0, eval_images=64),
        "gpu": dict(width=32, features=256, batch_size=512, max_steps=3000, max_minutes=15.0,
                    eval_images=10_000),
    }


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution, batch norm, GELU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class ShapesClassifier(L.LightningModule):
    """A small CNN naming each grid cell's content (empty, or one of the colour × shape classes).

    Three stride-2 stages take a 32×32 image to one D-vector per 8×8 cell (receptive field 17 px: the
    cell and the edges of its neighbours); a 1×1 convolution gives the cell's logits. The D-vectors,
    averaged over cells, are ``features``: the space of Shapes-FD.
    """

    Config = ShapesClassifierConfig

    def __init__(self, config: ShapesClassifierConfig):
        super().__init__()
        self.config = config
        self.save_hyperparameters(config.to_dict())
        w, D = config.width, config.features
        self.body = nn.Sequential(
            conv(3, w),  # (B, w, 32, 32)
            conv(w, 2 * w, stride=2),  # (B, 2w, 16, 16)
            conv(2 * w, 4 * w, stride=2),  # (B, 4w, 8, 8)
            conv(4 * w, D, stride=2),  # (B, D, 4, 4)
            nn.AdaptiveAvgPool2d(config.grid),  # (B, D, g, g): one vector per cell at any image size
        )
        self.head = nn.Conv2d(D, len(CLASSES), 1)  # (B, classes, g, g)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Cell logits (B, classes, g, g) of images (B, 3, H, W) in [0, 1]."""
        return self.head(self.body(images * 2 - 1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The penultimate activations averaged over cells: (B, D)."""
        return self.body(images * 2 - 1).mean(dim=(2, 3))

    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy over every cell, and cell accuracy."""
        logits = self(batch["image"])  # (B, classes, g, g)
        loss = F.cross_entropy(logits, batch["cells"])
        accuracy = (logits.argmax(1) == batch["cells"]).float().mean()
        return loss, accuracy

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.loss(batch)
        B = len(batch["image"])
        self.log("train_loss", loss, prog_bar=True, batch_size=B)
        self.log("train_acc", accuracy, prog_bar=True, batch_size=B)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, accuracy = self.loss(batch)
        B = len(batch["image"])
        self.log("val_loss", loss, prog_bar=True, batch_size=B, sync_dist=True)
        self.log("val_acc", accuracy, prog_bar=True, batch_size=B, sync_dist=True)

    def configure_optimizers(self):
        """AdamW with a cosine decay to zero over ``max_steps``."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.lr,
                                      weight_decay=self.config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.config.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def labelled_cells(batch: dict) -> dict:
    """The classifier's view of a Shapes batch: ``image`` and ``cells`` (B, g, g), its labels."""
    return {"image": batch["image"], "cells": cell_labels(batch["scene"])}


@torch.no_grad()
def cell_accuracy(classifier: ShapesClassifier, n: int = 1000, seed: int = 1234,
                  world: World = World()) -> dict[str, float]:
    """On ``n`` clean renders: the share of cells classified right (``cell_accuracy``), of occupied
    cells classified right (``object_accuracy``; most cells are empty) and of images with every
    cell right (``image_accuracy``)."""
    rng = np.random.default_rng(seed)
    right, occupied, images = [], [], []
    was_training = classifier.training
    classifier.eval()
    for start in range(0, n, 250):
        batch = make_batch(world, rng, min(250, n - start))
        cells = cell_labels(batch["scene"]).to(classifier.device)  # (B, g, g)
        ok = classifier(batch["image"].to(classifier.device)).argmax(1) == cells  # (B, g, g)
        right.append(ok.flatten(1))
        occupied.append((cells > 0).flatten(1))
        images.append(ok.flatten(1).all(1))
    classifier.train(was_training)
    right, occupied = torch.cat(right), torch.cat(occupied)
    return {"cell_accuracy": right.float().mean().item(),
            "object_accuracy": right[occupied].float().mean().item(),
            "image_accuracy": torch.cat(images).float().mean().item()}


RECIPE = Recipe.of("shapes_classifier", ShapesClassifier, "a small CNN naming each grid cell's content; its "
                   "features define Shapes-FD", lambda model, profile: cell_accuracy(model, n=model.config.eval_images),
                   view=labelled_cells)


# --- Shapes-FD ---------------------------------------------------------------------------------
@torch.no_grad()
def features(images: torch.Tensor, classifier: ShapesClassifier, batch_size: int = 500) -> torch.Tensor:
    """The classifier's pooled features of (B, 3, H, W) images in [0, 1]: (B, D) float64, on the CPU."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    was_training = classifier.training
    classifier.eval()
    out = [classifier.features(images[i:i + batch_size].to(classifier.device)).double().cpu()
           for i in range(0, len(images), batch_size)]
    classifier.train(was_training)
    return torch.cat(out)  # (B, D)


def feature_statistics(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """μ (D,) and the unbiased covariance Σ (D, D) of features (B, D)."""
    if len(f) < 2:
        raise ValueError(f"Shapes-FD needs at least 2 images per set, got {len(f)}")
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}) between two Gaussians.

    Tr (Σ₁Σ₂)^{1/2} is the sum of the square roots of the eigenvalues of Σ₁^{1/2} Σ₂ Σ₁^{1/2}, which
    has the same eigenvalues as Σ₁Σ₂ but is symmetric, so ``eigvalsh`` applies (in float64).
    """
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    lam, V = torch.linalg.eigh(sigma1)
    root1 = V @ torch.diag(lam.clamp(min=0).sqrt()) @ V.T  # Σ₁^{1/2}
    tr_covmean = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    fd = (mu1.double() - mu2.double()).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_covmean
    return max(fd.item(), 0.0)


def shapes_fd(real_images: torch.Tensor, fake_images: torch.Tensor, classifier: ShapesClassifier) -> float:
    """Shapes-FD between two sets of (B, 3, H, W) images in [0, 1] (not comparable to Inception FID)."""
    return frechet_distance(*feature_statistics(features(real_images, classifier)),
                            *feature_statistics(features(fake_images, classifier)))


# --- codebook statistics -----------------------------------------------------------------------
def codebook_stats(indices: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """(usage, perplexity) of code indices of any shape: the share of the K codes that occur, and
    exp(−Σ_k p_k log p_k) of their histogram p."""
    counts = torch.bincount(indices.flatten().long().cpu(), minlength=codebook_size).double()  # (K,)
    if len(counts) > codebook_size:
        raise ValueError(f"indices go up to {len(counts) - 1} but the codebook has {codebook_size} codes")
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return (counts > 0).double().mean().item(), entropy.exp().item()


# --- evaluator agreement -----------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> (B, H, W, 3) uint8, as the evaluator reads images."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@functools.lru_cache(maxsize=4)
def reference_set(n: int, seed: int, world: World) -> tuple[torch.Tensor, list[dict], list[tuple[bool, str]]]:
    """``n`` scenes sampled as the world samples training scenes: their renders (n, 3, H, W), their
    prompts (GenEval metadata) and the evaluator's verdicts on the renders. Cached: every tokenizer
    is measured on the same scenes, and the renders are judged once."""
    rng = np.random.default_rng(seed)
    batch = make_batch(world, rng, n)
    images = batch["image"]  # (n, 3, H, W)
    verdicts = [geneval.judge(img, meta, world) for img, meta in zip(to_uint8(images), batch["meta"])]
    return images, batch["meta"], verdicts


def compare_verdicts(reconstructions: torch.Tensor, metas: list[dict], before: list[tuple[bool, str]],
                     world: World = World(), keep: int = 8) -> tuple[float, list[dict]]:
    """The share of images whose verdict after reconstruction equals ``before``, and the first
    ``keep`` that changed: ``{"index", "prompt", "before", "after", "reason"}``."""
    same, failures = 0, []
    for i, (img, meta, (ok_before, why_before)) in enumerate(zip(to_uint8(reconstructions), metas, before)):
        ok_after, why_after = geneval.judge(img, meta, world)
        same += ok_after == ok_before
        if ok_after != ok_before and len(failures) < keep:
            failures.append({"index": i, "prompt": meta["prompt"], "before": ok_before, "after": ok_after,
                             "reason": why_after or why_before})
    return same / len(metas), failures


def evaluator_agreement(model, n: int = 500, seed: int = 0, world: World = World(),
                        keep: int = 8, **reconstruct_options: Any) -> tuple[float, list[dict]]:
    """Sample ``n`` scenes with their prompts, render and reconstruct them, and judge both images
    against the prompt: the share whose verdict is unchanged, and the first ``keep`` changes with the
    evaluator's reasons. ``reconstruct_options`` go to ``model.reconstruct``."""
    images, metas, before = reference_set(n, seed, world)
    return compare_verdicts(reconstruct(model, images, **reconstruct_options), metas, before, world, keep)


# --- the whole evaluation ----------------------------------------------------------------------
def device_of(model) -> torch.device:
    """Where a tokenizer's parameters live (the CPU for one without any)."""
    if isinstance(getattr(model, "device", None), torch.device):
        return model.device
    return next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.device("cpu"))


@torch.no_grad()
def _batched(fn, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(images), batch_size)])


def reconstruct(model, images: torch.Tensor, batch_size: int = 250, **options: Any) -> torch.Tensor:
    """``model.reconstruct`` in eval mode, batch by batch, clamped to [0, 1], on the CPU."""
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    out = _batched(lambda x: model.reconstruct(x, **options), images, device_of(model), batch_size)
    if was_training:
        model.train()
    return out.clamp(0, 1)


def variants(model) -> dict[str, dict]:
    """The ways to decode a tokenizer: ``{"": {}}``, or for a hybrid (whose ``reconstruct`` takes
    ``residual``) ``{"discrete": {"residual": False}, "discrete+residual": {"residual": True}}``."""
    if "residual" in inspect.signature(model.reconstruct).parameters:
        return {"discrete": {"residual": False}, "discrete+residual": {"residual": True}}
    return {"": {}}


def evaluate_tokenizer(model, n: int = 500, seed: int = 0, world: World = World(),
                       classifier: ShapesClassifier | None = None, batch_size: int = 250,
                       **reconstruct_options: Any) -> dict[str, float]:
    """Every metric of a tokenizer on the same ``n`` seeded scenes, as a flat dict of numbers.

    ``psnr``, ``ssim``, ``agreement``, ``tokens_per_image`` and ``bits_per_image`` always;
    ``shapes_fd`` (reconstructions against the renders) when a ``classifier`` is given; ``usage``
    and ``perplexity`` of the codes for discrete tokenizers (those with ``encode_indices``).
    ``reconstruct_options`` go to ``model.reconstruct`` (``residual=False`` for a hybrid's discrete
    path; then tokens and bits are those of the discrete tokens alone).
    """
    images, metas, before = reference_set(n, seed, world)
    recon = reconstruct(model, images, batch_size, **reconstruct_options)  # (n, 3, H, W)
    agreement, _ = compare_verdicts(recon, metas, before, world)
    result = {"psnr": psnr(recon, images), "ssim": ssim(recon, images), "agreement": agreement,
              "tokens_per_image": model.tokens_per_image, "bits_per_image": float(model.bits_per_image)}
    if classifier is not None:
        result["shapes_fd"] = shapes_fd(images, recon, classifier)
    if hasattr(model, "encode_indices"):
        indices = _batched(model.encode_indices, images, device_of(model), batch_size)  # (n, N)
        result["usage"], result["perplexity"] = codebook_stats(indices, model.codebook_size)
        if reconstruct_options.get("residual") is False:  # the hybrid's discrete tokens alone
            N = indices.shape[1]
            result["tokens_per_image"], result["bits_per_image"] = N, N * float(np.log2(model.codebook_size))
    return result
