"""A verifier's precision, recall, accuracy and AUROC (``verification.metrics.classification``) on
cases small enough to count by hand, the undefined ones, and their intervals."""
import numpy as np
import pytest

from cotlab.stats import bootstrap_interval, proportion_interval
from cotlab.verification.metrics import classification


def brute_auroc(s, y) -> float:
    """P(s_pos > s_neg) + ½ P(s_pos = s_neg) over every positive–negative pair."""
    s, y = np.asarray(s, float), np.asarray(y, bool)
    if y.all() or not y.any():
        return float("nan")
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]))


def test_whole_number_scores_count_as_scores():
    """Scores 1, 0, 1, 1 for ✓ ✗ ✗ ✓: yes to 3, 2 right: precision 2/3, recall 2/2, accuracy 3/4;
    AUROC: each positive (1) beats the 0 and ties the other 1: (1 + ½ + 1 + ½) / 4 = 3/4."""
    q = classification([1, 0, 1, 1], [True, False, False, True])
    assert [q[k] for k in ("precision", "recall", "accuracy", "auroc", "positives")] == \
        pytest.approx([2 / 3, 1, 3 / 4, 3 / 4, 1 / 2])


def test_the_threshold_is_a_decision_at_or_above_it():
    """At θ = 0.7, scores 0.7, 0.65, 0.9 for ✓ ✓ ✗: yes to 0.7 and 0.9, 1 right: precision 1/2,
    recall 1/2, accuracy 1/3; the AUROC does not depend on θ."""
    q = classification([0.7, 0.65, 0.9], [True, True, False], threshold=0.7)
    assert [q["precision"], q["recall"], q["accuracy"], q["auroc"]] == pytest.approx([1 / 2, 1 / 2, 1 / 3, 0])


def test_undefined_shares_are_nan_and_so_are_their_intervals():
    no_yes = classification([0.1, 0.2], [True, False], intervals=True)  # no positive decision
    assert np.isnan(no_yes["precision"]) and no_yes["recall"] == 0 and no_yes["accuracy"] == 0.5
    assert np.isnan(no_yes["interval"]["precision"]).all()
    assert no_yes["interval"]["recall"] == pytest.approx(proportion_interval(0, 1))
    no_positive = classification([0.9, 0.2], [False, False], intervals=True)
    assert np.isnan(no_positive["recall"]) and np.isnan(no_positive["auroc"]) and no_positive["precision"] == 0
    assert np.isnan(no_positive["interval"]["recall"]).all()
    assert no_positive["interval"]["precision"] == pytest.approx(proportion_interval(0, 1))


def test_intervals_wilson_for_the_shares_and_a_bootstrap_for_the_auroc():
    """Precision's interval is Wilson's for hits / yes, recall's for hits / positives; the AUROC's
    is the 500-resample bootstrap of the pairwise AUROC."""
    rng = np.random.default_rng(1)
    s, y = rng.random(40).round(1), rng.random(40) < 0.5
    q = classification(s, y, intervals=True)
    said, hits = s >= 0.5, (s >= 0.5) & y
    assert q["interval"]["precision"] == pytest.approx(proportion_interval(hits.sum(), said.sum()))
    assert q["interval"]["recall"] == pytest.approx(proportion_interval(hits.sum(), y.sum()))
    assert q["interval"]["auroc"] == pytest.approx(bootstrap_interval(brute_auroc, s, y, resamples=500))
    assert q["auroc"] == pytest.approx(brute_auroc(s, y))
