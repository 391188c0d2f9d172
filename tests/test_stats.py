"""The intervals every score carries: known answers by hand, by formula and by brute force."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cotlab import geneval
from cotlab.stats import (agree, bootstrap_interval, bootstrap_values, describe_difference, measurable,
                          proportion_interval, quantile_interval, with_interval)


def test_wilson_interval_matches_the_formula_worked_by_hand():
    # 50 of 100: centre 0.5 + 1.96²/200, half-width 1.96·√(0.25/100 + 1.96²/40000), over 1 + 1.96²/100
    lo, hi = proportion_interval(50, 100)
    assert lo == pytest.approx(0.40383, abs=1e-4) and hi == pytest.approx(0.59617, abs=1e-4)
    z2 = scipy_stats.norm.ppf(0.975) ** 2
    assert proportion_interval(5000, 5000) == pytest.approx([5000 / (5000 + z2), 1.0])  # not [1, 1]
    assert proportion_interval(0, 10) == pytest.approx([0.0, z2 / (10 + z2)], abs=1e-12)


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=2000)
    lo, hi = bootstrap_interval(np.mean, x, resamples=2000)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.15 * half) and hi == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_bootstrap_resamples_items_across_aligned_columns():
    a = np.arange(50.0)
    values = bootstrap_values(lambda x, y: float((x - y).max()), a, a.copy(), resamples=50)
    assert (values == 0).all()  # the i-th entries travel together
    assert quantile_interval([2.0, 2.0, 2.0]) == [2.0, 2.0] and quantile_interval([math.inf] * 3) == [math.inf] * 2
    assert all(math.isnan(v) for v in quantile_interval([math.nan, math.nan]))


def test_wording_of_scores_and_differences():
    assert with_interval(0.6357, [0.612, 0.66]) == "0.636 [0.612, 0.660]"
    assert with_interval(0.5, None) == "0.500"
    assert describe_difference(0.136, [0.108, 0.163]) == "+0.136 [+0.108, +0.163]"
    assert describe_difference(-0.02, [-0.041, 0.001]).endswith("no measurable difference")
    assert measurable([-0.3, -0.1]) and not measurable([-0.1, 0.0]) and not measurable([0.0, 0.0])
    assert agree([0.1, 0.3], [0.25, 0.4]) and not agree([0.1, 0.2], [0.21, 0.4])


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


def test_flatten_intervals_spreads_them_for_a_model_card():
    from cotlab.stats import flatten_intervals

    result = {"psnr": 34.5, "interval": {"psnr": [34.123456, 34.9]}}
    assert flatten_intervals(result) == {"psnr": 34.5, "psnr_interval": [34.1235, 34.9]}
    assert "interval" in result  # the result itself is left as it was


def test_pooled_psnr_interval_holds_the_pooled_value():
    import torch

    from cotlab.metrics import pooled_psnr, pooled_psnr_with_interval

    torch.manual_seed(0)
    x = torch.rand(200, 3, 8, 8)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    value, (lo, hi) = pooled_psnr_with_interval(x, y)
    assert value == pytest.approx(pooled_psnr(x, y), abs=1e-4) and lo < value < hi and hi - lo < 0.5
