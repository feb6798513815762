"""Minimum spanning trees, incremental extension, labels from a tree, and batched refits."""

from __future__ import annotations

import numpy as np
import pytest
from clustering_oracle import (
    blob_sets,
    grid_sets,
    mutual_reachability,
    package_labels,
    random_blobs,
    same_partition,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst

from meds_gym.clustering import (
    extend_minimum_spanning_tree,
    hdbscan_labels,
    labels_from_mst,
    minimum_spanning_tree,
    refit_many,
)
from meds_gym.clustering.mst import edge_order, kruskal, single_linkage, take

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)

inputs = st.one_of(
    blob_sets(n=(2, 60), d=(1, 14), max_blobs=5, dup_fractions=[0.0, 0.2, 0.5]),
    grid_sets(max_n=60, max_d=3, max_side=5),
)


def scipy_total_weight(M: np.ndarray) -> float:
    # scipy reads a dense (near-)zero as "no edge": shift every weight by one, then undo it.
    W = M + 1.0
    np.fill_diagonal(W, 0.0)
    return float(scipy_mst(W).sum()) - (M.shape[0] - 1)


def is_spanning_tree(mst: np.ndarray, n: int) -> bool:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in mst[:, :2].astype(int).tolist():
        ra, rb = find(a), find(b)
        if ra == rb:
            return False
        parent[ra] = rb
    return mst.shape[0] == n - 1


@pytest.mark.parametrize("ms", [1, 2, 5])
@SETTINGS
@given(X=inputs)
def test_clustering_mst_invariants(X, ms):
    n = X.shape[0]
    mst = minimum_spanning_tree(X, ms)
    assert mst.shape == (n - 1, 3) and mst.dtype == np.float64
    assert is_spanning_tree(mst, n)
    i, j = mst[:, 0].astype(int), mst[:, 1].astype(int)
    assert (i < j).all()
    M = mutual_reachability(X, ms)
    # Each weight is exactly the package's mutual-reachability distance of its endpoints.
    np.testing.assert_array_equal(mst[:, 2], M[i, j])
    assert (np.diff(mst[:, 2]) >= 0).all()
    np.testing.assert_allclose(mst[:, 2].sum(), scipy_total_weight(M), rtol=1e-9, atol=1e-9)


def test_clustering_mst_min_samples_is_capped_at_n_minus_1():
    X = random_blobs(3, n=7, d=4, n_blobs=2, dup_fraction=0.0)
    np.testing.assert_array_equal(minimum_spanning_tree(X, 50), minimum_spanning_tree(X, 6))
    assert same_partition(hdbscan_labels(X, 2, 50), package_labels(X, 2, 50))


def test_clustering_mst_small_inputs():
    assert minimum_spanning_tree(np.empty((0, 3))).shape == (0, 3)
    assert minimum_spanning_tree(np.ones((1, 3))).shape == (0, 3)
    np.testing.assert_array_equal(
        minimum_spanning_tree([[0.0, 0.0], [3.0, 4.0]]), [[0.0, 1.0, 5.0]]
    )


@SETTINGS
@given(X=inputs, data=st.data())
def test_clustering_extend_matches_full_refit(X, data):
    n = X.shape[0]
    n_old = data.draw(st.integers(1, n), label="first batch")
    mst = minimum_spanning_tree(X[:n_old])
    while n_old < n:
        n_new = data.draw(st.integers(n_old + 1, n), label="next size")
        mst = extend_minimum_spanning_tree(X[:n_new], mst, n_old)
        full = minimum_spanning_tree(X[:n_new])
        # Same strict edge order on both paths: the very same tree, row for row.
        np.testing.assert_array_equal(mst, full)
        labels = labels_from_mst(mst, n_new)
        np.testing.assert_array_equal(labels, hdbscan_labels(X[:n_new]))
        n_old = n_new


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    X=blob_sets(n=(2, 60), d=(1, 14), max_blobs=5, dup_fractions=[0.0, 0.2]),
    data=st.data(),
)
def test_clustering_extend_agrees_with_package(X, data):
    n = X.shape[0]
    n_old = data.draw(st.integers(1, n))
    mst = extend_minimum_spanning_tree(X, minimum_spanning_tree(X[:n_old]), n_old)
    M = mutual_reachability(X, 1)
    np.testing.assert_allclose(mst[:, 2].sum(), scipy_total_weight(M), rtol=1e-9, atol=1e-9)
    assert same_partition(labels_from_mst(mst, n), package_labels(X))


