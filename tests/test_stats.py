"""The intervals every score carries: known answers by hand, by formula and by brute force."""
import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from cotlab import geneval
from cotlab.stats import (agree, bootstrap_interval, bootstrap_values, describe_difference, flatten_intervals,
                          measurable, proportion_interval, quantile_interval, with_interval)

Z2 = scipy_stats.norm.ppf(0.975) ** 2  # 1.95996² = 3.84146


def test_wilson_interval_matches_the_formula_worked_by_hand():
    # 8 of 10: centre 0.8 + z²/20 = 0.99207, half-width z·√(0.16/10 + z²/400) = 0.31362,
    # over 1 + z²/10 = 1.38415: [0.67846 / 1.38415, 1.30569 / 1.38415] = [0.49016, 0.94332]
    assert proportion_interval(8, 10) == pytest.approx([0.49016, 0.94332], abs=1e-5)
    # 50 of 100: centre 0.5 + z²/200, half-width z·√(0.25/100 + z²/40000), over 1 + z²/100
    assert proportion_interval(50, 100) == pytest.approx([0.40383, 0.59617], abs=1e-5)
    # every trial right: p̂ = 1, half-width z²/2n, so [(1 + z²/2n − z²/2n) / (1 + z²/n), 1] — not [1, 1]
    assert proportion_interval(5000, 5000) == pytest.approx([5000 / (5000 + Z2), 1.0])
    assert proportion_interval(0, 10) == pytest.approx([0.0, Z2 / (10 + Z2)], abs=1e-12)


def test_wilson_interval_is_scipys_at_any_level():
    for k, n, level in [(8, 10, 0.95), (3, 17, 0.9), (1, 4, 0.5), (40, 41, 0.99)]:
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
        assert proportion_interval(k, n, level) == pytest.approx([ci.low, ci.high], rel=1e-12)


def test_wilson_interval_is_clipped_to_zero_and_one():
    # with 9 trials the formula's ends land a rounding error outside [0, 1] (1 + 2e-16, −2e-17)
    assert proportion_interval(9, 9)[1] == 1.0 and proportion_interval(0, 9)[0] == 0.0


def test_no_trials_have_no_interval():
    assert all(math.isnan(v) for v in proportion_interval(0, 0))


def test_quantile_interval_by_hand():
    # 101 values 0 … 100: the 2.5 % and 97.5 % quantiles sit at positions 2.5 and 97.5
    assert quantile_interval(np.arange(101.0)) == pytest.approx([2.5, 97.5], abs=1e-12)
    assert quantile_interval(np.arange(101.0), level=0.9) == pytest.approx([5.0, 95.0], abs=1e-12)
    # 1 … 5 at level ½: the quartiles, at positions 1 and 3 of the sorted values; the NaN is dropped
    assert quantile_interval([5.0, math.nan, 1.0, 3.0, 2.0, 4.0], level=0.5) == pytest.approx([2.0, 4.0], abs=1e-12)
    # verdicts are shares too: 0 1 1 1 at level ½, positions 0.75 and 2.25: [0.75, 1]
    assert quantile_interval([True, False, True, True], level=0.5) == [0.75, 1.0]
    assert quantile_interval([2.0, 2.0, 2.0]) == [2.0, 2.0] and quantile_interval([math.inf] * 3) == [math.inf] * 2
    assert quantile_interval([3.0]) == [3.0, 3.0]
    assert all(math.isnan(v) for v in quantile_interval([math.nan, math.nan]))


def brute_force_bootstrap(statistic, *columns, resamples, seed):
    """The statistic on each resample, item by item, drawn from the same generator."""
    draws = np.random.default_rng(seed).integers(len(columns[0]), size=(resamples, len(columns[0])))
    return [statistic(*([column[i] for i in draw] for column in columns)) for draw in draws]


