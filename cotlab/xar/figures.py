"""The figures of notebook 03."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from cotlab.metrics import as_image
from cotlab.plots import color, error_bars, finish, legend_outside
from cotlab.xar.entities import ENTITIES, Layout

SHOWN_STEPS = 5  # at most this many AR steps per entity row (token's 16 are sampled evenly)


def entity_maps(size: int = 4, save=None, name: str = "entities", title: str | None = None) -> Figure:
    """The five entities on the h×w latent grid: each position coloured and numbered by the AR step
    that makes it (for ``scale``, the three grids of its steps)."""
    fig, axes = plt.subplots(1, len(ENTITIES) + 2, figsize=(2.0 * (len(ENTITIES) + 2), 2.3))
    panels = [(kind, None) for kind in ENTITIES if kind != "scale"] + [("scale", s) for s in Layout("scale").scales]
    for ax, (kind, side) in zip(axes, panels):
        layout = Layout(kind, size)
        if kind == "scale":
            step = layout.scales.index(side)
            grid = np.full((side, side), step)
            label = f"scale: step {step + 1} ({side}×{side})"
        else:
            grid = np.empty(size * size, dtype=int)
            grid[layout.order.numpy()] = layout.entity.numpy()
            grid = grid.reshape(size, size)
            label = f"{kind}: {layout.entities} step{'s' if layout.entities > 1 else ''}"
        ax.imshow(grid, cmap="tab20" if layout.entities > 10 else "Set2", vmin=0,
                  vmax=max(layout.entities - 1, 1), extent=(0, side or size, side or size, 0))
        for (r, c), value in np.ndenumerate(grid):
            ax.text(c + 0.5, r + 0.5, str(value + 1), ha="center", va="center", fontsize=8)
        ax.set(xticks=[], yticks=[], title=label)
        ax.title.set_fontsize(8)
    return finish(fig, save, name, title)


def entity_steps(model_layouts: dict[str, Layout], decode, latent: torch.Tensor, save=None, name: str = "entity_steps",
                 title: str | None = None) -> Figure:
    """One latent (C, h, w) built up entity by entity, a row per entity type: the image after each AR
    step (entities not yet made at the mean latent; ``scale``: the last scale, upsampled); ``decode``
    maps latents (B, C, h, w) to images."""
    rows = {}
    for kind, layout in model_layouts.items():
        tokens = layout.to_tokens(latent[None])
        steps = np.unique(np.linspace(1, layout.entities, min(layout.entities, SHOWN_STEPS)).round().astype(int))
        rows[kind] = (steps, decode(torch.cat([layout.partial_latent(tokens, int(n)) for n in steps])))
    ncols = max(len(s) for s, _ in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.25 * ncols + 1.2, 1.3 * len(rows)), squeeze=False)
    for i, (kind, (steps, images)) in enumerate(rows.items()):
        for j, ax in enumerate(axes[i]):
            ax.set(xticks=[], yticks=[])
            if j < len(steps):
                ax.imshow(as_image(images[j]), interpolation="nearest")
                ax.set_title(f"after step {steps[j]}", fontsize=7)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(kind, rotation=0, ha="right", va="center", fontsize=8)
    return finish(fig, save, name, title)


def entity_table(result: dict, save=None, name: str = "ablation", title: str | None = None) -> Figure:
    """The entity table of a ``bench_xar`` result as two panels: GenEval overall and Shapes-FD, each
    with its 95 % interval, a bar per model."""
    rows = result["rows"]
    labels = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, interval, label in ((axes[0], "overall", "interval", "GenEval overall (higher is better)"),
                                     (axes[1], "shapes_fd", "shapes_fd_interval", "Shapes-FD (lower is better)")):
        values = [r[key] for r in rows]
        ax.bar(range(len(rows)), values, yerr=error_bars(values, [r[interval] for r in rows]), capsize=3,
               color=[color(m) for m in labels])
        ax.set_xticks(range(len(rows)), [m.removeprefix("xar_") for m in labels], rotation=30, ha="right", fontsize=8)
        ax.set(ylabel=label)
        ax.grid(axis="y", alpha=0.3)
    return finish(fig, save, name, title)


def exposure_bias(result: dict, save=None, name: str = "exposure_bias", title: str | None = None) -> Figure:
    """The exposure-bias curves of a ``bench_xar`` result against n, the entities given from the ground
    truth, a line per model, with 95 % intervals: GenEval overall, and the gaps to the model's own
    samples on GenEval (given − own) and on Shapes-FD (own − given) — positive: what its own context costs."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    panels = (("GenEval overall", lambda p: (p["overall"], p["interval"])),
              ("GenEval gap: given n − own", lambda p: (p["gap"]["difference"], p["gap"]["interval"])),
              ("Shapes-FD gap: own − given n", lambda p: (p["shapes_fd_gap"]["value"], p["shapes_fd_gap"]["interval"])))
    for model, curve in result["exposure_bias"].items():
        n = [p["given"] for p in curve]
        for ax, (label, point) in zip(axes, panels):
            values, intervals = zip(*map(point, curve))
            ax.errorbar(n, values, yerr=error_bars(values, intervals), fmt="o-", capsize=3, color=color(model),
                        label=model)
            ax.set(xlabel="entities given from the ground truth (n)", ylabel=label)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend_outside(axes[-1])
    return finish(fig, save, name, title)


