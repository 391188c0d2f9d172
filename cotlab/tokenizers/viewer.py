"""``TokenViewer``: pick an image and a tokenizer and see its tokens (notebook 01's widget).

As every widget of ``cotlab.widgets``: ``render(...) -> Figure`` headless, ``widget()`` for JupyterLab.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from cotlab.errors import CotlabError
from cotlab.geneval import judge
from cotlab.metrics import device_of, to_uint8
from cotlab.shapes import World, make_batch
from cotlab.tokenizers.metrics import codebook_stats, reconstruct, variants
from cotlab.widgets import controls_over_figure, shown_once


class TokenViewer:
    """Pick an image and a tokenizer and see its tokens: the original beside the reconstruction(s)
    (both paths of a hybrid), each judged against the image's prompt; the codebook indices as a map
    over the token grid; how often each code is used over the whole batch; and for a hybrid the
    magnitude |Z_r| of the continuous residual at each position.

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
        panels = len(shown) + (2 if tokens["indices"] is not None else 0) + (tokens["residual"] is not None)
        fig, axes = plt.subplots(1, panels, figsize=(2.9 * panels, 3.4), squeeze=False)
        axes = list(axes[0])

        for ax, (label, image) in zip(axes, shown.items()):
            image = to_uint8(image[None])[0]  # (H, W, 3)
            correct, _ = judge(image, meta, self.world)
            ax.imshow(image, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{label} {'✓' if correct else '✗'}", fontsize=10,
                         color="tab:green" if correct else "tab:red")
        axes = axes[len(shown):]

        if tokens["indices"] is not None:
            K = model.codebook_size
            idx = tokens["indices"][index]  # (N,)
            g = int(round(len(idx) ** 0.5))
            ax = axes.pop(0)
            ax.imshow(idx.reshape(g, g).numpy(), cmap="viridis", vmin=0, vmax=K - 1)
            for k, code in enumerate(idx.tolist()):
                ax.text(k % g, k // g, str(code), ha="center", va="center", color="white",
                        fontsize=10 if g <= 4 else 6,
                        bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.3, "alpha": 0.4})
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"codebook indices ({g}×{g} of {K} codes)", fontsize=10)

            ax = axes.pop(0)
            counts = np.bincount(tokens["indices"].flatten().numpy(), minlength=K)  # (K,)
            usage, perplexity = codebook_stats(tokens["indices"], K)
            mine = np.zeros(K, bool)
            mine[idx.numpy()] = True
            ax.bar(np.arange(K), counts, width=1.0, color=np.where(mine, "tab:orange", "tab:blue"))
            ax.set_xlim(-0.5, K - 0.5)
            ax.set_xlabel("code (orange: in this image)", fontsize=8)
            ax.set_ylabel(f"uses in {len(self.images)} images", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_title(f"usage {usage:.0%}, perplexity {perplexity:.1f}", fontsize=10)

        if tokens["residual"] is not None:
            ax = axes.pop(0)
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
