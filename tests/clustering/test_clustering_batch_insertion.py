"""Batch insertion of new rows into a tree, and the batched refit's unchecked entry point.

The oracle for ``extend_minimum_spanning_tree`` is its definition: Kruskal over the given tree's
edges plus every edge that touches a new row, with edges ranked by (squared distance, smaller
endpoint, larger endpoint) and squared distances summed feature by feature in float64, exactly as
the kernels do. It holds for any spanning tree of the old rows, minimal or not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from clustering_oracle import blob_sets, grid_sets, kruskal, random_blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.clustering import (
    extend_minimum_spanning_tree,
    hdbscan_labels,
    minimum_spanning_tree,
    refit_buckets,
    refit_many,
)

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


def squared(X: np.ndarray, i: int, j: int) -> float:
    s = 0.0
    for f in range(X.shape[1]):
        diff = float(X[i, f]) - float(X[j, f])
        s += diff * diff
    return s


def kruskal_with_new_rows(X: np.ndarray, tree: np.ndarray, n_old: int) -> np.ndarray:
    """MST of (tree edges) + (all edges touching a row >= n_old), in (s, a, b) order."""
    n = X.shape[0]
    edges = set()
    for i, j in tree[:, :2].astype(int).tolist():
        edges.add((min(i, j), max(i, j)))
    for z in range(n_old, n):
        for u in range(z):
            edges.add((u, z))
    ranked = sorted((squared(X, a, b), a, b) for a, b in edges)
    kept = kruskal(n, ((a, b, s) for s, a, b in ranked))
    return np.array([(a, b, math.sqrt(s)) for a, b, s in kept], dtype=np.float64).reshape(-1, 3)


def random_spanning_tree(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly shuffled random tree on 0..n-1 (not minimal), rows in random order."""
    perm = rng.permutation(n)
    rows = []
    for k in range(1, n):
        parent = perm[int(rng.integers(0, k))]
        a, b = int(perm[k]), int(parent)
        if rng.random() < 0.5:
            a, b = b, a  # endpoints in either order
        rows.append((a, b, 1.0))  # distances are ignored: keys come from X
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


inputs = st.one_of(
    blob_sets(n=(2, 45), d=(1, 14), max_blobs=4, dup_fractions=[0.0, 0.3, 0.6]),
    grid_sets(max_n=45, max_d=3, max_side=4),
)


@SETTINGS
@given(X=inputs, data=st.data())
def test_clustering_extend_any_tree_equals_kruskal_definition(X, data):
    # Any spanning tree of the old rows, canonical or random, grows into the MST of that tree
    # plus the new rows' edges, row for row in canonical order.
    n = X.shape[0]
    n_old = data.draw(st.integers(1, n), label="old rows")
    seed = data.draw(st.integers(0, 2**32 - 1), label="tree seed")
    for tree in (
        minimum_spanning_tree(X[:n_old]),
        random_spanning_tree(np.random.default_rng(seed), n_old),
    ):
        got = extend_minimum_spanning_tree(X, tree, n_old)
        np.testing.assert_array_equal(got, kruskal_with_new_rows(X, tree, n_old))


@pytest.mark.parametrize("n_old", [1, 2, 5])
def test_clustering_extend_many_new_rows_onto_a_small_tree(n_old):
    # More new rows than old ones (the new rows' own MST carries most of the result).
    X = random_blobs(11, n=120, d=6, n_blobs=3, dup_fraction=0.2)
    grown = extend_minimum_spanning_tree(X, minimum_spanning_tree(X[:n_old]), n_old)
    np.testing.assert_array_equal(grown, minimum_spanning_tree(X))


def test_clustering_extend_identical_rows_keeps_canonical_ties():
    # Every pair at distance 0: each new row may keep many zero-length candidate edges, and the
    # result must still be the canonical tree (smallest endpoints first).
    X = np.zeros((40, 3))
    X[25:] = 1.0
    for n_old in (1, 10, 30, 39):
        grown = extend_minimum_spanning_tree(X, minimum_spanning_tree(X[:n_old]), n_old)
        np.testing.assert_array_equal(grown, minimum_spanning_tree(X))


def test_clustering_extend_without_new_rows_sorts_the_tree():
    X = random_blobs(3, n=30, d=4, n_blobs=2, dup_fraction=0.0)
    mst = minimum_spanning_tree(X)
    shuffled = mst[np.random.default_rng(1).permutation(mst.shape[0])][:, [1, 0, 2]]
    np.testing.assert_array_equal(extend_minimum_spanning_tree(X, shuffled, 30), mst)


@pytest.mark.parametrize("ms", [1, 2])
@pytest.mark.parametrize("method", ["eom", "leaf"])
def test_clustering_refit_buckets_equals_refit_many(ms, method):
    rng = np.random.default_rng(5)
    buckets, previous = [], []
    for b in range(12):
        n = int(rng.integers(1, 90))
        X = np.ascontiguousarray(random_blobs(40 + b, n=n, d=14, n_blobs=3, dup_fraction=0.25))
        buckets.append(X)
        previous.append(
            minimum_spanning_tree(X[: int(rng.integers(1, n + 1))], ms) if b % 3 else None
        )
    want = refit_many(buckets, previous, min_samples=ms, cluster_selection_method=method)
    got = refit_buckets(
        buckets, previous, min_cluster_size=2, min_samples=ms, leaf=method == "leaf"
    )
    for w, g in zip(want[0] + want[1], got[0] + got[1], strict=True):
        np.testing.assert_array_equal(g, w)
        # Fresh arrays, safe to freeze: no output is a view of another array.
        assert g.flags.c_contiguous and not isinstance(g.base, np.ndarray)


def test_clustering_refit_buckets_one_row_bucket_is_noise():
    one = np.array([[0.6, 0.8]])
    pair = np.array([[0.6, 0.8], [0.8, 0.6]])
    labels, msts = refit_buckets(
        [one, pair, one], [None, None, np.empty((0, 3))], min_cluster_size=2, min_samples=1,
        leaf=False,
    )  # fmt: skip
    assert [lab.tolist() for lab in labels] == [[-1], hdbscan_labels(pair).tolist(), [-1]]
    assert [m.shape for m in msts] == [(0, 3), (1, 3), (0, 3)]
    assert labels[0].dtype == np.int64 and msts[0].dtype == np.float64
