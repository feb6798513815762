"""Oracles for the clustering tests: the ``hdbscan`` package, dense mutual reachability, and a
search for tie-order dependence (a witness that the package's own answer depends on how tied edges
are merged)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy


def package_labels(
    X: np.ndarray,
    min_cluster_size: int = 2,
    min_samples: int = 1,
    method: str = "eom",
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """Labels from ``hdbscan.HDBSCAN`` with the reference settings (default algorithm "best")."""
    import hdbscan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            metric="euclidean",
            cluster_selection_method=method,
            allow_single_cluster=allow_single_cluster,
        )
        return model.fit(np.asarray(X, dtype=np.float64)).labels_


def package_labels_from_ordered_mst(
    mst: np.ndarray,
    min_cluster_size: int = 2,
    method: str = "eom",
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """The package's own single linkage + condensed tree + selection, on MST rows in merge order."""
    from hdbscan._hdbscan_linkage import label
    from hdbscan.hdbscan_ import _tree_to_labels

    linkage = label(np.ascontiguousarray(mst, dtype=np.float64))
    return _tree_to_labels(None, linkage, min_cluster_size, method, allow_single_cluster)[0]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Same noise points and the same grouping of the others (adjusted Rand index 1)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or not np.array_equal(a == -1, b == -1):
        return False
    forward: dict[int, int] = {}
    backward: dict[int, int] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if x == -1:
            continue
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


def canonical_partition(labels: np.ndarray) -> tuple[int, ...]:
    """Labels renumbered by first appearance (noise stays -1), for comparing partitions."""
    mapping: dict[int, int] = {}
    out = []
    for x in np.asarray(labels).tolist():
        out.append(-1 if x == -1 else mapping.setdefault(x, len(mapping)))
    return tuple(out)


def mutual_reachability(X: np.ndarray, min_samples: int) -> np.ndarray:
    """Dense mutual-reachability matrix computed like the ``hdbscan`` package.

    Squared distances are summed feature by feature; the core distance is the distance to the
    ``min_samples``-th neighbour with the row itself as the 0-th (``min_samples`` capped at
    ``N - 1``); the package compares squared values and takes one square root at the end.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    sq = np.zeros((n, n))
    for f in range(d):
        diff = X[:, None, f] - X[None, :, f]
        sq += diff * diff
    k = min(min_samples, n - 1)
    core = np.sqrt(np.sort(sq, axis=1)[:, k])
    core_sq = core * core
    return np.sqrt(np.maximum(sq, np.maximum(core_sq[:, None], core_sq[None, :])))


def kruskal(n: int, ranked: Iterable[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """The edges ``(i, j, w)`` Kruskal keeps from ``ranked`` (edges in rank order) on ``n`` rows."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    kept: list[tuple[int, int, float]] = []
    for i, j, w in ranked:
        if len(kept) == n - 1:
            break
        a, b = find(i), find(j)
        if a != b:
            parent[a] = b
            kept.append((i, j, w))
    return kept


def kruskal_mst(weights: np.ndarray, tie_key: np.ndarray | None = None) -> np.ndarray:
    """MST rows ``(i, j, w)`` in merge order by Kruskal on a dense symmetric weight matrix.

    Edges are taken by weight, then by ``tie_key`` (one value per upper-triangle edge), then by
    position; zero weights are ordinary edges.
    """
    n = weights.shape[0]
    iu, ju = np.triu_indices(n, 1)
    w = weights[iu, ju]
    keys = (np.arange(w.size),) if tie_key is None else (np.arange(w.size), tie_key)
    order = np.lexsort((*keys, w)).tolist()
    ranked = ((int(iu[e]), int(ju[e]), float(w[e])) for e in order)
    return np.array(kruskal(n, ranked), dtype=np.float64).reshape(-1, 3)


def tie_order_witness(
    X: np.ndarray,
    min_cluster_size: int,
    min_samples: int,
    method: str = "eom",
    allow_single_cluster: bool = False,
    tries: int = 40,
    seed: int = 0,
) -> bool:
    """Whether the package's tree code gives two partitions for two tie orders of the same MST.

    Each try runs Kruskal on the exact mutual-reachability graph with a random order among equal
    weights (every such order is one the package could take) and labels the result with the
    package's own condensed-tree code. Two different partitions prove the package's answer on
    this input depends on the tie order; finding none says nothing.
    """
    M = mutual_reachability(X, min_samples)
    rng = np.random.default_rng(seed)
    n = M.shape[0]
    seen = set()
    for _ in range(tries):
        mst = kruskal_mst(M, rng.random(n * (n - 1) // 2))
        labels = package_labels_from_ordered_mst(
            mst, min_cluster_size, method, allow_single_cluster
        )
        seen.add(canonical_partition(labels))
        if len(seen) > 1:
            return True
    return False


def random_blobs(
    seed: int, n: int, d: int, n_blobs: int, dup_fraction: float, normalise: bool = True
) -> np.ndarray:
    """Gaussian blobs with a share of rows replaced by copies of other rows (exact duplicates)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, d)) * 3.0
    X = centers[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, d)) * rng.uniform(0.1, 1.0)
    n_dup = int(round(dup_fraction * n))
    if n_dup and n > 1:
        X[rng.integers(0, n, n_dup)] = X[rng.integers(0, n, n_dup)]
    if normalise:
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def integer_grid(seed: int, n: int, d: int, side: int) -> np.ndarray:
    """Points on a small integer lattice: many exact distance ties and duplicates."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, side, size=(n, d)).astype(np.float64)


def blob_sets(
    n: tuple[int, int], d: tuple[int, int], max_blobs: int, dup_fractions: Sequence[float]
) -> SearchStrategy[np.ndarray]:
    """Hypothesis strategy of :func:`random_blobs` inputs (``n``, ``d``: inclusive ranges)."""
    return st.builds(
        random_blobs,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(*n),
        d=st.integers(*d),
        n_blobs=st.integers(1, max_blobs),
        dup_fraction=st.sampled_from(list(dup_fractions)),
    )


def grid_sets(max_n: int, max_d: int, max_side: int) -> SearchStrategy[np.ndarray]:
    """Hypothesis strategy of :func:`integer_grid` inputs of 2..max_n rows."""
    return st.builds(
        integer_grid,
        seed=st.integers(0, 2**32 - 1),
        n=st.integers(2, max_n),
        d=st.integers(1, max_d),
        side=st.integers(2, max_side),
    )
