"""Figures of notebook 07: preference pairs, training curves with the reward beside the exact score,
where alignment moved the token distribution, and the capstone."""
from __future__ import annotations

import numpy as np
import torch
import matplotlib.pyplot as plt

from cotlab.masked_ar.model import MaskedAR
from cotlab.plots import color, finish, legend_outside


def smooth(values, window: int) -> np.ndarray:
    """A running mean over ``window`` points (shorter at the start)."""
    values = np.asarray(values, float)
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    lo = np.maximum(np.arange(len(values)) + 1 - window, 0)
    return (cumulative[1:] - cumulative[lo]) / (np.arange(len(values)) + 1 - lo)


def training_curves(histories: dict[str, dict[str, list[tuple[int, float]]]], panels: dict[str, list[str]],
                    save=None, name: str = "training", title: str | None = None, window: int = 1):
    """One panel per ``{axis label: [logged keys]}``: each run's curves in its colour (a second key
    of a panel dashed), smoothed over ``window`` logged points."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 3.1), squeeze=False)
    for ax, (label, keys) in zip(axes[0], panels.items()):
        for run, history in histories.items():
            for k, key in enumerate(keys):
                if history.get(key):
                    steps, values = zip(*history[key])
                    ax.plot(steps, smooth(values, window), color=color(run), lw=1.3, ls="-" if k == 0 else "--",
                            label=f"{run}: {key.removeprefix('train_').replace('_', ' ')}")
        ax.set(xlabel="optimiser step", ylabel=label)
        ax.grid(alpha=0.3)
    legend_outside(axes[0, -1], [h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]])
    return finish(fig, save, name, title)


def reward_against_score(histories: dict[str, dict[str, list[tuple[int, float]]]], save=None,
                         name: str = "reward_hacking", window: int = 10):
    """Reward hacking, watched: for each GRPO run, the reward it trains on (solid) and the exact
    evaluator's verdict on the same rollouts (dashed), smoothed over ``window`` rollout batches;
    the shaded gap is what the reward believes beyond the truth."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for run, history in histories.items():
        steps, reward = zip(*history["train_reward"])
        _, exact = zip(*history["train_exact"])
        r, e = smooth(reward, window), smooth(exact, window)
        ax.plot(steps, r, color=color(run), lw=1.5, label=f"{run}: reward")
        ax.plot(steps, e, color=color(run), lw=1.5, ls="--", label=f"{run}: exact score")
        ax.fill_between(steps, e, r, color=color(run), alpha=0.12, lw=0)
    ax.set(xlabel="optimiser step", ylabel="mean over the rollouts", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return finish(fig, save, name, f"reward and exact score on the same rollouts (running mean of {window})")


@torch.no_grad()
def position_log_ratio(policy: MaskedAR, reference: MaskedAR, tokens: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """(B, N): log π(k_i | the other tokens, c) − log π_ref(k_i | the other tokens, c) at every
    position i of each image (its tokens (B, N)): how much more likely alignment made each token,
    one position masked at a time."""
    B, N = tokens.shape
    text, pad = policy.encode_text(captions)
    out = torch.zeros(B, N)
    for i in range(N):
        masked = tokens.clone()
        masked[:, i] = policy.mask_id
        ratios = [m(masked.to(m.device), text.to(m.device), pad.to(m.device))[:, i].log_softmax(-1).cpu()
                  .gather(-1, tokens[:, i:i + 1].cpu())[:, 0] for m in (policy, reference)]
        out[:, i] = ratios[0] - ratios[1]
    return out


def log_ratio_maps(maps: dict[str, np.ndarray], save=None, name: str = "log_ratio"):
    """One 4×4 (token grid) panel per ``{label: (N,) mean log-ratio}``, on a shared diverging scale."""
    limit = max(float(np.abs(m).max()) for m in maps.values()) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(2.3 * len(maps) + 1, 2.6), squeeze=False)
    for ax, (label, values) in zip(axes[0], maps.items()):
        side = int(round(len(values) ** 0.5))
        image = ax.imshow(np.asarray(values).reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (y, x), v in np.ndenumerate(np.asarray(values).reshape(side, side)):
            ax.text(x, y, f"{v:+.1f}", ha="center", va="center", fontsize=7)
        ax.set(xticks=[], yticks=[], title=label)
        ax.title.set_fontsize(8)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="mean log π / π_ref")
    fig.set_layout_engine("constrained")
    return finish(fig, save, name)
