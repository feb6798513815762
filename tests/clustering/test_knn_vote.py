"""``knn_vote`` against a brute-force numpy version and scikit-learn's cosine neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.clustering import knn_vote
from meds_gym.errors import InvalidArgumentError

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def brute_force_vote(memory, labels, queries, k):
    """The documented rule, written the obvious way."""

    def unit(A):
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        return np.divide(A, norms, out=np.zeros_like(A), where=norms > 0)

    dist = 1.0 - unit(queries) @ unit(memory).T
    k = min(k, memory.shape[0])
    out = []
    for row in dist:
        nearest = np.lexsort((np.arange(row.size), row))[:k]  # by distance, then index
        votes = labels[nearest].tolist()
        counts = {lab: votes.count(lab) for lab in votes}
        best = max(counts.values())
        out.append(next(lab for lab in votes if counts[lab] == best))
    return np.array(out, dtype=np.int64)


def sklearn_vote(memory, labels, queries, k):
    from sklearn.neighbors import NearestNeighbors

    k = min(k, memory.shape[0])
    if queries.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    model = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(memory)
    _, index = model.kneighbors(queries)
    out = []
    for row in index:
        votes = labels[row].tolist()
        counts = {lab: votes.count(lab) for lab in votes}
        best = max(counts.values())
        out.append(next(lab for lab in votes if counts[lab] == best))
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


@pytest.mark.parametrize("k", [1, 3, 5, 200])
@SETTINGS
@given(case=memories())
def test_knn_vote_matches_brute_force(case, k):
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k), brute_force_vote(memory, labels, queries, k)
    )


@pytest.mark.parametrize("k", [1, 3, 5])
@SETTINGS
@given(case=memories(duplicate_rows=True))
def test_knn_vote_duplicate_rows_follow_the_index_rule(case, k):
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k), brute_force_vote(memory, labels, queries, k)
    )


@pytest.mark.parametrize("k", [1, 3, 7])
@SETTINGS
@given(case=memories(min_d=3))
def test_knn_vote_matches_sklearn_without_ties(case, k):
    # Continuous random rows in 3+ dimensions: no distance ties (in 1-D every distance is 0 or 2).
    memory, labels, queries = case
    np.testing.assert_array_equal(
        knn_vote(memory, labels, queries, k), sklearn_vote(memory, labels, queries, k)
    )


def test_knn_vote_hand_computed():
    memory = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = np.array([7, 8, 9, -1])
    # Nearest three of (1, 0.1): rows 0, 1, 3; all labels differ, so the nearest one wins.
    assert knn_vote(memory, labels, [[1.0, 0.1]]).tolist() == [7]
    # Two votes for -1 beat one vote for the nearest row: noise is an ordinary label.
    assert knn_vote(memory, np.array([7, -1, 9, -1]), [[1.0, 0.1]]).tolist() == [-1]
    # Scale does not matter for cosine distance; k larger than the memory uses every row.
    assert knn_vote(memory, labels, [[10.0, 1.0]], k=100).tolist() == [7]
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
