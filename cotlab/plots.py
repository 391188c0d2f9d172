"""Figures the notebooks share: image grids, training curves, bar charts and sweeps of per-task scores.

A topic's own figures live in its house (``cotlab.masked_ar.figures`` …) and end, as these do, with
``finish``.

Every function returns its ``Figure`` and, given ``save=`` a run folder, also writes it there as PNG,
so a headless run keeps its pictures.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from cotlab.metrics import as_image
from cotlab.shapes import TAGS


def finish(fig: Figure, save: str | Path | None, name: str, title: str | None = None) -> Figure:
    """Every figure's epilogue: the title (if any), a tight layout, and — given ``save``, a run
    folder — the figure written there as ``name.png``."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if save is not None:
        fig.savefig(Path(save) / f"{name}.png", dpi=120, bbox_inches="tight")
    return fig


def image_grid(images, titles=None, ncols: int = 8, size: float = 1.6, save=None,
               name: str = "grid", suptitle: str | None = None) -> Figure:
    """Images in a grid, each with an optional title (captions wrap onto two lines)."""
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.35)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(as_image(images[i]), interpolation="nearest")
            if titles is not None:
                ax.set_title(_wrap(titles[i]), fontsize=7)
    return finish(fig, save, name, suptitle)


def _wrap(text: str, width: int = 24) -> str:
    text = text.removeprefix("a photo of ")
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def curves(history: dict[str, list[tuple[int, float]]], save=None, name: str = "curves",
           title: str | None = None) -> Figure:
    """Training curves: one panel per logged quantity, value against step."""
    keys = list(history)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = zip(*history[key]) if history[key] else ((), ())
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    return finish(fig, save, name, title)


def compare_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], keys: list[str], save=None,
                   name: str = "compare", title: str | None = None, marks: list[int] | None = None) -> Figure:
    """Several runs' training curves on shared axes: one panel per logged quantity in ``keys``, one
    line per run (``{label: history}`` as ``logged_history`` gives them); ``marks`` draws dotted
    vertical lines at those steps (e.g. where training stages begin)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, history in runs.items():
            if history.get(key):
                steps, values = zip(*history[key])
                ax.plot(steps, values, label=label, lw=1)
        for step in marks or ():
            ax.axvline(step, color="k", ls=":", lw=0.8)
        ax.set(xlabel="step", title=key)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    return finish(fig, save, name, title)


def task_bars(scores: dict[str, dict[str, float]], save=None, name: str = "tasks",
              title: str | None = None, target: float | None = None) -> Figure:
    """Grouped bars: for each series (e.g. a model), its score on each task."""
    series = list(scores)
    tasks = list(next(iter(scores.values())))
    x = np.arange(len(tasks))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2, 3.2))
    for k, s in enumerate(series):
        ax.bar(x + k * width - 0.4 + width / 2, [scores[s][t] for t in tasks], width, label=s)
    ax.set_xticks(x, [t.replace("_", "\n") for t in tasks], fontsize=8)
    ax.set_ylim(0, 1.05)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=0.8)
    if len(series) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return finish(fig, save, name)


def image_rows(rows: dict[str, torch.Tensor], marks: dict[str, list[bool]] | None = None, size: float = 1.2,
               save=None, name: str = "rows", title: str | None = None) -> Figure:
    """One row of images per label, e.g. originals and each tokenizer's reconstructions of them;
    ``marks`` (optional) put a green ✓ or red ✗ on each image of a row."""
    labels = list(rows)
    n = max(len(r) for r in rows.values())
    fig, axes = plt.subplots(len(labels), n, figsize=(n * size + 1.6, len(labels) * size), squeeze=False)
    for i, label in enumerate(labels):
        for j, ax in enumerate(axes[i]):
            ax.set(xticks=[], yticks=[])
            if j < len(rows[label]):
                ax.imshow(as_image(rows[label][j]), interpolation="nearest")
            if marks and label in marks and j < len(marks[label]):
                ok = marks[label][j]
                ax.text(0.04, 0.96, "✓" if ok else "✗", transform=ax.transAxes, ha="left", va="top",
                        fontsize=9, color="tab:green" if ok else "tab:red", fontweight="bold")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return finish(fig, save, name, title)


def score_sweeps(sweeps: dict[str, tuple[list, list[dict]]], save=None, name: str = "sweeps",
                 title: str | None = None) -> Figure:
    """One panel per sweep ``{x label: (values, GenEval summaries)}``: overall (thick) and each tag's
    score (thin) against the swept value."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps) + 1.5, 3.2), squeeze=False)
    for ax, (label, (values, summaries)) in zip(axes[0], sweeps.items()):
        for tag in TAGS:
            ax.plot(values, [s["tags"].get(tag, np.nan) for s in summaries], "o-", lw=1, ms=3, alpha=0.7, label=tag)
        ax.plot(values, [s["overall"] for s in summaries], "ko-", lw=2.5, label="overall")
        ax.set(xlabel=label, ylabel="GenEval score", ylim=(0, 1.02), xticks=values)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return finish(fig, save, name, title)
