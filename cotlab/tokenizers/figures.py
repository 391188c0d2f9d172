"""Figures of notebook 01: the tokenizers' rate against their quality.

Like every figure function of ``cotlab.plots``, each returns its ``Figure`` and, given ``save=`` a run
folder, also writes it there as PNG.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cotlab import plots


def rate_quality(rows: list[dict], save=None, name: str = "rate_quality", title: str | None = None) -> Figure:
    """Rate against quality for tokenizers: tokens and bits per image (log scale) against PSNR and
    evaluator agreement, one labelled point per row of ``cotlab bench tokenizers``."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for i, (rate, rate_label) in enumerate([("tokens_per_image", "tokens per image"),
                                            ("bits_per_image", "bits per image")]):
        for j, (quality, quality_label) in enumerate([("psnr", "PSNR (dB)"), ("agreement", "evaluator agreement")]):
            ax = axes[j, i]
            for k, row in enumerate(rows):
                ax.scatter(row[rate], row[quality], color=f"C{k % 10}", s=36)
                ax.annotate(row["tokenizer"], (row[rate], row[quality]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points", color=f"C{k % 10}")
            ax.set_xscale("log", base=2)
            ax.set(xlabel=rate_label, ylabel=quality_label)
            ax.grid(alpha=0.3)
    axes[1, 0].set_ylim(top=1.02)
    axes[1, 1].set_ylim(top=1.02)
    return plots.finish(fig, save, name, title)
