"""Uncertainty, one home for it: every score the workbook shows carries its 95 % interval.

A score measured on a few hundred images is uncertain by a few hundredths, so a score is never shown
without its interval, and a difference whose interval holds 0 is "no measurable difference", never a
ranking. Here the generic tools: a share of independent trials gets Wilson's interval; any other
statistic of independent items (a mean PSNR, an AUROC, a Fréchet distance) the percentile bootstrap
— the statistic recomputed on resamples of the items drawn with replacement, [lo, hi] its 2.5 % and
97.5 % quantiles. GenEval's own intervals, which resample prompts and then samples within a prompt,
and its paired differences live in ``cotlab.geneval``.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.95


def quantile_interval(values, level: float = LEVEL) -> list[float]:
    """[lo, hi]: the (1 − level)/2 and (1 + level)/2 quantiles of resampled values (NaNs dropped)."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    if (values == values[0]).all():  # e.g. PSNR ∞ on every resample of identical images
        return [float(values[0])] * 2
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def proportion_interval(successes: float, n: int, level: float = LEVEL) -> list[float]:
    """Wilson's score interval for a share k / n of independent trials (a verdict per scene …):

        (p̂ + z²/2n ± z √(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n),   z = 1.96 for 95 %,

    which, unlike p̂ ± z·se, stays inside [0, 1] and is not [1, 1] when every trial succeeds
    (no trials: no interval, [nan, nan])."""
    if n == 0:
        return [float("nan"), float("nan")]
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max((centre - half) / (1 + z * z / n), 0.0), min((centre + half) / (1 + z * z / n), 1.0)]


def bootstrap_values(statistic, *columns, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``statistic(*columns)`` on ``resamples`` resamples of the items drawn with replacement (the i-th
    entries of every column form item i; columns are arrays or tensors of equal length): (resamples,)."""
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    return np.array([statistic(*(c[idx] for c in columns)) for idx in rng.integers(n, size=(resamples, n))], float)


def bootstrap_interval(statistic, *columns, resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> list[float]:
    """The percentile-bootstrap interval of ``statistic(*columns)`` (``bootstrap_values``), for
    per-item measurements without further structure: PSNR per image, a verifier's score per image …"""
    return quantile_interval(bootstrap_values(statistic, *columns, resamples=resamples, seed=seed), level)


def with_interval(value: float, interval, digits: int = 3) -> str:
    """``0.636 [0.612, 0.660]`` (the value alone when there is no interval)."""
    if not interval:
        return f"{value:.{digits}f}"
    lo, hi = interval
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def measurable(interval) -> bool:
    """Whether a difference's interval excludes 0 (otherwise: no measurable difference)."""
    return interval[0] > 0 or interval[1] < 0


def describe_difference(difference: float, interval, digits: int = 3) -> str:
    """``+0.136 [+0.108, +0.163]``, or ``+0.010 [−0.020, +0.040], no measurable difference``."""
    text = f"{difference:+.{digits}f} [{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"
    return text if measurable(interval) else f"{text}, no measurable difference"


def agree(interval_a, interval_b) -> bool:
    """Whether two measurements agree: their 95 % intervals overlap."""
    return interval_a[0] <= interval_b[1] and interval_b[0] <= interval_a[1]


def flatten_intervals(result: dict) -> dict:
    """A result with its ``interval`` dict spread into plain keys, ``KEY_interval: [lo, hi]`` (rounded),
    as a model card's flat table of metrics holds them."""
    result = dict(result)
    intervals = result.pop("interval")
    return {**result, **{f"{key}_interval": [round(v, 4) for v in ci] for key, ci in intervals.items()}}
