"""Exact HDBSCAN for small buckets: labels, MSTs, incremental refits and batched refits.

One kernel fits one bucket, the error memory's (:func:`meds_gym.clustering.buckets.refit_bucket`,
here on the rows as given, not normalised, and without a vote); every function here validates
its arguments and calls it, converting its ``(a, b, distance)`` trees to and from the kernel's
stored form, and :func:`refit_buckets` is the batched refit on these functions' own tree format
(:func:`refit_many` validates, then calls it).

The labels equal those of ``hdbscan.HDBSCAN(min_cluster_size, min_samples, metric="euclidean",
cluster_selection_method, allow_single_cluster).fit(X).labels_`` whenever the package's own result
does not depend on the order in which it merges tied edges (see "Ties" below). The pipeline is a
dense O(N^2 d) Prim MST of the mutual-reachability graph (:mod:`meds_gym.clustering.mst`), single
linkage, the condensed tree and excess-of-mass or leaf selection
(:mod:`meds_gym.clustering.condensed_tree`).

Ties. When three or more groups of points merge at exactly the same mutual-reachability distance,
the binary single-linkage tree depends on the order the tied edges are merged in, and so can the
condensed tree: the package takes that order from its kd-tree Boruvka search followed by an
unstable ``numpy.argsort``, which changes with the row order and the CPU's sort kernel. Such a
merge changes the labels only when the groups other than the largest one hold at least
``min_cluster_size`` points together (for example four identical rows with
``min_cluster_size=2``, or a point whose core distance ties it to two clusters when
``min_samples > 1``). There this module follows its canonical edge order (mutual-reachability
distance, then raw distance, then point indices), which makes the result independent of the
package's internals and identical between a full fit and an incremental one.

Example:
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1], [5.1, 5.0],
    ...               [20.0, 20.0]])
    >>> hdbscan_labels(X).tolist()
    [0, 0, 0, 1, 1, 1, -1]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numba import types

from meds_gym.clustering._validation import (
    as_finite_matrix,
    check_bool,
    check_int,
    check_method,
)
from meds_gym.clustering.buckets import (
    NO_LENGTHS,
    NO_LINKS,
    links_to_tree,
    refit_bucket,
    tree_links,
)
from meds_gym.clustering.compilation import (
    FUNCTIONS,
    INDEX,
    READ_INDEX,
    ROWS,
    ensure_compiled,
    register,
)
from meds_gym.clustering.condensed_tree import labels_from_ordered_edges
from meds_gym.clustering.disjoint_set import is_spanning_tree
from meds_gym.clustering.parallel import for_each_bucket
from meds_gym.errors import InvalidArgumentError, invalid_type

__all__ = [
    "extend_minimum_spanning_tree",
    "hdbscan_labels",
    "labels_from_mst",
    "minimum_spanning_tree",
    "refit_buckets",
    "refit_many",
]

register(types.boolean(READ_INDEX, READ_INDEX, types.int64))(is_spanning_tree)
register(INDEX(ROWS, types.int64, types.int64, types.boolean, types.boolean))(
    labels_from_ordered_edges
)

_NO_LABELS = np.zeros(0, dtype=np.int64)
_NO_LABELS.flags.writeable = False


def _fit_bucket(
    X: np.ndarray,
    previous_mst: np.ndarray | None,
    min_samples: int,
    min_cluster_size: int,
    leaf: bool,
    allow_single_cluster: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and canonical MST of one bucket (the kernels must be compiled).

    Releases the GIL while it computes, so :func:`refit_buckets` runs buckets on threads.

    Args:
        X: ``float64`` ``(N, d)`` rows of the bucket, C-contiguous.
        previous_mst: ``None`` or a ``float64`` ``(n_old - 1, 3)`` spanning tree of the first
            ``n_old`` rows, extended when ``min_samples`` is effectively 1 (ignored otherwise).
        min_samples: Core-distance neighbour rank (``>= 1``).
        min_cluster_size: Minimum cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``(labels, mst)``: ``int64`` ``(N,)`` and ``float64`` ``(max(N - 1, 0), 3)``, fresh.
    """
    if previous_mst is None:
        n_old, links, lengths = 0, NO_LINKS, NO_LENGTHS
    else:
        n_old = previous_mst.shape[0] + 1
        links, lengths = tree_links(X, previous_mst)
    _, _, labels, links, lengths, _ = refit_bucket(
        X, False, n_old, links, lengths, _NO_LABELS, False, 1, False,
        min_samples, min_cluster_size, leaf, allow_single_cluster,
    )  # fmt: skip
    return labels, links_to_tree(links, lengths)


