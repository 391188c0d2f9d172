"""Figures of notebook 01: the tokenizers' rate against their quality.

Like every figure function of ``cotlab.plots``, each returns its ``Figure`` and, given ``save=`` a run
folder, also writes it there as PNG.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from cotlab import plots

CURVES = (("vq_f8", "vq_f4"), ("dcae_f8", "dcae_f4"))  # the same recipe at f8 and f4: a curve each


def rate_quality(rows: list[dict], save=None, name: str = "rate_quality", title: str | None = None) -> Figure:
    """Rate against quality for tokenizers: tokens and bits per image (log scale) against PSNR and
    evaluator agreement, one labelled point per row of ``cotlab bench tokenizers`` in its tokenizer's
    colour. The VQ pair and the DC-AE pair (f8, f4) are joined as curves, and an arrow takes each
    hybrid from its discrete tokens to discrete + residual."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    by_name = {row["tokenizer"]: row for row in rows}
    for i, (rate, rate_label) in enumerate([("tokens_per_image", "tokens per image"),
                                            ("bits_per_image", "bits per image")]):
        for j, (quality, quality_label) in enumerate([("psnr", "PSNR (dB)"), ("agreement", "evaluator agreement")]):
            ax = axes[j, i]
            for pair in CURVES:
                curve = sorted((by_name[n][rate], by_name[n][quality]) for n in pair if n in by_name)
                if len(curve) > 1:
                    ax.plot(*zip(*curve), color=plots.color(pair[0]), lw=1.2, alpha=0.6, zorder=1)
            for row in rows:
                if row["tokenizer"].endswith("(discrete+residual)"):
                    start = by_name.get(row["tokenizer"].replace("discrete+residual", "discrete"))
                    if start:
                        ax.add_patch(FancyArrowPatch((start[rate], start[quality]), (row[rate], row[quality]),
                                                     arrowstyle="-|>", mutation_scale=9, lw=1, shrinkA=4, shrinkB=4,
                                                     color=plots.color(row["tokenizer"]), alpha=0.7))
                ax.scatter(row[rate], row[quality], color=plots.color(row["tokenizer"]), s=36, zorder=2)
            ax.set_xscale("log", base=2)
            ax.set(xlabel=f"{rate_label} (log scale)", ylabel=quality_label)
            ax.margins(x=0.15, y=0.08)
            if quality == "agreement":
                ax.set_ylim(top=1.02)
            ax.grid(alpha=0.3)
            _label_points(ax, [(row[rate], row[quality], row["tokenizer"]) for row in rows])
    return plots.finish(fig, save, name, title)


def _label_points(ax, points: list[tuple[float, float, str]], gap: float = 0.045) -> None:
    """Write each point's name beside it, in its colour: right of it, or left of it in the right part
    of the panel. Labels of points in one column are spread apart vertically (at least ``gap`` of the
    panel's height) as little as needed, each tied to its point by a thin line when moved."""
    ax.set(xlim=ax.get_xlim(), ylim=ax.get_ylim())  # fixed: labels are placed in axes fractions
    fractions = (ax.transScale + ax.transLimits).transform([(x, y) for x, y, _ in points])  # data -> (0…1)²
    order = np.argsort(fractions[:, 0])
    columns, last = [], -1.0
    for k in order:  # points less than a tenth of the width apart share a column
        if fractions[k, 0] - last > 0.1:
            columns.append([])
        columns[-1].append(k)
        last = fractions[k, 0]
    for column in columns:
        column.sort(key=lambda k: fractions[k, 1])
        heights = [fractions[k, 1] for k in column]
        for i in range(1, len(heights)):  # up, away from the label below
            heights[i] = max(heights[i], heights[i - 1] + gap)
        heights[-1] = min(heights[-1], 0.97)
        for i in reversed(range(len(heights) - 1)):  # down, under the panel's top, as little as needed
            heights[i] = min(heights[i], heights[i + 1] - gap)
        for k, height in zip(column, heights):
            x, y, text = points[k]
            left = fractions[k, 0] > 0.6
            moved = abs(height - fractions[k, 1]) > gap / 4
            ax.annotate(text, (x, y), xytext=(fractions[k, 0] + (-0.03 if left else 0.03), height),
                        textcoords="axes fraction", ha="right" if left else "left", va="center", fontsize=7,
                        color=plots.color(text), bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5},
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": plots.color(text), "shrinkA": 0,
                                    "shrinkB": 3} if moved else None)