def test_clustering_extend_accepts_any_minimum_tree_of_the_prefix():
    # Four identical rows have many MSTs; a non-canonical one still grows into *a* minimum tree
    # (same total weight), though not necessarily the canonical one.
    X = np.array([[0.0, 0.0]] * 4 + [[1.0, 0.0], [0.0, 1.0]])
    other = np.array([[2.0, 3.0, 0.0], [0.0, 3.0, 0.0], [1.0, 2.0, 0.0]])
    grown = extend_minimum_spanning_tree(X, other, 4)
    assert is_spanning_tree(grown, 6)
    assert grown[:, 2].sum() == minimum_spanning_tree(X)[:, 2].sum() == 2.0
    assert {tuple(r) for r in grown[:3, :2].tolist()} == {(0.0, 3.0), (1.0, 2.0), (2.0, 3.0)}


def test_clustering_labels_from_mst_sorts_by_weight():
    X = random_blobs(5, n=30, d=3, n_blobs=3, dup_fraction=0.0)
    mst = minimum_spanning_tree(X)
    shuffled = mst[np.random.default_rng(0).permutation(mst.shape[0])]
    np.testing.assert_array_equal(labels_from_mst(shuffled, 30), hdbscan_labels(X))
    np.testing.assert_array_equal(
        labels_from_mst(mst, 30, 3, "leaf", True), hdbscan_labels(X, 3, 1, "leaf", True)
    )
    assert labels_from_mst(np.empty((0, 3)), 1).tolist() == [-1]
    assert labels_from_mst(np.empty((0, 3)), 0).shape == (0,)


@pytest.mark.parametrize("ms", [1, 2])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_clustering_refit_many_equals_per_bucket_calls(ms, seed, sizes):
    rng = np.random.default_rng(seed)
    buckets, previous = [], []
    for b, n in enumerate(sizes):
        X = random_blobs(seed + b, n=max(n, 1), d=5, n_blobs=2, dup_fraction=0.3)[:n]
        buckets.append(X)
        if n >= 1 and rng.random() < 0.6:
            n_old = int(rng.integers(1, n + 1))
            previous.append(minimum_spanning_tree(X[:n_old], ms))
        else:
            previous.append(None)
    labels, msts = refit_many(buckets, previous, min_samples=ms, min_cluster_size=2)
    assert len(labels) == len(msts) == len(sizes)
    for X, lab, mst in zip(buckets, labels, msts, strict=True):
        np.testing.assert_array_equal(lab, hdbscan_labels(X, 2, ms))
        np.testing.assert_array_equal(mst, minimum_spanning_tree(X, ms))
        assert lab.dtype == np.int64


def test_clustering_refit_many_options_and_empty():
    assert refit_many([], []) == ([], [])
    X = random_blobs(1, n=25, d=4, n_blobs=2, dup_fraction=0.2)
    labels, _ = refit_many(
        [X], [None], min_cluster_size=3, cluster_selection_method="leaf", allow_single_cluster=True
    )
    np.testing.assert_array_equal(labels[0], hdbscan_labels(X, 3, 1, "leaf", True))