def _fit_one(
    X: np.ndarray,
    previous_mst: np.ndarray | None,
    min_samples: int,
    min_cluster_size: int,
    leaf: bool,
    allow_single_cluster: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fit_bucket` on validated arguments, compiling the kernels on first use."""
    ensure_compiled(FUNCTIONS)
    return _fit_bucket(X, previous_mst, min_samples, min_cluster_size, leaf, allow_single_cluster)


def _check_common(
    min_cluster_size: Any, cluster_selection_method: Any, allow_single_cluster: Any
) -> tuple[int, bool, bool]:
    mcs = check_int("min_cluster_size", min_cluster_size, 2)
    leaf = check_method(cluster_selection_method)
    single = check_bool("allow_single_cluster", allow_single_cluster)
    return mcs, leaf, single


def hdbscan_labels(
    X: Any,
    min_cluster_size: int = 2,
    min_samples: int = 1,
    cluster_selection_method: str = "eom",
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN cluster labels with Euclidean distance, as the ``hdbscan`` package computes them.

    Args:
        X: Array-like of shape ``(N, d)`` of finite real numbers (converted to ``float64``).
        min_cluster_size: Smallest group the condensed tree keeps as a cluster (``>= 2``).
        min_samples: Neighbour rank of the core distance, the row itself counting as the 0-th
            neighbour (``>= 1``; capped at ``N - 1`` like the package does).
        cluster_selection_method: ``"eom"`` (excess of mass) or ``"leaf"``.
        allow_single_cluster: Whether the whole data set may come out as one cluster.

    Returns:
        ``int64`` array of shape ``(N,)``: labels ``0..k-1`` and ``-1`` for noise. Fewer than two
        rows give all ``-1``.

    Raises:
        InvalidArgumentError: On a non-2-D ``X``, NaN or infinity, ``min_cluster_size < 2``,
            ``min_samples < 1`` or an unknown selection method.
        TypeError: On a non-integer size or a non-boolean flag.
    """
    matrix = as_finite_matrix("X", X)
    mcs, leaf, single = _check_common(
        min_cluster_size, cluster_selection_method, allow_single_cluster
    )
    ms = check_int("min_samples", min_samples, 1)
    return _fit_one(matrix, None, ms, mcs, leaf, single)[0]


def minimum_spanning_tree(X: Any, min_samples: int = 1) -> np.ndarray:
    """Minimum spanning tree of the mutual-reachability graph of ``X``.

    Args:
        X: Array-like of shape ``(N, d)`` of finite real numbers.
        min_samples: Core-distance neighbour rank (``>= 1``, capped at ``N - 1``).

    Returns:
        ``float64`` array of shape ``(max(N - 1, 0), 3)``: rows ``(i, j, distance)`` with
        ``i < j``, in the canonical edge order (distance, raw distance, ``i``, ``j``), which is
        the order :func:`labels_from_mst` merges them in.

    Raises:
        InvalidArgumentError: On a non-2-D ``X``, NaN or infinity, or ``min_samples < 1``.
    """
    matrix = as_finite_matrix("X", X)
    ms = check_int("min_samples", min_samples, 1)
    return _fit_one(matrix, None, ms, 2, False, False)[1]


def _check_mst(mst: Any, n_old: int, name: str = "mst") -> np.ndarray:
    """Validate an MST of ``n_old`` points: shape ``(n_old - 1, 3)``, valid endpoints, a tree."""
    try:
        array = np.asarray(mst, dtype=np.float64)
    except Exception as exc:
        raise InvalidArgumentError(name, "a float array of shape (n - 1, 3)", mst) from exc
    if array.ndim != 2 or array.shape != (max(n_old - 1, 0), 3):
        raise InvalidArgumentError(
            name,
            f"an array of shape ({max(n_old - 1, 0)}, 3) for {n_old} points "
            f"(got shape {array.shape})",
            mst,
        )
    if array.shape[0] == 0:
        return np.ascontiguousarray(array)
    ends = array[:, :2]
    if (
        not np.isfinite(array).all()
        or (ends != np.round(ends)).any()
        or (ends < 0).any()
        or (ends >= n_old).any()
    ):
        raise InvalidArgumentError(
            name, f"rows (i, j, distance) with integer endpoints in [0, {n_old})", mst
        )
    a = ends[:, 0].astype(np.int64)
    b = ends[:, 1].astype(np.int64)
    ensure_compiled(FUNCTIONS)
    if not is_spanning_tree(a, b, n_old):
        raise InvalidArgumentError(name, f"a spanning tree of {n_old} points (it has a cycle)", mst)
    return np.ascontiguousarray(array)


def extend_minimum_spanning_tree(X: Any, mst: Any, n_old: int) -> np.ndarray:
    """Grow the MST of ``X[:n_old]`` into the MST of all of ``X`` (``min_samples=1`` only).

    Only the old tree's edges and the edges incident to the new rows can be in the new tree, so
    this costs O(new x N x d) instead of O(N^2 x d). Because both this function and
    :func:`minimum_spanning_tree` use one strict edge order, the result is the very tree (and
    order) that :func:`minimum_spanning_tree` returns on all of ``X``, duplicates and ties
    included, provided ``mst`` is the tree this module returned for ``X[:n_old]``. Any other
    minimum spanning tree of ``X[:n_old]`` still gives a minimum spanning tree of ``X``, which
    may differ from the canonical one in tied edges.

    Args:
        X: Array-like of shape ``(N, d)``: the ``n_old`` old rows, then the new ones.
        mst: Array-like of shape ``(n_old - 1, 3)``: the MST of ``X[:n_old]``.
        n_old: Number of old rows (``1 <= n_old <= N``).

    Returns:
        ``float64`` array of shape ``(N - 1, 3)`` in canonical edge order.

    Raises:
        InvalidArgumentError: On a bad ``X``, ``n_old`` outside ``[1, N]``, or an ``mst`` that is
            not a spanning tree of ``n_old`` points.
    """
    matrix = as_finite_matrix("X", X)
    n = matrix.shape[0]
    if isinstance(n_old, bool) or not isinstance(n_old, (int, np.integer)):
        raise invalid_type("n_old", "an int", n_old)
    if not 1 <= n_old <= max(n, 1):
        raise InvalidArgumentError("n_old", f"an int in [1, {n}] (the number of rows of X)", n_old)
    tree = _check_mst(mst, int(n_old))
    return _fit_one(matrix, tree, 1, 2, False, False)[1]


def labels_from_mst(
    mst: Any,
    n: int,
    min_cluster_size: int = 2,
    cluster_selection_method: str = "eom",
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels from a minimum spanning tree of the mutual-reachability graph.

    Edges are merged by increasing distance; edges of equal distance are merged in the order of
    their rows (a stable sort), so pass the trees this module returns unchanged to reproduce
    :func:`hdbscan_labels` exactly.

    Args:
        mst: Array-like of shape ``(n - 1, 3)``, rows ``(i, j, distance)``.
        n: Number of points.
        min_cluster_size: Smallest cluster size (``>= 2``).
        cluster_selection_method: ``"eom"`` or ``"leaf"``.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``int64`` array of shape ``(n,)``; ``n < 2`` gives all ``-1``.

    Raises:
        InvalidArgumentError: On an ``mst`` that is not a spanning tree of ``n`` points, negative
            distances, or bad parameters.
    """
    count = check_int("n", n, 0)
    mcs, leaf, single = _check_common(
        min_cluster_size, cluster_selection_method, allow_single_cluster
    )
    tree = _check_mst(mst, count)
    if count < 2:
        return np.full(count, -1, dtype=np.int64)
    if (tree[:, 2] < 0).any():
        raise InvalidArgumentError("mst", "non-negative distances in column 2", mst)
    ordered = np.ascontiguousarray(tree[np.argsort(tree[:, 2], kind="stable")])
    ensure_compiled(FUNCTIONS)
    return labels_from_ordered_edges(ordered, count, mcs, leaf, single)


def refit_many(
    buckets: Sequence[Any],
    previous_msts: Sequence[Any | None],
    *,
    min_cluster_size: int = 2,
    min_samples: int = 1,
    cluster_selection_method: str = "eom",
    allow_single_cluster: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Re-fit HDBSCAN on many buckets at once, in parallel, reusing previous trees when possible.

    Bucket ``b`` is refitted incrementally with :func:`extend_minimum_spanning_tree` when
    ``min_samples`` is 1 and ``previous_msts[b]`` is the MST of its first
    ``len(previous_msts[b]) + 1`` rows; otherwise (``None``, or ``min_samples > 1``) it gets a
    full fit. Either way the labels equal :func:`hdbscan_labels` on the bucket. Buckets run in
    parallel on ``numba.get_num_threads()`` threads (the kernel releases the GIL) once the batch
    holds enough work to pay for handing it out; small batches run on the calling thread.

    Args:
        buckets: Sequence of ``(N_b, d)`` arrays (all with the same ``d``).
        previous_msts: Same length as ``buckets``; each ``None`` or an ``(n_old - 1, 3)`` MST.
        min_cluster_size: Smallest cluster size (``>= 2``).
        min_samples: Core-distance neighbour rank (``>= 1``).
        cluster_selection_method: ``"eom"`` or ``"leaf"``.
        allow_single_cluster: Whether a bucket may come out as one cluster.

    Returns:
        ``(labels, msts)``: per bucket, ``int64`` ``(N_b,)`` labels and its new ``float64``
        ``(max(N_b - 1, 0), 3)`` MST in canonical edge order.

    Raises:
        InvalidArgumentError: On mismatched lengths, bad rows, a previous MST that is not a
            spanning tree of a prefix of its bucket, or bad parameters.
    """
    mcs, leaf, single = _check_common(
        min_cluster_size, cluster_selection_method, allow_single_cluster
    )
    ms = check_int("min_samples", min_samples, 1)
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise invalid_type("buckets", "a sequence of 2-D arrays", buckets)
    if isinstance(previous_msts, (str, bytes)) or not isinstance(previous_msts, Sequence):
        raise invalid_type("previous_msts", "a sequence of MST arrays or None", previous_msts)
    if len(previous_msts) != len(buckets):
        raise InvalidArgumentError(
            "previous_msts",
            f"a sequence of the same length as buckets ({len(buckets)})",
            previous_msts,
        )
    if len(buckets) == 0:
        return [], []
    matrices = [as_finite_matrix(f"buckets[{b}]", x) for b, x in enumerate(buckets)]
    width = matrices[0].shape[1]
    for b, m in enumerate(matrices):
        if m.shape[1] != width:
            raise InvalidArgumentError(
                f"buckets[{b}]",
                f"{width} columns like buckets[0] (got {m.shape[1]})",
                buckets[b],
            )
    prevs: list[np.ndarray | None] = []
    for b, (m, prev) in enumerate(zip(matrices, previous_msts, strict=True)):
        if prev is None:
            prevs.append(None)
            continue
        shape = np.shape(prev)
        old = (shape[0] + 1) if len(shape) == 2 else -1
        if old < 1 or old > m.shape[0]:
            raise InvalidArgumentError(
                f"previous_msts[{b}]",
                f"None or an (n_old - 1, 3) MST with n_old <= {m.shape[0]} rows of the bucket",
                prev,
            )
        prevs.append(_check_mst(prev, old, f"previous_msts[{b}]"))
    return refit_buckets(
        matrices,
        prevs,
        min_cluster_size=mcs,
        min_samples=ms,
        leaf=leaf,
        allow_single_cluster=single,
    )


def refit_buckets(
    datasets: Sequence[np.ndarray],
    previous_msts: Sequence[np.ndarray | None],
    *,
    min_cluster_size: int,
    min_samples: int,
    leaf: bool,
    allow_single_cluster: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Trusted batched refit: :func:`refit_many` without its input checks.

    For callers that produced the inputs themselves (rows they validated, trees this module
    returned for a prefix of the same rows); re-validating them (a cycle check per tree, a
    finiteness scan per bucket) would cost as much as a refit of a mid-sized bucket. Results are
    those of :func:`refit_many` on the same arguments; a bucket of one row gets labels ``[-1]``
    and an empty ``(0, 3)`` tree. Buckets run in parallel as :func:`refit_many` describes.

    Args:
        datasets: Non-empty sequence of C-contiguous ``float64`` ``(N_b, d)`` arrays of finite
            values, ``N_b >= 1``, one ``d``.
        previous_msts: Same length; each ``None`` or a ``float64`` ``(n_old - 1, 3)`` spanning
            tree of the first ``n_old <= N_b`` rows with ``n_old >= 1``, as returned here.
        min_cluster_size: Smallest cluster size (``>= 2``).
        min_samples: Core-distance neighbour rank (``>= 1``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether a bucket may come out as one cluster.

    Returns:
        ``(labels, msts)`` as :func:`refit_many` returns them: per bucket, fresh ``int64``
        ``(N_b,)`` labels and ``float64`` ``(N_b - 1, 3)`` tree.
    """
    ensure_compiled(FUNCTIONS)
    count = len(datasets)
    labels: list[Any] = [None] * count
    msts: list[Any] = [None] * count

    def fit(buckets: Iterable[int]) -> None:
        # Each bucket reads only its own rows and tree and writes only its own output slots.
        for b in buckets:
            labels[b], msts[b] = _fit_bucket(
                datasets[b],
                previous_msts[b],
                min_samples,
                min_cluster_size,
                leaf,
                allow_single_cluster,
            )

    width = datasets[0].shape[1] if count else 0
    for_each_bucket(fit, np.array([x.shape[0] ** 2 * width for x in datasets], dtype=np.float64))
    return labels, msts