def test_bootstrap_values_match_a_brute_force_with_the_same_draws():
    x, y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0]), np.array([2.0, 7.0, 1.0, 8.0, 2.0, 8.0])
    statistic = lambda a, b: float(np.sum(a) - 2 * np.max(b))  # noqa: E731
    values = bootstrap_values(statistic, x, y, resamples=7, seed=3)
    assert values.tolist() == brute_force_bootstrap(statistic, x, y, resamples=7, seed=3)
    assert len(bootstrap_values(statistic, x, y)) == 1000  # the default count, with seed 0
    assert bootstrap_values(statistic, x, y).tolist() == brute_force_bootstrap(statistic, x, y, resamples=1000, seed=0)
    assert bootstrap_values(lambda a: int(a.sum()), x, resamples=3).dtype == np.float64  # counts come back as floats
    tensor = bootstrap_values(lambda t: t.sum().item(), torch.tensor(x), resamples=7, seed=3)
    assert tensor.tolist() == brute_force_bootstrap(sum, x, resamples=7, seed=3)


def test_bootstrap_interval_is_the_quantile_interval_of_the_brute_force():
    x = np.random.default_rng(1).normal(size=30)
    expected = quantile_interval(brute_force_bootstrap(np.mean, x, resamples=50, seed=4), level=0.8)
    assert bootstrap_interval(np.mean, x, resamples=50, seed=4, level=0.8) == pytest.approx(expected, rel=1e-12)
    defaults = quantile_interval(brute_force_bootstrap(np.mean, x, resamples=1000, seed=0))  # 1000, seed 0, 95 %
    assert bootstrap_interval(np.mean, x) == pytest.approx(defaults, rel=1e-12)


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=2000)
    lo, hi = bootstrap_interval(np.mean, x, resamples=2000)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.15 * half) and hi == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_bootstrap_resamples_items_across_aligned_columns():
    a = np.arange(50.0)
    values = bootstrap_values(lambda x, y: float((x - y).max()), a, a.copy(), resamples=50)
    assert (values == 0).all()  # the i-th entries travel together


def test_wording_of_scores_and_differences():
    assert with_interval(0.6357, [0.612, 0.66]) == "0.636 [0.612, 0.660]"
    assert with_interval(0.5, None) == "0.500" and with_interval(0.5, []) == "0.500"
    assert with_interval(0.5, [0.31, 0.77], digits=1) == "0.5 [0.3, 0.8]"
    assert describe_difference(0.136, [0.108, 0.163]) == "+0.136 [+0.108, +0.163]"
    assert describe_difference(-0.02, [-0.041, 0.001]) == "-0.020 [-0.041, +0.001], no measurable difference"
    assert describe_difference(-0.0204, [-0.031, -0.012], digits=2) == "-0.02 [-0.03, -0.01]"


def test_a_difference_is_measurable_when_its_interval_excludes_zero():
    assert measurable([0.001, 0.2]) and measurable([-0.3, -0.001])
    assert not measurable([0.0, 0.2]) and not measurable([-0.2, 0.0]) and not measurable([0.0, 0.0])
    assert not measurable([-0.1, 0.1])


def test_intervals_agree_when_they_overlap_or_touch():
    assert agree([0.1, 0.3], [0.25, 0.4]) and agree([0.25, 0.4], [0.1, 0.3])
    assert agree([0.1, 0.2], [0.2, 0.4]) and agree([0.2, 0.4], [0.1, 0.2])  # touching ends
    assert agree([0.1, 0.4], [0.2, 0.3]) and agree([0.2, 0.3], [0.1, 0.4])  # one inside the other
    assert not agree([0.1, 0.2], [0.21, 0.4]) and not agree([0.21, 0.4], [0.1, 0.2])


def test_flatten_intervals_spreads_them_for_a_model_card():
    result = {"psnr": 34.5, "ssim": 0.9, "interval": {"psnr": [34.123456, 34.9], "ssim": [0.88884, 0.91]}}
    assert flatten_intervals(result) == {"psnr": 34.5, "ssim": 0.9, "psnr_interval": [34.1235, 34.9],
                                         "ssim_interval": [0.8888, 0.91]}
    assert "interval" in result  # the result itself is left as it was


# --- GenEval's intervals: prompts resampled, samples within ---------------------------------------
def rows_of(correct: dict[str, list[list[bool]]], start: int = 0) -> list[dict]:
    """Judged rows from {tag: per prompt, its samples' verdicts}, named as evaluate_generator names them."""
    rows, index = [], start
    for tag, prompts in correct.items():
        for samples in prompts:
            rows += [{"filename": f"{index:05d}/samples/{j:04d}.png", "tag": tag, "correct": bool(c)}
                     for j, c in enumerate(samples)]
            index += 1
    return rows