def test_clustering_rejects_bad_trees_and_batches():
    X = random_blobs(2, n=6, d=3, n_blobs=1, dup_fraction=0.0)
    good = minimum_spanning_tree(X[:4])
    with pytest.raises(ValueError, match=r"`mst` must be an array of shape \(3, 3\)"):
        extend_minimum_spanning_tree(X, good[:2], 4)
    with pytest.raises(ValueError, match=r"integer endpoints in \[0, 4\)"):
        extend_minimum_spanning_tree(X, np.array([[0, 5, 1.0], [1, 2, 1.0], [2, 3, 1.0]]), 4)
    with pytest.raises(ValueError, match="it has a cycle"):
        extend_minimum_spanning_tree(X, np.array([[0, 1, 1.0], [1, 0, 1.0], [2, 3, 1.0]]), 4)
    with pytest.raises(ValueError, match=r"`n_old` must be an int in \[1, 6\]"):
        extend_minimum_spanning_tree(X, good, 7)
    with pytest.raises(TypeError, match="`n_old` must be an int"):
        extend_minimum_spanning_tree(X, good, 4.0)
    with pytest.raises(ValueError, match="non-negative distances"):
        labels_from_mst(np.array([[0, 1, -1.0]]), 2)
    with pytest.raises(ValueError, match="`n` must be an int >= 0"):
        labels_from_mst(np.empty((0, 3)), -1)
    with pytest.raises(ValueError, match="`previous_msts` must be a sequence of the same length"):
        refit_many([X], [])
    with pytest.raises(ValueError, match=r"`buckets\[1\]` must be 3 columns like buckets\[0\]"):
        refit_many([X, np.ones((2, 4))], [None, None])
    with pytest.raises(ValueError, match=r"`previous_msts\[0\]` must be None or an"):
        refit_many([X[:2]], [good])
    with pytest.raises(TypeError, match="`buckets` must be a sequence"):
        refit_many(X, [None])
    with pytest.raises(ValueError, match=r"`buckets\[0\]` must be finite values only"):
        refit_many([np.array([[np.nan, 0.0], [0.0, 0.0]])], [None])


def test_clustering_mst_rejects_bad_input():
    with pytest.raises(ValueError, match="`min_samples` must be an int >= 1"):
        minimum_spanning_tree(np.ones((3, 2)), 0)
    with pytest.raises(ValueError, match="`X` must be finite values only"):
        minimum_spanning_tree([[0.0, np.inf], [1.0, 1.0]])
    with pytest.raises(ValueError, match="`X` must be a 2-D array"):
        extend_minimum_spanning_tree(np.ones(4), np.empty((0, 3)), 1)
    with pytest.raises(ValueError, match="`min_cluster_size` must be an int >= 2"):
        labels_from_mst(np.empty((0, 3)), 1, min_cluster_size=1)
    with pytest.raises(ValueError, match="cluster_selection_method"):
        refit_many([np.ones((2, 2))], [None], cluster_selection_method="tree")


