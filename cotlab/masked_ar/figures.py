"""Figures of notebook 02: MaskGIT decoding step by step, and quality against forward passes."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from cotlab.metrics import as_image
from cotlab.plots import color, error_bars, finish, legend_outside

MASK_STATES = ("masked", "committed before", "committed now")
MASK_COLORS = ("#202024", "#9a9aa0", "#ff9f1c")


def mask_states(steps: list[dict], index: int = 0) -> np.ndarray:
    """(T, N) states of every position after each decoding step: 0 still masked, 1 committed at an
    earlier step, 2 committed at this step (``steps`` as ``sampling.Samples.steps`` records them for MaskGIT)."""
    masked = np.stack([s["masked"][index].numpy() for s in steps])  # (T, N)
    before = np.vstack([np.ones_like(masked[:1]), masked[:-1]])  # masked before each step
    return np.where(masked, 0, np.where(before, 2, 1))


def decoding_steps(steps: list[dict], index: int = 0, size: float = 1.3, save=None, name: str = "decoding",
                   title: str | None = None) -> Figure:
    """MaskGIT decoding of one image, step by step: the token grid after each step (dark: masked;
    grey: committed earlier; orange: committed at this step) above the intermediate image the step
    decodes (committed plus freshly sampled tokens)."""
    states = mask_states(steps, index)  # (T, N)
    T, N = states.shape
    side = int(round(N ** 0.5))
    fig, axes = plt.subplots(2, T, figsize=(T * size + 0.6, 2 * size + 0.6), squeeze=False)
    for t in range(T):
        axes[0, t].imshow(states[t].reshape(side, side), cmap=ListedColormap(MASK_COLORS), vmin=0, vmax=2)
        axes[0, t].set_title(f"step {t + 1}: {int((states[t] > 0).sum())}/{N}", fontsize=8)
        axes[1, t].imshow(as_image(steps[t]["image"][index]), interpolation="nearest")
        for ax in axes[:, t]:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_ylabel("tokens", fontsize=8)
    axes[1, 0].set_ylabel("image", fontsize=8)
    return finish(fig, save, name, title)


def passes_quality(rows: list[dict], save=None, name: str = "passes_quality", title: str | None = None) -> Figure:
    """GenEval overall against transformer forward passes per image (log scale) for the rows of
    ``bench_decoding``, in each generator's colour: circles for masked decoding (labelled with its
    steps), squares for raster order; a row's 95 % interval, if it has one, as an error bar."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for r in rows:
        masked = r["order"] == "masked"
        span = (r.get("interval") or {}).get("overall")
        ax.errorbar(r["forward_passes"], r["overall"], yerr=error_bars([r["overall"]], [span]),
                    fmt="o" if masked else "s", color=color(r["generator"]), ms=8 if masked else 9, elinewidth=0.8,
                    capsize=2, label=f"{r['generator']} ({r['tokens']} tokens, {r['order']})")
        ax.annotate(f"{r['steps']} steps" if masked else "raster", (r["forward_passes"], r["overall"]),
                    textcoords="offset points", xytext=(7, -3), fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    legend_outside(ax, list(unique.values()))
    ax.set_xscale("log")
    ax.set(xlabel="transformer forward passes per image (log scale)", ylabel="GenEval overall", ylim=(0, 1))
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, save, name)
