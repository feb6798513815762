"""``knn_vote`` against a brute-force numpy version and scikit-learn's cosine neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.clustering import knn_vote, vote_kernel
from meds_gym.clustering.knn import unit_rows
from meds_gym.errors import InvalidArgumentError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def tied_winner(votes, tie_break):
    """The winning label of one query's neighbour labels ``votes`` (nearest first)."""
    if tie_break == "smallest_label":
        # The reference code (Linxi000/MEDS, _classify_with_knn): unique labels come out sorted,
        # and argmax takes the first of the tied counts.
        values, counts = np.unique(np.asarray(votes), return_counts=True)
        return int(values[np.argmax(counts)])
    counts = {lab: votes.count(lab) for lab in votes}
    best = max(counts.values())
    return next(lab for lab in votes if counts[lab] == best)


def brute_force_vote(memory, labels, queries, k, tie_break="smallest_label"):
    """The documented rule, written the obvious way."""

    def unit(A):
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        return np.divide(A, norms, out=np.zeros_like(A), where=norms > 0)

    dist = 1.0 - unit(queries) @ unit(memory).T
    k = min(k, memory.shape[0])
    out = []
    for row in dist:
        nearest = np.lexsort((np.arange(row.size), row))[:k]  # by distance, then index
        out.append(tied_winner(labels[nearest].tolist(), tie_break))
    return np.array(out, dtype=np.int64)


def sklearn_vote(memory, labels, queries, k, tie_break="smallest_label"):
    from sklearn.neighbors import NearestNeighbors

    k = min(k, memory.shape[0])
    if queries.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    model = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(memory)
    _, index = model.kneighbors(queries)
    out = []
    for row in index:
        out.append(tied_winner(labels[row].tolist(), tie_break))
    return np.array(out, dtype=np.int64)


@st.composite
def memories(draw, duplicate_rows=False, min_d=1):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 80))
    q = draw(st.integers(0, 20))
    d = draw(st.integers(min_d, 14))
    n_labels = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    memory = rng.normal(size=(n, d))
    if duplicate_rows and n > 1:
        memory[rng.integers(0, n, n // 2)] = memory[rng.integers(0, n, n // 2)]
    labels = rng.integers(-1, n_labels, size=n)
    queries = rng.normal(size=(q, d))
    return memory, labels, queries


TIE_BREAKS = ["smallest_label", "nearest"]


@pytest.mark.parametrize("tie_break", TIE_BREAKS)
@pytest.mark.parametrize("k", [1, 3, 5, 200])
@SETTINGS
@given(case=memories())
def test_knn_vote_matches_brute_force(case, k, tie_break):
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k, tie_break=tie_break),
        brute_force_vote(memory, labels, queries, k, tie_break),
    )


@pytest.mark.parametrize("tie_break", TIE_BREAKS)
@pytest.mark.parametrize("k", [1, 3, 5])
@SETTINGS
@given(case=memories(duplicate_rows=True))
def test_knn_vote_duplicate_rows_follow_the_index_rule(case, k, tie_break):
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k, tie_break=tie_break),
        brute_force_vote(memory, labels, queries, k, tie_break),
    )


@pytest.mark.parametrize("tie_break", TIE_BREAKS)
@pytest.mark.parametrize("k", [1, 3, 7])
@SETTINGS
@given(case=memories(min_d=3))
def test_knn_vote_matches_sklearn_without_ties(case, k, tie_break):
    # Continuous random rows in 3+ dimensions: no distance ties (in 1-D every distance is 0 or 2).
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k, tie_break=tie_break),
        sklearn_vote(memory, labels, queries, k, tie_break),
    )


@pytest.mark.parametrize("tie_break", TIE_BREAKS)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 40), n_labels=st.integers(3, 6))
def test_vote_kernel_three_way_ties_with_k3(seed, n, n_labels, tie_break):
    # k = 3 with labels drawn from few values: many queries see three different labels (a
    # three-way tie on one vote each), where the two rules disagree unless the nearest is smallest.
    rng = np.random.default_rng(seed)
    memory = rng.normal(size=(n, 4))
    labels = rng.integers(-1, n_labels - 1, size=n)
    queries = rng.normal(size=(30, 4))
    got = vote_kernel(memory, labels, queries, 3, tie_break == "smallest_label")
    np.testing.assert_array_equal(got, brute_force_vote(memory, labels, queries, 3, tie_break))


