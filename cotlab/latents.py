"""Generators over a frozen autoencoder's latents, conditioned on the frozen text encoder, and the
cached latents they train on.

``LatentGenerator`` is what the continuous-latent generators share (the linear DiT of notebook 04, the
next-X models of notebook 03): a latent z = E(x)·s of the notebook-01 DC-AE (s its scaling factor, so
z has unit variance), and the caption's per-token states from the notebook-00 text encoder. Both
parts are frozen, so their outputs never change: ``CachedLatents`` encodes a fixed set of training
scenes once (latents, and the states of each distinct caption), keeps it under ``runs/latent_cache/``
and serves batches from it, instead of rendering and encoding every batch again.
"""
from __future__ import annotations

import hashlib
import json

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from cotlab.harness import Model, checkpoint_card, checkpoint_config
from cotlab.io import RUNS_DIR, atomic_output


class LatentGenerator(Model):
    """A model whose images are latents of the autoencoder named by ``config.autoencoder``, conditioned
    on the text encoder named by ``config.text_encoder`` (both frozen parts, see ``Model.frozen``)."""

    def __init__(self, config):
        super().__init__(config)
        ae = checkpoint_config(config.autoencoder)
        self.latent_channels = ae["latent_channels"]
        self.latent_size = ae["image_size"] // 2 ** (len(ae["block_out_channels"]) - 1)
        self.text_width = checkpoint_config(config.text_encoder)["width"]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent."""
        return self.latent_channels, self.latent_size, self.latent_size

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents z·s (B, C, h, w) of images (B, 3, H, W) in [0, 1]."""
        ae = self.frozen("autoencoder")
        return ae.encode(images.to(self.device)) * ae.scaling_factor

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] of scaled latents (B, C, h, w)."""
        ae = self.frozen("autoencoder")
        return ae.decode(z.to(self.device) / ae.scaling_factor)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token text states (B, T, D_text) and their mask (B, T), 1 on real tokens."""
        _, hidden, mask = self.frozen("text_encoder").encode_text(list(captions))
        return hidden, mask

    def prefix(self, captions: list[str], cfg: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The text states for sampling, computed once: the captions', followed by as many empty
        captions' when guidance is on (cfg ≠ 1)."""
        captions = list(captions)
        return self.encode_text(captions if cfg == 1.0 else captions + [""] * len(captions))


def prefix_rows(prefix: tuple[torch.Tensor, ...], rows: torch.Tensor, guided: bool) -> tuple[torch.Tensor, ...]:
    """The text states of ``rows`` (R,) of a ``LatentGenerator.prefix`` of B captions: those rows, and
    when ``guided`` also their empty-caption twins (rows + B), as (R or 2R, …) each."""
    B = len(prefix[0]) // (2 if guided else 1)
    index = torch.cat([rows, rows + B]) if guided else rows
    return tuple(p[index.to(p.device)] for p in prefix)


# --- cached training latents -----------------------------------------------------------------------
def build_latent_cache(autoencoder: str, text_encoder: str, scenes: int, seed: int, batch: int = 256) -> dict:
    """``scenes`` training scenes of the Shapes world (drawn from ``seed``) encoded once: ``latent``
    (N, C, h, w) scaled latents, ``caption`` (N,) the index of each scene's caption in ``text``
    (U, T, D_text) and ``mask`` (U, T), the states of the U distinct captions, and ``captions`` (U)."""
    from cotlab.harness import load_checkpoint
    from cotlab.shapes import World, make_batch

    ae, clip = load_checkpoint(autoencoder), load_checkpoint(text_encoder)
    world, rng = World(), np.random.default_rng(np.random.SeedSequence([seed, 7]))
    latents, captions = [], []
    with torch.no_grad():
        for start in range(0, scenes, batch):
            b = make_batch(world, rng, min(batch, scenes - start))
            latents.append(ae.encode(b["image"]) * ae.scaling_factor)
            captions += b["caption"]
        distinct = sorted(set(captions))
        states = [clip.encode_text(distinct[i:i + batch])[1:] for i in range(0, len(distinct), batch)]
    index = {c: i for i, c in enumerate(distinct)}
    return {"latent": torch.cat(latents), "caption": torch.tensor([index[c] for c in captions]),
            "text": torch.cat([s[0] for s in states]), "mask": torch.cat([s[1] for s in states]),
            "captions": distinct}


def load_or_build_latent_cache(autoencoder: str, text_encoder: str, scenes: int, seed: int = 0) -> dict:
    """``build_latent_cache``, kept in runs/latent_cache/ under a hash of its arguments and the two
    checkpoints (retrained parts get a new cache)."""
    cards = [checkpoint_card(name).get("date") for name in (autoencoder, text_encoder)]
    key = hashlib.sha1(json.dumps([autoencoder, text_encoder, scenes, seed, cards]).encode()).hexdigest()[:12]
    path = RUNS_DIR / "latent_cache" / f"{autoencoder}-{scenes}-{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    with torch.random.fork_rng():
        cache = build_latent_cache(autoencoder, text_encoder, scenes, seed)
    with atomic_output(path) as tmp:
        torch.save(cache, tmp)
    return cache


class _CachedBatches(IterableDataset):
    """Endless batches of the cache, in a fresh random order each pass (from ``seed``); of each pass's
    batches, rank r of W distributed ranks takes the r-th, (r+W)-th, … (as a ``DistributedSampler``
    would), so no two ranks train on the same batch."""

    def __init__(self, cache: dict, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.cache, self.batch_size, self.seed, self.rank, self.world_size = cache, batch_size, seed, rank, world_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        N = len(self.cache["latent"])
        while True:
            order = torch.randperm(N, generator=generator)
            starts = range(0, N - self.batch_size + 1, self.batch_size)
            for start in starts[self.rank::self.world_size]:
                rows = order[start:start + self.batch_size]
                captions = self.cache["caption"][rows]
                yield {"latent": self.cache["latent"][rows], "text": self.cache["text"][captions],
                       "text_mask": self.cache["mask"][captions]}


class CachedLatents(L.LightningDataModule):
    """Training batches of cached latents: ``latent`` (B, C, h, w), ``text`` (B, T, D_text) and
    ``text_mask`` (B, T) — ``scenes`` scenes encoded once (``load_or_build_latent_cache``)."""

    def __init__(self, autoencoder: str, text_encoder: str, scenes: int, batch_size: int, seed: int = 0):
        super().__init__()
        self.autoencoder, self.text_encoder, self.scenes = autoencoder, text_encoder, scenes
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        cache = load_or_build_latent_cache(self.autoencoder, self.text_encoder, self.scenes)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if len(cache["latent"]) < self.batch_size * world_size:
            raise ValueError(f"a cache of {self.scenes} scenes cannot fill a batch of {self.batch_size}"
                             + (f" on each of {world_size} ranks" if world_size > 1 else ""))
        return DataLoader(_CachedBatches(cache, self.batch_size, self.seed, rank, world_size), batch_size=None)