def test_interval_over_prompts_matches_the_binomial_one():
    # 400 prompts of one sample, 100 right: resampling prompts is resampling a share, ±1.96·√(p(1 − p)/n)
    rows = rows_of({"colors": [[i < 100] for i in range(400)]})
    lo, hi = geneval.intervals(rows)["colors"]
    half = 1.96 * math.sqrt(0.25 * 0.75 / 400)
    assert lo == pytest.approx(0.25 - half, abs=0.006) and hi == pytest.approx(0.25 + half, abs=0.006)


def test_interval_resamples_the_samples_of_a_prompt():
    # two alike prompts, 40 samples each, 20 right: drawing prompts changes nothing, only the draw of
    # samples within them varies — Binomial(80, ½) / 80
    lo, hi = geneval.intervals(rows_of({"counting": [[j < 20 for j in range(40)]] * 2}))["counting"]
    expected = scipy_stats.binom.ppf([0.025, 0.975], 80, 0.5) / 80  # 0.39, 0.61
    assert lo == pytest.approx(expected[0], abs=0.026) and hi == pytest.approx(expected[1], abs=0.026)


def test_overall_interval_is_that_of_the_mean_of_the_tasks():
    rows = rows_of({"colors": [[i < 100] for i in range(200)], "position": [[i < 50] for i in range(200)]})
    ci = geneval.intervals(rows)
    half = 1.96 * math.sqrt(0.25 / 200 + 0.25 * 0.75 / 200) / 2  # independent tasks, averaged
    assert ci["overall"] == pytest.approx([0.375 - half, 0.375 + half], abs=0.008)
    assert geneval.intervals(rows_of({"colors": [[True] * 4] * 10}))["overall"] == [1.0, 1.0]
    single = geneval.intervals(rows_of({"colors": [[True]], "position": [[False], [True]]}))
    assert all(math.isnan(v) for v in single["colors"] + single["overall"])  # one prompt: no interval
    assert not any(math.isnan(v) for v in single["position"])


def test_paired_difference_removes_the_shared_difficulty():
    rng = np.random.default_rng(0)
    easy = rng.random(300) < 0.5  # half the prompts easy: both strategies right there, wrong elsewhere
    a = rows_of({"two_object": [[e or j == 0] * 1 for j, e in enumerate(easy)]})
    b = rows_of({"two_object": [[e] for e in easy]})
    d = geneval.paired_difference(a, b)["two_object"]
    assert d["difference"] == pytest.approx(1 / 300)  # exactly one prompt differs
    assert d["interval"][0] >= 0 and d["interval"][1] <= 0.015  # paired: only that prompt's draw varies
    unpaired = [geneval.intervals(rows)["two_object"] for rows in (a, b)]
    assert unpaired[0][1] - unpaired[0][0] > 5 * (d["interval"][1] - d["interval"][0])
    same = geneval.paired_difference(b, b)["overall"]
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="same prompts and samples"):
        geneval.paired_difference(a, b[:-1])


def test_summaries_and_the_score_table_carry_intervals():
    summary = geneval.summarize(rows_of({"colors": [[True, False]] * 10, "position": [[False, False]] * 10}))
    assert summary["overall"] == 0.25 and set(summary["interval"]) == {"colors", "position", "overall"}
    assert summary["interval"]["position"] == [0.0, 0.0]
    table = geneval.format_summary(summary)
    assert "| colors | 0.500 [" in table and "**0.250 [" in table


def test_pooled_psnr_interval_holds_the_pooled_value():
    import torch

    from cotlab.metrics import pooled_psnr, pooled_psnr_with_interval

    torch.manual_seed(0)
    x = torch.rand(200, 3, 8, 8)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    value, (lo, hi) = pooled_psnr_with_interval(x, y)
    assert value == pytest.approx(pooled_psnr(x, y), abs=1e-4) and lo < value < hi and hi - lo < 0.5
