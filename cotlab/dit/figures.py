"""The figures of notebook 04."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cotlab.metrics import to_uint8
from cotlab.plots import color, finish, legend_outside


def attention_scaling(results: dict[str, dict], save=None, name: str = "attention", title: str | None = None) -> Figure:
    """Time and peak memory of linear and softmax attention against N (log-log), one line style per
    measurement ``{label: bench_attention result}`` (e.g. the shipped run and this one)."""
    fig, (ax_time, ax_memory) = plt.subplots(1, 2, figsize=(10.5, 3.4))
    for style, (label, result) in zip(("o-", "s--", "^:"), results.items()):
        for kernel in ("linear", "softmax"):
            rows = [r for r in result["rows"] if r["kernel"] == kernel]
            n = [r["tokens"] for r in rows]
            ax_time.plot(n, [r["seconds"] * 1e3 for r in rows], style, ms=3, color=color(kernel), label=f"{kernel} ({label})")
            memory = [(r["tokens"], r["peak_bytes"] / 2 ** 20) for r in rows if r["peak_bytes"]]
            if memory:
                ax_memory.plot(*zip(*memory), style, ms=3, color=color(kernel), label=f"{kernel} ({label})")
    ax_time.set(xscale="log", yscale="log", xlabel="tokens N", ylabel="time per call (ms)")
    ax_memory.set(xscale="log", yscale="log", xlabel="tokens N", ylabel="peak memory added (MiB)")
    for ax in (ax_time, ax_memory):
        ax.grid(alpha=0.3, which="both")
    legend_outside(ax_memory)
    return finish(fig, save, name, title)


def flow_steps(steps: list[dict], captions: list[str], show: list[int], save=None, name: str = "flow_steps",
               title: str | None = None) -> Figure:
    """For each caption (rows, in pairs), the latent held after each step in ``show`` (1-based; decoded
    as it is) above the clean image predicted there; ``steps`` as ``sample(keep_steps=True)`` records them."""
    fig, axes = plt.subplots(2 * len(captions), len(show), figsize=(1.3 * len(show) + 0.6, 2.9 * len(captions)),
                             squeeze=False, layout="constrained")
    for i, caption in enumerate(captions):
        for j, k in enumerate(show):
            record = steps[k - 1]
            for r, key in enumerate(("noisy", "image")):
                ax = axes[2 * i + r, j]
                ax.imshow(to_uint8(record[key][i:i + 1])[0], interpolation="nearest")
                ax.set(xticks=[], yticks=[])
                if r == 0 and j > 0:  # the first column's title also names the caption (below)
                    ax.set_title(f"step {k}, σ = {float(record['sigma'][i]):.2f}", fontsize=8)
            if j == 0:
                axes[2 * i, 0].set_ylabel("held", fontsize=8)
                axes[2 * i + 1, 0].set_ylabel("x̂₀", fontsize=8)
        axes[2 * i, 0].set_title(f"“{caption}”\nstep {show[0]}, σ = {float(steps[show[0] - 1]['sigma'][i]):.2f}",
                                 fontsize=8, loc="left")
    return finish(fig, save, name, title)


def loss_against_time(curves: dict[str, list[tuple[float, float]]], level: float | None = None, save=None,
                      name: str = "loss_time", title: str | None = None, window: int = 10) -> Figure:
    """Training loss (running mean of ``window`` logged values) against wall-clock minutes, one line per
    run ``{label: [(minutes, loss)]}``; ``level`` a dotted horizontal line (the fixed loss)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for label, curve in curves.items():
        minutes, loss = np.array(curve, float).T
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(minutes[window - 1:], smooth, lw=1.5, label=label, color=color(label))
    if level is not None:
        ax.axhline(level, color="k", ls=":", lw=0.8, label=f"loss {level:.3f}")
    ax.set(xlabel="training time (minutes, two CPU cores)", ylabel="flow-matching loss", yscale="log")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    return finish(fig, save, name, title)


def importance_bars(importance: dict[str, np.ndarray], save=None, name: str = "block_importance",
                    title: str | None = None) -> Figure:
    """Block importance BI_i per block, one bar group per model ``{label: (L,) values}``."""
    fig, ax = plt.subplots(figsize=(6.5, 3))
    width = 0.8 / len(importance)
    for k, (label, values) in enumerate(importance.items()):
        ax.bar(np.arange(len(values)) + k * width, values, width, label=label, color=color(label))
    ax.set(xlabel="block i", ylabel="BI_i = 1 − E[cos(X_i, X_{i+1})]")
    ax.set_xticks(np.arange(max(len(v) for v in importance.values())) + 0.4 - width / 2)
    ax.set_xticklabels(range(max(len(v) for v in importance.values())))
    ax.grid(alpha=0.3, axis="y")
    legend_outside(ax)
    return finish(fig, save, name, title)


def scaling_curves(result: dict, save=None, name: str = "scaling", title: str | None = None) -> Figure:
    """GenEval overall of best-of-n (top-1) against n, one line with its 95 % band per verifier,
    from a ``scaling.inference_scaling`` result (keys of n as strings, as stored)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.3))
    for verifier, methods in result["curves"].items():
        ns = sorted(int(n) for n in methods["top-1"])
        points = [methods["top-1"][str(n)] for n in ns]
        lo, hi = np.array([p["interval"]["overall"] for p in points], float).T
        ax.fill_between(ns, lo, hi, color=color(verifier), alpha=0.15, lw=0)
        ax.plot(ns, [p["overall"] for p in points], "o-", ms=3, color=color(verifier), label=f"top-1 by {verifier}")
    ax.set(xscale="log", xlabel="samples per prompt n (verifier calls per image)", ylabel="GenEval overall",
           ylim=(0, 1.02))
    ax.set_xticks(ns)
    ax.set_xticklabels(ns)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return finish(fig, save, name, title)
