"""pass@k against brute-force subset enumeration; cluster agreement against scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.evaluation import (
    adjusted_rand_index,
    cluster_agreement,
    cluster_purity,
    distinct_answers,
    mean_pass_at_k,
    pass_at_k,
    pass_at_k_curve,
    rollout_metrics,
    top1_eigen_ratio,
)
from meds_gym.errors import InvalidArgumentError
from meds_gym.tasks.base import Problem

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(5, 0, 5) == 0.0
    # Large n where binomial coefficients overflow floats: compare with exact integer arithmetic.
    from math import comb

    exact = 1 - comb(1000 - 7, 128) / comb(1000, 128)
    assert pass_at_k(1000, 7, 128) == pytest.approx(exact, rel=1e-10)
    assert mean_pass_at_k([0, 10], n=10, k=1) == pytest.approx(0.5)
    curve = pass_at_k_curve([1, 3], n=4)  # k = 1, 2, 4
    assert list(curve) == ["pass@1", "pass@2", "pass@4"]
    assert curve["pass@1"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert curve["pass@4"] == 1.0


@pytest.mark.parametrize(
    ("n", "c", "k", "match"),
    [(0, 0, 1, "`n`"), (3, 4, 1, "`c`"), (3, 1, 4, "`k`"), (3, 1, 0, "`k`")],
)
def test_pass_at_k_rejects(n, c, k, match):
    with pytest.raises(InvalidArgumentError, match=match):
        pass_at_k(n, c, k)


def test_distinct_answers():
    out = distinct_answers(["a", "a", "a", "b", "b", "c"], ["1", "2", "1", "5", None, None])
    assert out == {"a": 2, "b": 1, "c": 0}
    with pytest.raises(InvalidArgumentError, match="answers"):
        distinct_answers(["a"], [])


def test_top1_eigen_ratio():
    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=50), [1.0, 2.0, -1.0])  # rank one: ratio 1
    assert top1_eigen_ratio(line) == pytest.approx(1.0)
    iso = rng.normal(size=(20000, 4))  # isotropic: ratio about 1/4
    assert top1_eigen_ratio(iso) == pytest.approx(0.25, abs=0.02)
    # Oracle: eigenvalues of numpy's covariance computed directly; NaN rows dropped.
    x = rng.normal(size=(30, 5)) * np.array([3.0, 1.0, 1.0, 0.5, 0.1])
    with_nan = np.vstack([x, np.full((3, 5), np.nan)])
    ev = np.linalg.eigvalsh(np.cov(x.T))
    assert top1_eigen_ratio(with_nan) == pytest.approx(ev[-1] / ev.sum())
    assert np.isnan(top1_eigen_ratio(np.ones((1, 3))))
    assert np.isnan(top1_eigen_ratio(np.ones((4, 3))))


labels = st.lists(st.integers(min_value=-1, max_value=4), min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_ari_and_purity_match_sklearn(data):
    true = data.draw(labels)
    pred = data.draw(st.lists(st.integers(-1, 4), min_size=len(true), max_size=len(true)))
    if len(true) == 0:
        return
    assert adjusted_rand_index(true, pred) == pytest.approx(
        sklearn_metrics.adjusted_rand_score(true, pred), abs=1e-12
    )
    table = sklearn_metrics.cluster.contingency_matrix(true, pred)
    assert cluster_purity(true, pred) == pytest.approx(table.max(axis=0).sum() / len(true))


def test_ari_string_labels_and_edge_cases():
    modes = ["carry", "carry", "prec", "prec", "sign"]
    assert adjusted_rand_index(modes, [0, 0, 1, 1, 2]) == 1.0
    assert cluster_purity(modes, [0, 0, 0, 0, 0]) == pytest.approx(0.4)
    assert adjusted_rand_index(["a"], [3]) == 1.0
    with pytest.raises(InvalidArgumentError, match="labels_pred"):
        adjusted_rand_index([0, 1], [0])


def test_error_mode_labels_and_dominant_share():
    from agents.evaluation import dominant_mode_share, error_mode_labels

    problem = Problem("t/0", "?", "5", error_modes={"carry": "12", "sign": "8", "prec": "12"})
    labels = error_mode_labels(["12", "8", "99", None, " 008", "5", "x"], [problem] * 7)
    # Every mode giving the answer, joined; integers compared as integers (the toy tasks' truth,
    # meds_gym.tasks.procedural.label_error_modes); the gold answer and non-integers are "other".
    assert labels == ["carry+prec", "sign", "other", "other", "sign", "other", "other"]
    benchmark = Problem("b/0", "?", "5")  # a benchmark problem knows no error modes
    assert error_mode_labels(["12"], [benchmark]) == ["other"]
    assert dominant_mode_share(["a", "a", "a", "b"], ["x", "x", "y", "z"]) == pytest.approx(3 / 4)
    assert dominant_mode_share(["a", "b"], ["x", "y"]) == 1.0
    assert np.isnan(dominant_mode_share([], []))
    # Unexplained answers are not a mode; the largest mode is the largest now.
    assert dominant_mode_share(["a"] * 4, ["other", "other", "x", "y"]) == pytest.approx(1 / 2)
    assert np.isnan(dominant_mode_share(["a", "a"], ["other", "other"]))
    from agents.evaluation import effective_mode_count

    assert effective_mode_count(["a"] * 4, ["x", "x", "y", "y"]) == pytest.approx(2.0)
    assert effective_mode_count(["a", "a", "b"], ["x", "other", "y"]) == pytest.approx(1.0)
    assert np.isnan(effective_mode_count(["a"], ["other"]))
    with pytest.raises(InvalidArgumentError, match="problems"):
        error_mode_labels(["1"], [])
    with pytest.raises(InvalidArgumentError, match="labels"):
        dominant_mode_share(["a"], [])


MODES = Problem("p/0", "?", "14", error_modes={"precedence": "20", "sign": "9"})
"""A problem with two error modes (every rollout of these tests shares its table)."""


def test_rollout_metrics_by_hand():
    ids = ["p", "p", "p", "p", "q", "q"]
    answers = ["14", "20", "20", "9", "5", None]
    correct = [True, False, False, False, True, False]
    metrics = rollout_metrics(ids, answers, correct, [1, 0, 0, 0, 1, 0], [MODES] * 6)
    assert metrics["charts/reward_mean"] == pytest.approx(2 / 6)
    assert metrics["charts/distinct_answers"] == pytest.approx((3 + 1) / 2)
    # Wrong: p has precedence x2 and sign x1 (dominant 2); q's "other" is not a mode: 2 / 3.
    assert metrics["charts/dominant_error_share"] == pytest.approx(2 / 3)
    shares = np.array([2 / 3, 1 / 3])
    want = np.exp(-(shares * np.log(shares)).sum())
    assert metrics["charts/effective_error_modes"] == pytest.approx(want)
    all_right = rollout_metrics(["p"], ["14"], [True], [1.0], [MODES])
    assert "charts/dominant_error_share" not in all_right  # no NaN: the key is left out


def test_cluster_agreement_per_problem_and_without_unassigned():
    ids = ["p", "p", "p", "q", "q"]
    answers = ["20", "20", "9", "20", "9"]
    # Clusters agree with modes within each problem; q's labels reuse p's numbers on purpose.
    perfect = cluster_agreement(ids, answers, [MODES] * 5, [0, 0, 1, 1, 0])
    assert perfect == pytest.approx(1.0)
    expected = sklearn_metrics.adjusted_rand_score(
        ["p20", "p20", "p9", "q20"], ["p0", "p1", "p1", "q1"]
    )
    mixed = cluster_agreement(ids, answers, [MODES] * 5, [0, 1, 1, 1, -2])  # -2: left out
    assert mixed == pytest.approx(expected)
    assert np.isnan(cluster_agreement(ids[:2], answers[:2], [MODES] * 2, [-2, 0]))
