"""``TokenViewer``: pick an image and a tokenizer and see its tokens (notebook 01's widget).

As every widget of ``cotlab.widgets``: ``render(...) -> Figure`` headless, ``widget()`` for JupyterLab.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.metrics import device_of, to_uint8
from cotlab.shapes import World, make_batch
from cotlab.tokenizers.metrics import codebook_stats, reconstruct, variants
from cotlab.widgets import controls_over_figure, shown_once

PALETTE = np.array(plt.get_cmap("tab20").colors)  # (20, 3): code ids are categories, not a scale


def code_colours(codes: np.ndarray) -> np.ndarray:
    """(…, 3) RGB of each code id, ``PALETTE[id mod 20]``: a repeated code shows its colour again."""
    return PALETTE[codes % len(PALETTE)]


class TokenViewer:
    """Pick an image and a tokenizer and see its tokens: above, the original beside the
    reconstruction(s) (both paths of a hybrid), each judged against the image's prompt; below, the
    codebook indices over the token grid (each id in its colour and written in), how often each code
    is used over the whole batch, and for a hybrid the magnitude |Z_r| of the continuous residual at
    each position. The figure has one size for every tokenizer.

    ``tokenizers`` maps names to models with the ``cotlab.tokenizers`` interface; the images are a
    fixed batch of ``n`` scenes drawn with ``seed``. A hybrid (``reconstruct(images, residual)``)
    encodes to ``(indices, Z_r)``, Z_r of shape (B, C, h, w).
    """

    def __init__(self, tokenizers: dict, n: int = 32, seed: int = 0, world: World = World()):
        if not tokenizers:
            raise CotlabError("TokenViewer needs tokenizers: pass {name: model}, "
                              "e.g. {'vq_f8': load_checkpoint('vq_f8')}")
        self.tokenizers, self.world = dict(tokenizers), world
        batch = make_batch(world, np.random.default_rng(seed), n)
        self.images, self.metas = batch["image"], batch["meta"]  # (n, 3, H, W), prompts
        self.index, self.name = 0, next(iter(self.tokenizers))
        self._tokens: dict[str, dict] = {}

    def tokens(self, name: str) -> dict:
        """What tokenizer ``name`` makes of the whole batch (computed once): ``reconstructions``
        {variant: (n, 3, H, W)}, ``indices`` (n, N) or None, ``residual`` |Z_r| (n, h, w) or None."""
        if name not in self.tokenizers:
            raise CotlabError(f"unknown tokenizer {name!r}: choose one of {', '.join(self.tokenizers)}")
        if name not in self._tokens:
            model = self.tokenizers[name]
            device = device_of(model)
            with torch.no_grad():
                x = self.images.to(device)
                ways = variants(model)
                self._tokens[name] = {
                    "reconstructions": {label: reconstruct(model, self.images, **options)
                                        for label, options in ways.items()},
                    "indices": model.encode_indices(x).cpu() if hasattr(model, "encode_indices") else None,
                    "residual": (model.encode(x)[1].norm(dim=1).cpu()  # (n, h, w): |Z_r| per position
                                 if "discrete+residual" in ways else None),
                }
        return self._tokens[name]

    def render(self, index: int | None = None, name: str | None = None) -> Figure:
        """The panels for image ``index`` and tokenizer ``name`` (default: the current ones).
        The figure is closed to pyplot (no duplicate inline display); save or display it."""
        index = self.index if index is None else index
        name = self.name if name is None else name
        if not 0 <= index < len(self.images):
            raise CotlabError(f"image {index} is out of range: choose 0 … {len(self.images) - 1}")
        tokens, model = self.tokens(name), self.tokenizers[name]
        meta = self.metas[index]
        shown = {"original": self.images[index]}
        shown.update({label or "reconstruction": r[index] for label, r in tokens["reconstructions"].items()})
        fig = plt.figure(figsize=(10.5, 7))  # one size for every tokenizer, so the text reads the same …
        fig.add_artist(Rectangle((0, 0), 1, 1, transform=fig.transFigure, fill=False, ec="none"))  # … cropped too
        grid = fig.add_gridspec(2, 3)

        for k, (label, image) in enumerate(shown.items()):  # top row: the images
            ax = fig.add_subplot(grid[0, k])
            image = to_uint8(image[None])[0]  # (H, W, 3)
            correct, _ = judge(image, meta, self.world)
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{label} {'✓' if correct else '✗'}", fontsize=10,
                         color="tab:green" if correct else "tab:red")

        if tokens["indices"] is not None:  # bottom row: the tokens
            K = model.codebook_size
            idx = tokens["indices"][index]  # (N,)
            g = int(round(len(idx) ** 0.5))
            ax = fig.add_subplot(grid[1, 0])
            colours = code_colours(idx.numpy())  # (N, 3)
            ax.imshow(colours.reshape(g, g, 3))
            for k, code in enumerate(idx.tolist()):
                ax.text(k % g, k // g, str(code), ha="center", va="center", fontsize=10 if g <= 4 else 6,
                        color="black" if colours[k] @ (0.299, 0.587, 0.114) > 0.5 else "white")  # by luminance
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"codebook indices ({g}×{g} of {K} codes)", fontsize=10)

            ax = fig.add_subplot(grid[1, 1])
            counts = np.bincount(tokens["indices"].flatten().numpy(), minlength=K)  # (K,)
            usage, perplexity = codebook_stats(tokens["indices"], K)
            ax.bar(np.arange(K), counts, width=1.0, color="0.6")
            mine = np.unique(idx.numpy())
            ax.scatter(mine, counts[mine], c=code_colours(mine), s=16, edgecolors="black", linewidths=0.4, zorder=3)
            ax.set_xlim(-0.5, K - 0.5)
            ax.set_xlabel("code id (dots: the codes of this image)", fontsize=8)
            ax.set_ylabel(f"uses in {len(self.images)} images", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_title(f"usage {usage:.0%}, perplexity {perplexity:.1f}", fontsize=10)
        else:
            fig.text(0.5, 0.27, f"{name} has no codebook: its latent is continuous", ha="center", fontsize=10,
                     color="0.4")

        if tokens["residual"] is not None:
            ax = fig.add_subplot(grid[1, 2])
            r = tokens["residual"][index]  # (h, w)
            ax.imshow(r.numpy(), cmap="magma", vmin=0, vmax=float(tokens["residual"].max()) or 1.0)
            if r.shape[0] <= 8:
                for (i, j), value in np.ndenumerate(r.numpy()):
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white",
                            fontsize=9 if r.shape[0] <= 4 else 6,
                            bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.3, "alpha": 0.4})
            ax.set(xticks=[], yticks=[])
            ax.set_title("residual |Z_r| per position", fontsize=10)

        return shown_once(fig, f"{name}: {model.tokens_per_image} tokens, {model.bits_per_image:.0f} bits per "
                               f"image — image {index}: “{meta['prompt']}”")

    def widget(self):
        """A slider for the image and a dropdown for the tokenizer above the figure, redrawn on
        every change. The controls are kept as ``picker``, ``choice`` and ``output``."""
        import ipywidgets as W

        self.picker = W.IntSlider(value=self.index, min=0, max=len(self.images) - 1, description="image")
        self.choice = W.Dropdown(options=list(self.tokenizers), value=self.name, description="tokenizer")

        box, self.output = controls_over_figure(self, {"index": self.picker, "name": self.choice})
        return box
