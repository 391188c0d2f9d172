"""How good is a tokenizer? Evaluator agreement and codebook statistics, beside PSNR, SSIM and Shapes-FD.

A tokenizer is judged by what survives the round trip image → tokens → image. PSNR, SSIM and Shapes-FD
(a Fréchet distance in the features of ``cotlab.classifier.ShapesClassifier``, *not* comparable to
Inception FID) live in ``cotlab.metrics``; this module adds what is particular to tokenizers:

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
from typing import Any

import numpy as np
import torch

from cotlab import geneval
from cotlab.classifier import ShapesClassifier
from cotlab.stats import bootstrap_interval, proportion_interval
from cotlab.metrics import device_of, psnr_per_image, shapes_fd_with_interval, ssim_per_image, to_uint8
from cotlab.shapes import World, make_batch


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
    """Every metric of a tokenizer on the same ``n`` seeded scenes: a dict of numbers, and under
    ``interval`` the 95 % intervals of PSNR, SSIM (bootstrap over scenes), agreement (Wilson's) and
    Shapes-FD.

    ``psnr``, ``ssim``, ``agreement``, ``tokens_per_image`` and ``bits_per_image`` always;
    ``shapes_fd`` (reconstructions against the renders) when a ``classifier`` is given; ``usage``
    and ``perplexity`` of the codes for discrete tokenizers (those with ``encode_indices``).
    ``reconstruct_options`` go to ``model.reconstruct`` (``residual=False`` for a hybrid's discrete
    path; then tokens and bits are those of the discrete tokens alone).
    """
    images, metas, before = reference_set(n, seed, world)
    recon = reconstruct(model, images, batch_size, **reconstruct_options)  # (n, 3, H, W)
    agreement, _ = compare_verdicts(recon, metas, before, world)
    psnrs, ssims = psnr_per_image(recon, images), ssim_per_image(recon, images)  # (n,) each
    result = {"psnr": psnrs.mean().item(), "ssim": ssims.mean().item(), "agreement": agreement,
              "tokens_per_image": model.tokens_per_image, "bits_per_image": float(model.bits_per_image)}
    interval = {"psnr": bootstrap_interval(np.mean, psnrs.numpy()), "ssim": bootstrap_interval(np.mean, ssims.numpy()),
                "agreement": proportion_interval(round(agreement * n), n)}
    if classifier is not None:
        result["shapes_fd"], interval["shapes_fd"] = shapes_fd_with_interval(images, recon, classifier)
    if hasattr(model, "encode_indices"):
        indices = _batched(model.encode_indices, images, device_of(model), batch_size)  # (n, N)
        result["usage"], result["perplexity"] = codebook_stats(indices, model.codebook_size)
        if reconstruct_options.get("residual") is False:  # the hybrid's discrete tokens alone
            N = indices.shape[1]
            result["tokens_per_image"], result["bits_per_image"] = N, N * float(np.log2(model.codebook_size))
    return {**result, "interval": interval}


def residual_gain(model, n: int = 500, seed: int = 0, world: World = World()) -> dict:
    """What a hybrid's residual adds, on the same ``n`` scenes: PSNR(discrete + residual) − PSNR(discrete),
    the mean over scenes of the per-scene gain, with its paired 95 % bootstrap interval."""
    images, _, _ = reference_set(n, seed, world)
    gain = (psnr_per_image(reconstruct(model, images, residual=True), images)
            - psnr_per_image(reconstruct(model, images, residual=False), images)).numpy()  # (n,) dB
    return {"psnr": float(gain.mean()), "interval": bootstrap_interval(np.mean, gain)}
