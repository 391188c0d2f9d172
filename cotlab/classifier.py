"""The Shapes classifier: a small CNN naming each grid cell's content, whose features define Shapes-FD.

Inception's weights cannot be downloaded (and Shapes are not ImageNet), so ``cotlab.metrics.shapes_fd``
measures distances in the pooled penultimate features of this network, trained here on clean renders
(``cotlab train shapes_classifier``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cotlab.harness import Model, Recipe
from cotlab.profiles import ProfileConfig
from cotlab.shapes import COLORS, SHAPES, Scene, World, make_batch

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


class ShapesClassifier(Model):
    """A small CNN naming each grid cell's content (empty, or one of the colour × shape classes).

    Three stride-2 stages take a 32×32 image to one D-vector per 8×8 cell (receptive field 17 px: the
    cell and the edges of its neighbours); a 1×1 convolution gives the cell's logits. The D-vectors,
    averaged over cells, are ``features``: the space of Shapes-FD.
    """

    Config = ShapesClassifierConfig
    PROGRESS = ("acc",)

    def __init__(self, config: ShapesClassifierConfig):
        super().__init__(config)  # trained by AdamW with a cosine decay to zero over max_steps
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

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log_step("val", batch)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Cross-entropy over every cell, and cell accuracy."""
        logits = self(batch["image"])  # (B, classes, g, g)
        loss = F.cross_entropy(logits, batch["cells"])
        return loss, {"acc": (logits.argmax(1) == batch["cells"]).float().mean()}


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
