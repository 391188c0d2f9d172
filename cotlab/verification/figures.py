"""Figures of notebook 06: GenEval against the number of candidates, and where a decoding's verdict settles."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cotlab.plots import finish


def scaling_curves(curves: dict[str, dict[int, float]], labels: dict[str, str] | None = None, save=None,
                   name: str = "scaling", title: str | None = None) -> Figure:
    """GenEval overall against the number of candidates N (log scale), one line per strategy."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, (key, curve) in enumerate(curves.items()):
        ns = sorted(int(n) for n in curve)
        values = [curve[n] if n in curve else curve[str(n)] for n in ns]
        ax.plot(ns, values, marker="o", color="black" if key == "oracle" else f"C{k}",
                ls="--" if key == "oracle" else "-", label=(labels or {}).get(key, key), ms=4)
    ax.set_xscale("log", base=2)
    ns = sorted({int(n) for c in curves.values() for n in c})
    ax.set(xticks=ns, xticklabels=[str(n) for n in ns], xlabel="candidates N", ylabel="GenEval overall", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, save, name)


def clarity(steps_by_model: dict[str, dict], save=None, name: str = "clarity") -> Figure:
    """Where the verdict settles, per generator (``steps`` tables of ``verification.data``): left, the
    share of paths already *clear* at each step (their step image's verdict is what every rollout
    ends as); right, the mean rollout potential P̂(correct | t) of paths that end correct and of paths
    that end wrong. The x axis is the fraction of decoding done, t/T."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for k, (label, steps) in enumerate(steps_by_model.items()):
        T = int(steps["step"].max())
        clear = steps["clear"].reshape(-1, T).float().numpy()  # (paths, T)
        settled = np.flip(np.cumprod(np.flip(clear, 1), 1), 1)  # 1 from the step on which it stays clear
        x = np.arange(1, T + 1) / T
        axes[0].plot(x, settled.mean(0), "o-", color=f"C{k}", ms=3, label=f"{label} ({T} steps)")
        potential = steps["potential"].reshape(-1, T).float().numpy()
        final = steps["final"].reshape(-1, T)[:, 0].numpy().astype(bool)
        for ends, ls in ((True, "-"), (False, "--")):
            if (final == ends).any():
                axes[1].plot(x, potential[final == ends].mean(0), ls, color=f"C{k}", marker="o", ms=3,
                             label=f"{label}: paths that end {'correct' if ends else 'wrong'}")
    axes[0].set(xlabel="fraction of decoding done t/T", ylabel="share of paths clear from here on", ylim=(0, 1.02))
    axes[1].set(xlabel="fraction of decoding done t/T", ylabel="rollout potential P̂(correct | t)", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, save, name)
