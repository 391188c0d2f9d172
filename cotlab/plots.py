"""Figures the notebooks share: image grids, training curves, bar charts of per-task scores.

Every function returns its ``Figure`` and, given ``save=`` a run folder, also writes it there as PNG,
so a headless run keeps its pictures.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure


def _save(fig: Figure, save: str | Path | None, name: str) -> Figure:
    if save is not None:
        fig.savefig(Path(save) / f"{name}.png", dpi=120, bbox_inches="tight")
    return fig


def as_image(x) -> np.ndarray:
    """(3, H, W) float in [0, 1] or (H, W, 3) uint8 -> (H, W, 3) for imshow."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return x


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
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _save(fig, save, name)


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, save, name)


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, save, name)


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
    fig.tight_layout()
    return _save(fig, save, name)


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, save, name)


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, save, name)


MASK_STATES = ("masked", "committed before", "committed now")
MASK_COLORS = ("#202024", "#9a9aa0", "#ff9f1c")


def mask_states(steps: list[dict], index: int = 0) -> np.ndarray:
    """(T, N) states of every position after each decoding step: 0 still masked, 1 committed at an
    earlier step, 2 committed at this step (``steps`` as ``DecodeResult.steps`` records them)."""
    masked = np.stack([s["masked"][index].numpy() for s in steps])  # (T, N)
    before = np.vstack([np.ones_like(masked[:1]), masked[:-1]])  # masked before each step
    return np.where(masked, 0, np.where(before, 2, 1))


def decoding_steps(steps: list[dict], index: int = 0, size: float = 1.3, save=None, name: str = "decoding",
                   title: str | None = None) -> Figure:
    """MaskGIT decoding of one image, step by step: the token grid after each step (dark: masked;
    grey: committed earlier; orange: committed at this step) above the intermediate image the step
    decodes (committed plus freshly sampled tokens)."""
    from matplotlib.colors import ListedColormap

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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, save, name)


def score_sweeps(sweeps: dict[str, tuple[list, list[dict]]], save=None, name: str = "sweeps",
                 title: str | None = None) -> Figure:
    """One panel per sweep ``{x label: (values, GenEval summaries)}``: overall (thick) and each tag's
    score (thin) against the swept value."""
    from .shapes import TAGS

    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps) + 1.5, 3.2), squeeze=False)
    for ax, (label, (values, summaries)) in zip(axes[0], sweeps.items()):
        for tag in TAGS:
            ax.plot(values, [s["tags"].get(tag, np.nan) for s in summaries], "o-", lw=1, ms=3, alpha=0.7, label=tag)
        ax.plot(values, [s["overall"] for s in summaries], "ko-", lw=2.5, label="overall")
        ax.set(xlabel=label, ylabel="GenEval score", ylim=(0, 1.02), xticks=values)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, save, name)


def passes_quality(rows: list[dict], save=None, name: str = "passes_quality", title: str | None = None) -> Figure:
    """GenEval overall against transformer forward passes per image (log scale) for the rows of
    ``bench_decoding``: one colour per token count, circles for masked decoding (labelled with its
    steps), squares for raster order."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    colours = {}
    for r in rows:
        colour = colours.setdefault(r["tokens"], f"C{len(colours)}")
        masked = r["order"] == "masked"
        ax.plot(r["forward_passes"], r["overall"], "o" if masked else "s", color=colour, ms=8 if masked else 9,
                label=f"{r['tokens']} tokens, {r['order']}")
        ax.annotate(f"{r['steps']} steps" if masked else "raster", (r["forward_passes"], r["overall"]),
                    textcoords="offset points", xytext=(6, -3), fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    ax.set_xscale("log")
    ax.set(xlabel="transformer forward passes per image", ylabel="GenEval overall", ylim=(0, 1))
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, save, name)


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
    fig.tight_layout()
    return _save(fig, save, name)


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
    fig.tight_layout()
    return _save(fig, save, name)
