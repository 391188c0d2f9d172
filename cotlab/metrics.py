"""Image conversions and image metrics, one home for each: PSNR, SSIM and Shapes-FD.

Images are (B, 3, H, W) floats in [0, 1] inside models and (B, H, W, 3) uint8 where the evaluator and
the renderer read and write them; ``to_uint8`` and ``to_tensor`` convert, ``as_image`` readies one
image for ``imshow``.

- **PSNR** = 10·log10(1 / MSE) on [0, 1] images and **SSIM** (Wang et al., *Image Quality Assessment:
  From Error Visibility to Structural Similarity*, IEEE TIP 2004), the windowed product of luminance,
  contrast and structure terms; both per image (torchmetrics), then averaged. Identical images have
  PSNR = ∞ and SSIM = 1.
- **Shapes-FD**: as FID does (Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium*, arXiv 1706.08500), fit a Gaussian (μ, Σ) to features of real renders
  and one to features of reconstructions or generations, and take their Fréchet distance

      FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).

  The features are the pooled penultimate activations of ``cotlab.classifier.ShapesClassifier``, a
  small CNN trained here to name each grid cell's content, since Inception's weights cannot be
  downloaded (and Shapes are not ImageNet). **Shapes-FD is not comparable to Inception FID**, nor to a
  Shapes-FD of another classifier checkpoint; compare it only at equal numbers of images (FD is
  biased upward at small n). For scale, with the shipped classifier and 500 images: two independent
  sets of renders are ≈ 0.12 apart; the same renders blurred by σ = 0.5, 1 and 1.5 px are ≈ 0.05, 0.75
  and 1.9 from the originals.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from cotlab.stats import bootstrap_interval, bootstrap_values, quantile_interval


# --- conversions -------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> (B, H, W, 3) uint8, as the evaluator reads images."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def as_image(x) -> np.ndarray:
    """One image for ``imshow``: (3, H, W) float in [0, 1] -> (H, W, 3); (H, W, 3) uint8 as it is."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return x


def device_of(model) -> torch.device:
    """Where a model's parameters live (the CPU for one without any)."""
    if isinstance(getattr(model, "device", None), torch.device):
        return model.device
    return next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.device("cpu"))


# --- pixel metrics -----------------------------------------------------------------------------
def psnr_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """10·log10(1 / MSE) of each image pair, (B,), for (B, 3, H, W) images in [0, 1] (∞ if identical)."""
    return peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of 10·log10(1 / MSE), for (B, 3, H, W) images in [0, 1] (∞ if identical)."""
    return psnr_per_image(x, y).mean().item()


def pooled_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """10·log10(1 / MSE) with the MSE pooled over every pixel of every image (finite even when one
    image matches exactly), for (B, 3, H, W) images in [0, 1]."""
    return (10 * torch.log10(1 / (x - y).square().mean())).item()


def psnr_of_errors(mse: np.ndarray) -> float:
    """10·log10(1 / mean MSE) of per-image errors (B,): ``pooled_psnr`` from its pieces, so a bootstrap
    can resample images."""
    return float(10 * np.log10(1 / mse.mean()))


def pooled_psnr_with_interval(x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float]]:
    """``pooled_psnr`` and its 95 % bootstrap interval (images resampled)."""
    mse = (x - y).square().mean((1, 2, 3)).double().cpu().numpy()  # (B,)
    return psnr_of_errors(mse), bootstrap_interval(psnr_of_errors, mse)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (11-px Gaussian window, σ = 1.5) of each image pair, (B,), for images in [0, 1]."""
    return structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of SSIM (11-px Gaussian window, σ = 1.5), for images in [0, 1]."""
    return ssim_per_image(x, y).mean().item()


# --- Shapes-FD ---------------------------------------------------------------------------------
@torch.no_grad()
def features(images: torch.Tensor, classifier, batch_size: int = 500) -> torch.Tensor:
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


def shapes_fd(real_images: torch.Tensor, fake_images: torch.Tensor, classifier) -> float:
    """Shapes-FD between two sets of (B, 3, H, W) images in [0, 1] (not comparable to Inception FID)."""
    return frechet_distance(*feature_statistics(features(real_images, classifier)),
                            *feature_statistics(features(fake_images, classifier)))


def shapes_fd_with_interval(real_images: torch.Tensor, fake_images: torch.Tensor, classifier,
                            resamples: int = 200) -> tuple[float, list[float]]:
    """Shapes-FD and a 95 % interval from bootstrap resamples of both sets, image by image
    (``shapes_fd_contrast`` with one set)."""
    result = shapes_fd_contrast(real_images, [fake_images], (1,), classifier, resamples=resamples)
    return result["value"], result["interval"]


def shapes_fd_contrast(real_images: torch.Tensor, fake_sets: list[torch.Tensor], weights: tuple[float, ...],
                       classifier, per_prompt: int = 1, resamples: int = 200) -> dict:
    """Σ_k w_k·FD(real, fake_k) for image sets paired item by item with ``real`` (the same prompts and
    seeds), with a 95 % interval: ``{"value": v, "interval": [lo, hi]}``. Weights (1,) give one FD,
    (1, −1) a paired difference of two, (1, −1, −1, 1) a difference of two differences.

    Every set is (P·n, 3, H, W), the n = ``per_prompt`` images of each prompt in a row; a resample
    draws P prompts with replacement and keeps each one's images in every set, so the sets stay paired
    and a prompt's correlated samples move together. The interval is the resamples' spread centred on
    the full sets' value: a resample repeats images, which lowers the diversity FD sees and so raises
    FD by a bias larger than its spread, and the percentile interval itself would miss the estimate
    (in a contrast the bias mostly cancels)."""
    def by_prompt(images):  # (P, n, D)
        f = features(images, classifier)
        return f.reshape(-1, per_prompt, f.shape[-1])

    def contrast(real, *fakes):
        flat = [x.reshape(-1, x.shape[-1]) for x in (real, *fakes)]  # (P·n, D) each
        reference = feature_statistics(flat[0])
        return sum(w * frechet_distance(*reference, *feature_statistics(f)) for w, f in zip(weights, flat[1:], strict=True))
    columns = [by_prompt(real_images), *map(by_prompt, fake_sets)]
    full, resampled = contrast(*columns), bootstrap_values(contrast, *columns, resamples=resamples)
    return {"value": full, "interval": quantile_interval(resampled - np.median(resampled) + full)}
