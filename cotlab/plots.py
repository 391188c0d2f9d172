"""Figures the notebooks share: image grids, training curves, bar charts and sweeps of per-task scores,
and the conventions every figure of the workbook follows.

- One colour per strategy, generator and tokenizer in every figure: ``color(name)``.
- A score with a 95 % interval is drawn with it: an error bar on a bar or point, a band on a sweep.
- Legends sit outside the data (``legend_outside``); every panel's axes say what they measure
  (``quantity`` turns a logged key into words).

A topic's own figures live in its house (``cotlab.masked_ar.figures`` …) and end, as these do, with
``finish``. Every function returns its ``Figure`` and, given ``save=`` a run folder, also writes it
there as PNG, so a headless run keeps its pictures.
"""
from __future__ import annotations

import textwrap
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from cotlab.metrics import as_image
from cotlab.shapes import TAGS

COLORS = {
    # verification strategies: the ORM family blue, the PRM family orange, PARM green (zero-shot lighter)
    "baseline": "#7f7f7f", "clip": "#6baed6", "orm": "#08519c", "clip-prm": "#fdae6b", "prm": "#d94801",
    "parm": "#41ab5d", "parm++": "#00441b", "oracle": "#000000",
    # generators: 16 tokens dark, 64 tokens (f4) light; masked blue, raster red, the hybrid's purple
    "maskgit": "#2166ac", "maskgit_f4": "#67a9cf", "raster_ar": "#b2182b", "raster_ar_f4": "#ef8a62",
    "maskgit_hybrid": "#762a83", "dcar_head": "#c51b7d",
    # SANA-Sprint: the teacher dark grey, the hybrid student green, its ablations blue (sCM) and orange (LADD)
    "sprint_teacher": "#404040", "sprint": "#1b7837", "sprint_scm": "#2166ac", "sprint_ladd": "#d95f02",
    # next-X: the shipped cell model dark green, the ablation's cell lighter, teacher forcing magenta, the other entities apart
    "xar": "#00441b", "xar_cell": "#5aae61", "xar_cell_tf": "#c51b7d", "xar_token": "#2166ac",
    "xar_subsample": "#8073ac", "xar_scale": "#e08214", "xar_image": "#404040",
    # tokenizers: VQ blue, DC-AE orange, hybrid green; each family's variant lighter or greyer
    "vq_f8": "#2166ac", "vq_f4": "#67a9cf", "vq_f8_plain": "#8c96a0",
    "dcae_f8": "#d94801", "dcae_f4": "#fdae6b", "dcae_f8_noshortcut": "#8c6d31",
    "hybrid_f8": "#1b7837", "hybrid_f8_alternating": "#7fbc41",
    # aligned generators (notebook 07): DPO purples, the guidance that trains pink, GRPO reds (its rewards apart)
    "dpo": "#7570b3", "dpo_two_masks": "#bcbddc", "it_dpo": "#3f007d", "guidance_released": "#9e9ac8",
    "guidance": "#e7298a", "grpo": "#a50f15", "grpo_parm": "#fb6a4a", "grpo_oracle": "#67000d",
}
OTHER_COLORS = ("#e7298a", "#66a61e", "#e6ab02", "#7570b3", "#1b9e77", "#d95f02", "#a6761d", "#666666")

QUANTITIES = {  # logged keys -> what a panel's axis says
    "train_loss": "training loss", "train_acc": "training accuracy", "train_yes_acc": "accuracy of yes",
    "train_accuracy": "token accuracy", "train_usage": "codebook usage (share of codes)",
    "train_perplexity": "codebook perplexity", "train_psnr": "PSNR (dB)",
    "train_discrete_psnr": "PSNR, discrete tokens (dB)", "train_continuous_psnr": "PSNR, tokens + residual (dB)",
    "train_scm": "sCM loss (with log-variance)", "train_adv": "generator's adversarial loss −D(fake)",
    "train_disc": "discriminator's hinge loss",
}


def color(name: str) -> str:
    """The colour of a strategy, generator or tokenizer, the same in every figure. A note in
    parentheses keeps the model's colour (``"hybrid_f8 (discrete)"`` is ``hybrid_f8``'s); any other
    name gets a fixed colour picked by a hash of it."""
    name = name.split(" (")[0]
    return COLORS.get(name) or OTHER_COLORS[zlib.crc32(name.encode()) % len(OTHER_COLORS)]


def quantity(key: str) -> str:
    """A logged key in words: ``train_loss`` → "training loss"; an unknown key with spaces."""
    return QUANTITIES.get(key, key.replace("_", " "))


def legend_outside(ax, handles=None, **options) -> None:
    """The legend to the right of ``ax``, outside the data."""
    options = {"fontsize": 8, "loc": "center left", "bbox_to_anchor": (1.02, 0.5), "frameon": False, **options}
    if handles is None:
        ax.legend(**options)
    else:
        ax.legend(handles=handles, **options)


def error_bars(values, intervals) -> np.ndarray | None:
    """(2, n) distances below and above each value of its interval (lo, hi), for ``yerr``; nan where a
    value has none, None if none has."""
    if all(i is None for i in intervals):
        return None
    spans = np.array([(np.nan, np.nan) if i is None else i for i in intervals], float)  # (n, 2)
    return np.abs(spans.T - np.asarray(values, float))