def masks(layout: Layout, save=None, name: str = "masks", title: str | None = None) -> Figure:
    """The two attention masks of ``layout`` (white: may attend): block-causal for noisy context
    learning (L × L), and teacher forcing's over [clean copy; noisy copy] (2L × 2L)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2), gridspec_kw={"width_ratios": [1, 1]})
    L = layout.length
    for ax, mask, label in ((axes[0], layout.block_causal_mask(), "noisy context: block-causal (L × L)"),
                            (axes[1], layout.teacher_forcing_mask(), "teacher forcing: [clean; noisy] (2L × 2L)")):
        ax.imshow(mask.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=label, xlabel="key token", ylabel="query token")
        ax.title.set_fontsize(9)
    for position in (L - 0.5,):
        axes[1].axhline(position, color="tab:red", lw=1)
        axes[1].axvline(position, color="tab:red", lw=1)
    axes[1].text(L / 2, -1.5, "clean", ha="center", fontsize=8, color="tab:red")
    axes[1].text(1.5 * L, -1.5, "noisy", ha="center", fontsize=8, color="tab:red")
    return finish(fig, save, name, title)


def flow_within_entities(steps: list[dict], shown: tuple[int, ...] = (1, 2, 4, 8, 20), save=None,
                         name: str = "flow_within_entities", title: str | None = None) -> Figure:
    """One sample's ``Samples.steps`` (one record per entity): a row per entity, the image with that
    entity's predicted clean value x̂₀ after flow steps ``shown`` (those that exist), then the image
    after the entity."""
    S = steps[0]["flow"].shape[1]
    columns = [s for s in shown if s <= S]
    fig, axes = plt.subplots(len(steps), len(columns) + 1, figsize=(1.25 * (len(columns) + 1) + 1.0, 1.3 * len(steps)),
                             squeeze=False)
    for k, record in enumerate(steps):
        for j, s in enumerate(columns):
            axes[k, j].imshow(as_image(record["flow"][0, s - 1]), interpolation="nearest")
            if k == 0:
                axes[k, j].set_title(f"flow step {s}: x̂₀", fontsize=7)
        axes[k, -1].imshow(as_image(record["image"][0]), interpolation="nearest")
        if k == 0:
            axes[k, -1].set_title("after the entity", fontsize=7)
        axes[k, 0].set_ylabel(f"entity {k + 1}", rotation=0, ha="right", va="center", fontsize=8)
        for ax in axes[k]:
            ax.set(xticks=[], yticks=[])
    return finish(fig, save, name, title)