def test_knn_vote_three_way_tie_rules_differ():
    memory = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])
    query = [[1.0, 0.05]]  # nearest three: rows 0, 1, 2, one vote each
    labels = np.array([4, -1, 2, 9])
    assert knn_vote(memory, labels, query).tolist() == [-1]  # noise wins the tie it is in
    assert knn_vote(memory, labels, query, tie_break="nearest").tolist() == [4]
    no_noise = np.array([4, 5, 2, 9])
    assert knn_vote(memory, no_noise, query, tie_break="smallest_label").tolist() == [2]
    assert knn_vote(memory, no_noise, query, tie_break="nearest").tolist() == [4]
    # A strict majority wins under both rules, tie or not elsewhere.
    majority = np.array([4, 2, 2, 9])
    for rule in TIE_BREAKS:
        assert knn_vote(memory, majority, query, tie_break=rule).tolist() == [2]


def test_knn_vote_rejects_unknown_tie_break():
    with pytest.raises(InvalidArgumentError, match="`tie_break` must be one of"):
        knn_vote(np.ones((2, 2)), [0, 1], [[1.0, 0.0]], tie_break="first")


def test_knn_vote_hand_computed():
    memory = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = np.array([7, 8, 9, -1])
    # Nearest three of (1, 0.1): rows 0, 1, 3; all labels differ: the smallest (noise) wins by
    # default, the nearest one under the "nearest" rule.
    assert knn_vote(memory, labels, [[1.0, 0.1]]).tolist() == [-1]
    assert knn_vote(memory, labels, [[1.0, 0.1]], tie_break="nearest").tolist() == [7]
    # Two votes for -1 beat one vote for the nearest row: noise is an ordinary label.
    assert knn_vote(memory, np.array([7, -1, 9, -1]), [[1.0, 0.1]]).tolist() == [-1]
    # Scale does not matter for cosine distance; k larger than the memory uses every row.
    assert knn_vote(memory, labels, [[10.0, 1.0]], k=100, tie_break="nearest").tolist() == [7]
    assert knn_vote(memory, labels, [[10.0, 1.0]], k=100).tolist() == [-1]
    # An all-zero query is at distance 1 from every row: ties resolved by index.
    assert knn_vote(memory, labels, [[0.0, 0.0]], k=1).tolist() == [7]
    assert knn_vote(memory, labels, np.empty((0, 2))).shape == (0,)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.empty((0, 2)), [], [[1.0, 0.0]]), InvalidArgumentError, "non-empty memory"),
        ((np.ones((2, 2)), [0, 1, 2], [[1.0, 0.0]]), InvalidArgumentError, r"shape \(2,\)"),
        ((np.ones((2, 2)), [0.0, 1.0], [[1.0, 0.0]]), InvalidArgumentError, "integer array"),
        ((np.ones((2, 2)), [True, False], [[1.0, 0.0]]), InvalidArgumentError, "integer array"),
        ((np.ones((2, 2)), [0, 1], [[1.0, 0.0, 0.0]]), InvalidArgumentError, "rows of 2 features"),
        ((np.ones((2, 2)), [0, 1], [1.0, 0.0]), InvalidArgumentError, "`queries` must be a 2-D"),
        ((np.ones(2), [0, 1], [[1.0, 0.0]]), InvalidArgumentError, "`memory_X` must be a 2-D"),
        (([[np.nan, 1.0]], [0], [[1.0, 0.0]]), InvalidArgumentError, "finite values"),
        ((np.ones((2, 2)), [0, 1], [[np.inf, 0.0]]), InvalidArgumentError, "`queries` must be"),
    ],
)
def test_knn_vote_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        knn_vote(*args)


@pytest.mark.parametrize(("k", "error"), [(0, InvalidArgumentError), (2.5, TypeError)])
def test_knn_vote_rejects_bad_k(k, error):
    with pytest.raises(error, match="`k` must be an int"):
        knn_vote(np.ones((2, 2)), [0, 1], [[1.0, 0.0]], k=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_rows_divides_by_the_norm_and_keeps_zero_rows_zero(dtype):
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(9, 5)).astype(dtype)
    rows[[0, 4, 8]] = 0.0
    rows[4, 2] = -0.0  # an all-zero row with a negative zero stays +0.0 throughout
    out = unit_rows(rows)
    assert out.dtype == np.float64 and out.shape == rows.shape
    assert np.array_equal(out[[0, 4, 8]], np.zeros((3, 5))) and not np.signbit(out[4]).any()
    wide = rows.astype(np.float64)
    norms = np.sqrt(np.sum(wide * wide, axis=1, keepdims=True))  # same sum order for 5 columns
    keep = [1, 2, 3, 5, 6, 7]
    np.testing.assert_array_equal(out[keep], wide[keep] / norms[keep])
