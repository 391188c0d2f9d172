"""Tiny stand-in tokenizers with the interface of ``cotlab.tokenizers``, for testing what measures or
shows tokenizers without training one.

- ``Identity``: continuous, reconstructs perfectly.
- ``Blur``: continuous, a Gaussian blur of σ pixels.
- ``CellColours``: discrete, one token per grid cell: the nearest of 8 colours to the cell's mean.
- ``HybridCells``: ``CellColours`` plus a continuous residual (the exact difference, per cell), so
  ``reconstruct(images, residual=True)`` is perfect and ``residual=False`` is the discrete path.
"""
import torch
import torch.nn.functional as F


class Identity:
    tokens_per_image = 32 * 32
    bits_per_image = 3 * 32 * 32 * 16.0

    def reconstruct(self, images):
        return images.clone()


class Blur(Identity):
    def __init__(self, sigma: float = 1.0):
        self.sigma = sigma

    def reconstruct(self, images):
        x = torch.arange(-3, 4, dtype=images.dtype)
        k = torch.exp(-x ** 2 / (2 * self.sigma ** 2))
        k = k / k.sum()
        out = F.conv2d(F.pad(images, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).expand(3, 1, 1, 7),
                       groups=3)
        return F.conv2d(F.pad(out, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).expand(3, 1, 7, 1),
                        groups=3)


class CellColours:
    codebook = torch.tensor([[r, g, b] for r in (0.1, 0.5) for g in (0.1, 0.5) for b in (0.1, 0.5)])  # (K, 3)
    codebook_size = 8
    cell = 8
    tokens_per_image = 16
    bits_per_image = 16 * 3.0

    def encode_indices(self, images):
        means = F.avg_pool2d(images, self.cell).flatten(2).transpose(1, 2)  # (B, N, 3)
        return torch.cdist(means, self.codebook.expand(len(images), -1, -1)).argmin(-1)  # (B, N)

    def decode_indices(self, indices):
        g = int(indices.shape[1] ** 0.5)
        colours = self.codebook[indices].transpose(1, 2).reshape(len(indices), 3, g, g)  # (B, 3, g, g)
        return F.interpolate(colours, scale_factor=self.cell, mode="nearest")

    def reconstruct(self, images):
        return self.decode_indices(self.encode_indices(images))


class HybridCells(CellColours):
    bits_per_image = 16 * 3.0 + 3 * 32 * 32 * 16.0

    def encode(self, images):
        """(indices (B, N), Z_r (B, 3·8·8, 4, 4)): what the tokens leave out, one vector per cell."""
        indices = self.encode_indices(images)
        return indices, F.pixel_unshuffle(images - self.decode_indices(indices), self.cell)

    def decode(self, indices, residual=None):
        discrete = self.decode_indices(indices)
        return discrete if residual is None else discrete + F.pixel_shuffle(residual, self.cell)

    def reconstruct(self, images, residual: bool = True):
        indices, z_r = self.encode(images)
        return self.decode(indices, z_r if residual else None)