@pytest.mark.parametrize("ms", [1, 2])
def test_clustering_refit_many_parallel_path(ms, monkeypatch):
    import meds_gym.clustering.parallel as module

    monkeypatch.setattr(module, "PARALLEL_MIN_WORK", 0)  # force the worker threads
    monkeypatch.setattr(module.numba, "get_num_threads", lambda: 3)  # even on a 1-core runner
    rng = np.random.default_rng(7)
    buckets, previous = [], []
    for b in range(9):
        n = int(rng.integers(0, 70))
        X = random_blobs(100 + b, n=max(n, 1), d=14, n_blobs=3, dup_fraction=0.2)[:n]
        buckets.append(X)
        previous.append(minimum_spanning_tree(X[: n // 2 + 1], ms) if n and b % 2 else None)
    labels, msts = refit_many(buckets, previous, min_samples=ms)
    for X, lab, mst in zip(buckets, labels, msts, strict=True):
        np.testing.assert_array_equal(lab, hdbscan_labels(X, 2, ms))
        np.testing.assert_array_equal(mst, minimum_spanning_tree(X, ms))


def reference_kruskal(first, second, n):
    """Plain-Python Kruskal with single linkage: ``(na, nb, ns, left, right, count)`` as lists.

    ``first`` and ``second`` are ``(a, b, s)`` edge lists, each in canonical order; they are merged
    by the key ``(s, a, b)`` (the first list's edge on equal keys) and each edge joining two sets
    becomes the next merge, of the nodes that hold ``a`` and ``b`` (points below ``n``, merge
    ``r`` as ``n + r``).
    """
    node = list(range(n))  # per point: the dendrogram node of its set, for the set's members
    members = {p: [p] for p in range(n)}  # set id -> points
    set_of = list(range(n))
    sizes = {p: 1 for p in range(n)}
    out = ([], [], [], [], [], [])
    i = j = 0
    while i < len(first) or j < len(second):
        if j < len(second) and (
            i == len(first)
            or (second[j][2], second[j][0], second[j][1]) < (first[i][2], first[i][0], first[i][1])
        ):
            a, b, s = second[j]
            j += 1
        else:
            a, b, s = first[i]
            i += 1
        x, y = set_of[a], set_of[b]
        if x == y:
            continue
        r = len(out[0])
        for part, value in zip(out, (a, b, s, node[a], node[b], sizes[x] + sizes[y]), strict=True):
            part.append(value)
        members[x] += members.pop(y)
        sizes[x] += sizes.pop(y)
        for p in members[x]:
            set_of[p] = x
            node[p] = n + r
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_old=st.integers(1, 60),
    k=st.integers(1, 12),
    extra=st.integers(0, 40),
    distinct=st.integers(1, 4),
)
def test_kruskal_after_a_tree_equals_plain_kruskal(seed, n_old, k, extra, distinct):
    """Kruskal of an incremental step, which follows the old tree's dendrogram, equals a plain one.

    Random old trees (any shape, chains included) and random new edges, with few distinct lengths
    so tied keys, duplicate edges, edges closing cycles and tree edges dropped for new ones are
    all common. Edges, merges and sizes must all be equal.
    """
    rng = np.random.default_rng(seed)
    n = n_old + k
    perm = rng.permutation(n_old)
    pairs = [sorted((int(perm[i]), int(perm[int(rng.integers(0, i))]))) for i in range(1, n_old)]
    ta = np.array([p[0] for p in pairs], dtype=np.int64)
    tb = np.array([p[1] for p in pairs], dtype=np.int64)
    ts = rng.integers(0, distinct, size=n_old - 1).astype(np.float64)
    order = edge_order(ta, tb, ts, ts)
    ta, tb, ts = take(ta, order), take(tb, order), take(ts, order)
    _, _, _, old_left, old_right, _ = single_linkage(ta, tb, ts, n_old)
    # One edge from each new point to an old one keeps the union connected; then any edges that
    # touch a new point, new-new ones included.
    cb = np.concatenate([np.arange(n_old, n), rng.integers(n_old, n, size=extra)])
    ca = np.concatenate(
        [rng.integers(0, n_old, size=k), [int(rng.integers(0, b)) for b in cb[k:]]]
    ).astype(np.int64)
    cs = rng.integers(0, distinct, size=len(cb)).astype(np.float64)
    order = edge_order(ca, cb, cs, cs)
    ca, cb, cs = take(ca, order), take(cb, order), take(cs, order)

    want = reference_kruskal(
        list(zip(ta, tb, ts, strict=True)), list(zip(ca, cb, cs, strict=True)), n
    )
    got = kruskal(ta, tb, ts, old_left, old_right, ca, cb, cs, n_old, n)
    for got_part, want_part in zip(got, want, strict=True):
        np.testing.assert_array_equal(got_part, want_part)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 80), distinct=st.integers(1, 4))
def test_single_linkage_takes_the_edges_in_their_given_order(seed, n, distinct):
    """One list, in any order: every edge is taken where it stands, whatever its key."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    a = np.array([perm[i] for i in range(1, n)], dtype=np.int64)
    b = np.array([perm[int(rng.integers(0, i))] for i in range(1, n)], dtype=np.int64)
    s = rng.integers(0, distinct, size=n - 1).astype(np.float64)
    shuffle = rng.permutation(n - 1)
    a, b, s = a[shuffle], b[shuffle], s[shuffle]

    want = reference_kruskal(list(zip(a, b, s, strict=True)), [], n)
    got = single_linkage(a, b, s, n)
    for got_part, want_part in zip(got, want, strict=True):
        np.testing.assert_array_equal(got_part, want_part)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_links_to_tree_and_tree_links_are_inverse(seed):
    from meds_gym.clustering import links_to_tree
    from meds_gym.clustering.buckets import tree_links

    X = np.random.default_rng(seed).normal(size=(12, 3))
    tree = minimum_spanning_tree(X, 1)
    links, lengths = tree_links(X, tree)
    assert links.shape == (11, 4) and np.all(lengths > 0)
    np.testing.assert_allclose(lengths, np.sort(lengths))  # canonical order: by length
    back = links_to_tree(links, lengths)
    np.testing.assert_allclose(back[:, 2] ** 2, lengths)
    again = tree_links(X, back)
    np.testing.assert_array_equal(again[0], links)
    np.testing.assert_array_equal(again[1], lengths)
    # the same edge set as the tree the rows give
    assert {tuple(sorted(e)) for e in back[:, :2].astype(int).tolist()} == {
        tuple(sorted(e)) for e in tree[:, :2].astype(int).tolist()
    }
