"""Figures of notebook 06: GenEval against the number of candidates, what each verifier gets right, what
each strategy costs, and where a decoding's verdict settles. Strategies keep their colours
(``plots.color``) in every one."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cotlab.plots import color, error_bars, finish, legend_outside

METRICS = {"precision": "precision", "recall": "recall", "auroc": "AUROC"}  # key -> bar label
METRIC_COLORS = ("#d9d9d9", "#969696", "#525252")  # greys: not to be read as strategies


def scaling_curves(curves: dict[str, dict[int, float]], labels: dict[str, str] | None = None, save=None,
                   name: str = "scaling", title: str | None = None,
                   intervals: dict[str, dict[int, tuple[float, float]]] | None = None,
                   points: dict[str, tuple[int, float]] | None = None) -> Figure:
    """GenEval overall against the number of candidates N (log scale): one line per strategy of
    ``curves`` ({strategy: {n: overall}}), one marker per strategy of ``points`` ({strategy: (n,
    overall)}, measured at one N only), each with its 95 % interval where ``intervals`` ({strategy:
    {n: (lo, hi)}}) has one; with intervals the strategies sit a little apart along N so that their
    error bars do not cover each other. The legend follows the order of ``labels``."""
    series = {key: {int(n): v for n, v in curve.items()} for key, curve in curves.items()}
    series.update({key: {int(n): v} for key, (n, v) in (points or {}).items()})
    order = list(labels or {})
    series = dict(sorted(series.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    spans = {key: {int(n): span for n, span in by_n.items()} for key, by_n in (intervals or {}).items()}
    dodge = 0.04 if intervals else 0.0  # octaves between neighbouring strategies, to part their error bars
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for k, (key, curve) in enumerate(series.items()):
        ns = sorted(curve)
        values = [curve[n] for n in ns]
        x = np.array(ns) * 2 ** (dodge * (k - (len(series) - 1) / 2))
        ax.errorbar(x, values, yerr=error_bars(values, [spans.get(key, {}).get(n) for n in ns]),
                    marker="D" if len(ns) == 1 else "o", ms=6 if len(ns) == 1 else 4, color=color(key),
                    ls="--" if key == "oracle" else "-", lw=1.5, elinewidth=0.8, capsize=2,
                    label=(labels or {}).get(key, key))
    ns = sorted({n for curve in series.values() for n in curve})
    ax.set_xscale("log", base=2)
    ax.set(xlabel="candidates N (log scale)", ylabel="GenEval overall", ylim=(0, 1.02))
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    legend_outside(ax)
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, save, name)


def verifier_quality(quality: dict[str, dict[str, dict]], save=None, name: str = "verifier_quality") -> Figure:
    """Each verifier against the exact evaluator, at threshold 0.5: precision, recall and AUROC on
    final images (left) and on step images (right, verifiers that judge steps), with 95 % error bars
    where a result carries ``interval`` (``verification.metrics.classification``). The dotted line is
    chance for AUROC."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, kind in zip(axes, ("final", "step")):
        names = [n for n in quality if kind in quality[n]]
        x = np.arange(len(names))
        for k, (key, label) in enumerate(METRICS.items()):
            results = [quality[n][kind] for n in names]
            values = [q[key] for q in results]
            spans = [(q.get("interval") or {}).get(key) for q in results]
            ax.bar(x + (k - 1) * 0.27, values, 0.27, color=METRIC_COLORS[k], label=label,
                   yerr=error_bars(values, spans), error_kw={"lw": 0.8, "capsize": 2})
        ax.set_xticks(x, names, fontsize=8)
        ax.set(ylim=(0, 1.05), ylabel="score (1 = perfect)", title=f"on {kind} images")
        ax.axhline(0.5, color="0.5", lw=0.7, ls=":")
        ax.grid(axis="y", alpha=0.3)
    legend_outside(axes[1])
    return finish(fig, save, name)


def cost(table: dict[str, dict], steps_run, labels: dict[str, str], save=None, name: str = "cost") -> Figure:
    """What each strategy costs per final image (``table``: {strategy: {"passes", "calls", …}}):
    generator forward passes (left) and verifier calls (middle), each bar in the strategy's colour
    with its value written at its end; right, how many steps each PARM path ran before PARM stopped
    it (``steps_run``, any shape; the longest is the whole decoding)."""
    names = list(table)
    steps_run = np.asarray(steps_run).reshape(-1)
    T = int(steps_run.max())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    y = np.arange(len(names))[::-1]  # the first strategy on top
    for ax, key, label in ((axes[0], "passes", "generator forward passes per image"),
                           (axes[1], "calls", "verifier calls per image")):
        values = [table[n][key] for n in names]
        ax.barh(y, values, color=[color(n) for n in names])
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {v:.0f}", va="center", fontsize=8)
        ax.set(xlabel=label, xlim=(0, 1.18 * max(max(values), 1)))
        ax.set_yticks(y, [labels.get(n, n) for n in names], fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    axes[2].hist(steps_run, bins=np.arange(0.5, T + 1.5), color=color("parm"), rwidth=0.85)
    axes[2].set_xticks(range(1, T + 1))
    axes[2].set(xlabel=f"steps a PARM path ran ({T} = to the end)", ylabel="paths")
    axes[2].grid(axis="y", alpha=0.3)
    return finish(fig, save, name)


def clarity(steps_by_model: dict[str, dict], save=None, name: str = "clarity") -> Figure:
    """Where the verdict settles, per generator (``steps`` tables of ``verification.data``): left, the
    share of paths already *clear* at each step (their step image's verdict is what every rollout
    ends as); right, the mean rollout potential P̂(correct | t) of paths that end correct (solid) and
    of paths that end wrong (dashed). The x axis is the fraction of decoding done, t/T."""
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.4))
    handles = []
    for label, steps in steps_by_model.items():
        T = int(steps["step"].max())
        clear = steps["clear"].reshape(-1, T).float().numpy()  # (paths, T)
        settled = np.flip(np.cumprod(np.flip(clear, 1), 1), 1)  # 1 from the step on which it stays clear
        x = np.arange(1, T + 1) / T
        axes[0].plot(x, settled.mean(0), "o-", color=color(label), ms=3)
        handles.append(Line2D([], [], color=color(label), marker="o", ms=3, label=f"{label}, {T} steps"))
        potential = steps["potential"].reshape(-1, T).float().numpy()
        final = steps["final"].reshape(-1, T)[:, 0].numpy().astype(bool)
        for ends, ls in ((True, "-"), (False, "--")):
            if (final == ends).any():
                axes[1].plot(x, potential[final == ends].mean(0), ls, color=color(label), marker="o", ms=3)
    handles += [Line2D([], [], color="k", ls="-", label="paths that end correct"),
                Line2D([], [], color="k", ls="--", label="paths that end wrong")]
    axes[0].set(xlabel="fraction of decoding done t/T", ylabel="share of paths clear from here on", ylim=(0, 1.02))
    axes[1].set(xlabel="fraction of decoding done t/T", ylabel="rollout potential P̂(correct | t)", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
    legend_outside(axes[1], handles)
    return finish(fig, save, name)