def finish(fig: Figure, save: str | Path | None, name: str, title: str | None = None) -> Figure:
    """Every figure's epilogue: the title (if any), a tight layout (unless the figure was made with
    one of its own, e.g. ``layout="constrained"``), and — given ``save``, a run folder — the figure
    written there as ``name.png``."""
    if title:
        fig.suptitle(title)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if save is not None:
        fig.savefig(Path(save) / f"{name}.png", dpi=120, bbox_inches="tight")
    return fig


def image_grid(images, titles=None, ncols: int = 8, size: float = 1.6, save=None,
               name: str = "grid", suptitle: str | None = None) -> Figure:
    """Images in a grid, each with an optional title, wrapped to the image's width; each row is as
    tall as its image plus its longest title."""
    n = len(images)
    nrows = -(-n // ncols)
    titles = [_wrap(t, int(size * 18)) for t in titles] if titles is not None else [""] * n
    lines = [max((t.count("\n") + 1 if t else 0 for t in titles[r * ncols:(r + 1) * ncols]), default=0)
             for r in range(nrows)]
    heights = [size + 0.14 * k + 0.1 for k in lines]  # inches: the image, its title lines, a gap
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        ax.set_anchor("S")  # the image at the bottom of its row, its title in the room above
        if i < n:
            ax.imshow(as_image(images[i]), interpolation="nearest")
            ax.set_title(titles[i], fontsize=7)
    return finish(fig, save, name, suptitle)


def _wrap(text: str, width: int = 24) -> str:
    """``text`` without its leading "a photo of ", each of its lines wrapped at ``width`` characters."""
    text = text.removeprefix("a photo of ")
    return "\n".join(textwrap.fill(line, width) or line for line in text.split("\n"))


def curves(history: dict[str, list[tuple[int, float]]], save=None, name: str = "curves",
           title: str | None = None) -> Figure:
    """Training curves: one panel per logged quantity, value against step."""
    keys = list(history)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = zip(*history[key]) if history[key] else ((), ())
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set(xlabel="training step", ylabel=quantity(key))
        ax.grid(alpha=0.3)
    return finish(fig, save, name, title)


def compare_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], keys: list[str], save=None,
                   name: str = "compare", title: str | None = None, marks: list[int] | None = None) -> Figure:
    """Several runs' training curves on shared axes: one panel per logged quantity in ``keys``, one
    line per run in its colour (``{label: history}`` as ``logged_history`` gives them); ``marks`` draws
    dotted vertical lines at those steps (e.g. where training stages begin)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys) + 1.5, 3), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, history in runs.items():
            if history.get(key):
                steps, values = zip(*history[key])
                ax.plot(steps, values, label=label, lw=1, color=color(label))
        for step in marks or ():
            ax.axvline(step, color="k", ls=":", lw=0.8)
        ax.set(xlabel="training step", ylabel=quantity(key))
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    legend_outside(axes.flat[-1], list(handles.values()))
    return finish(fig, save, name, title)


def task_bars(scores: dict[str, dict[str, float]], save=None, name: str = "tasks", title: str | None = None,
              target: float | None = None, labels: dict[str, str] | None = None,
              intervals: dict[str, dict[str, tuple[float, float]]] | None = None,
              ylabel: str = "GenEval score") -> Figure:
    """Grouped bars: for each series (a model or strategy, in its colour), its score on each task,
    with an error bar where ``intervals`` ({series: {task: (lo, hi)}}, 95 %) has one. ``labels``
    names the series in the legend (default: their keys); ``target`` draws a dashed line."""
    series = list(scores)
    tasks = list(next(iter(scores.values())))
    x = np.arange(len(tasks))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2 + (2.5 if len(series) > 1 else 0), 3.2))
    for k, s in enumerate(series):
        values = [scores[s][t] for t in tasks]
        spans = [(intervals or {}).get(s, {}).get(t) for t in tasks]
        ax.bar(x + k * width - 0.4 + width / 2, values, width, color=color(s), label=(labels or {}).get(s, s),
               yerr=error_bars(values, spans), error_kw={"lw": 0.8, "capsize": 1.5, "ecolor": "0.2"})
    ax.set_xticks(x, [t.replace("_", "\n") for t in tasks], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=0.8)
    if len(series) > 1:
        legend_outside(ax)
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
    """One panel per sweep ``{x label: (values, GenEval summaries)}``: overall (thick, with its 95 %
    interval as a band where the summaries carry one) and each tag's score (thin) against the swept
    value."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps) + 1.5, 3.2), squeeze=False)
    for ax, (label, (values, summaries)) in zip(axes[0], sweeps.items()):
        for tag in TAGS:
            ax.plot(values, [s["tags"].get(tag, np.nan) for s in summaries], "o-", lw=1, ms=3, alpha=0.7, label=tag)
        if all(s.get("interval") for s in summaries):
            lo, hi = np.array([s["interval"]["overall"] for s in summaries], float).T
            ax.fill_between(values, lo, hi, color="k", alpha=0.15, lw=0, label="overall, 95 % interval")
        ax.plot(values, [s["overall"] for s in summaries], "ko-", lw=2.5, label="overall")
        ax.set(xlabel=label, ylabel="GenEval score", ylim=(0, 1.02), xticks=values)
        ax.grid(alpha=0.3)
    legend_outside(axes[0, -1], fontsize=7)
    return finish(fig, save, name, title)
