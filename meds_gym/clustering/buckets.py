"""The one per-bucket refit: vote the new rows, extend (or build) the tree, relabel, in one kernel.

Every HDBSCAN fit of the package runs :func:`refit_bucket`: the error memory's steps through
:func:`update_buckets`, and the public functions of :mod:`meds_gym.clustering.hdbscan` (labels,
spanning trees, batched refits), which convert their trees to and from its form.

A MEDS step (docs/design.md section 2) votes each new wrong rollout into a cluster of its bucket as
the bucket stands, then appends the new rows and re-clusters the bucket. Done separately, both
halves compute the distances from the new rows to the stored ones and both normalise the stored
rows; :func:`update_buckets` does it once per bucket, from the stored rows, in a kernel that runs
without the GIL, and keeps each bucket's tree in the form the next step extends directly (sorted
edges with their squared lengths and their single-linkage merges), so no step sorts, links or
traverses the old tree again.

The results equal those of the separate public functions on the same rows: the votes those of
:func:`~meds_gym.clustering.knn.vote_kernel` on the stored rows, the labels those of
:func:`~meds_gym.clustering.hdbscan.hdbscan_labels` on the unit rows
(:func:`~meds_gym.clustering.knn.unit_rows`) and the tree that of
:func:`~meds_gym.clustering.hdbscan.minimum_spanning_tree` on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
from numba import njit, types

from meds_gym.clustering.compilation import (
    FUNCTIONS,
    INDEX,
    READ_INDEX,
    READ_ROWS,
    SHAPER,
    ensure_compiled,
    register,
)
from meds_gym.clustering.condensed_tree import labels_from_linkage
from meds_gym.clustering.knn import unit_rows, votes_from_distances
from meds_gym.clustering.mst import (
    edge_order,
    extend_sorted_tree,
    full_sorted_tree,
    single_linkage,
    squared_distances,
    take,
    transposed,
)
from meds_gym.clustering.parallel import for_each_bucket

__all__ = ["BucketInput", "BucketUpdate", "NO_LINKS", "NO_LENGTHS", "update_buckets"]

READ_LINKS = types.Array(types.int32, 2, "C", readonly=True)
READ_VALUES = types.Array(types.float64, 1, "C", readonly=True)
LINKS = types.Array(types.int32, 2, "C")
VALUES = types.Array(types.float64, 1, "C")

NO_LINKS = np.zeros((0, 4), dtype=np.int32)
"""The links of a bucket that keeps no tree."""
NO_LINKS.flags.writeable = False
NO_LENGTHS = np.zeros(0)
"""The squared lengths of a bucket that keeps no tree."""
NO_LENGTHS.flags.writeable = False


@register(
    types.Tuple((INDEX, INDEX, INDEX, LINKS, VALUES, types.int64))(
        READ_ROWS,
        types.boolean,
        types.int64,
        READ_LINKS,
        READ_VALUES,
        READ_INDEX,
        types.boolean,
        types.int64,
        types.boolean,
        types.int64,
        types.int64,
        types.boolean,
        types.boolean,
    ),  # fmt: skip
    groups=(SHAPER, FUNCTIONS),
)
@njit(cache=True, nogil=True)
def refit_bucket(
    rows: np.ndarray,
    unit: bool,
    n_old: int,
    links: np.ndarray,
    lengths: np.ndarray,
    old_labels: np.ndarray,
    vote: bool,
    k: int,
    smallest_label_wins: bool,
    min_samples: int,
    min_cluster_size: int,
    leaf: bool,
    allow_single_cluster: bool,
):
    """Vote the new rows against the old ones, then refit the bucket; runs without the GIL.

    The bucket's points are its rows, divided by their norms first when ``unit`` is set (the
    error memory's cosine geometry). The tree is extended when ``links`` spans the ``n_old`` old
    rows and the core distances are the plain distances (``min(min_samples, N - 1) <= 1``),
    otherwise fitted from scratch; both give the canonical MST of the points (see
    :mod:`meds_gym.clustering.mst`), the one the ``hdbscan`` package's labels are computed from.

    Args:
        rows: ``float64`` ``(N, d)`` rows, C-contiguous: the ``n_old`` old rows, then the new
            ones (``unit``: finite and non-zero; otherwise finite).
        unit: Cluster the rows divided by their L2 norms (:func:`unit_rows`).
        n_old: Number of old rows (``0 <= n_old <= N``).
        links: ``int32`` ``(n_old - 1, 4)`` the old rows' tree as :class:`BucketUpdate` gives it,
            or any ``(m, 4)`` array with ``m != n_old - 1`` (:data:`NO_LINKS`) for a fit from
            scratch.
        lengths: ``float64`` ``(n_old - 1,)`` the squared lengths of that tree.
        old_labels: ``int64`` ``(n_old,)`` labels of the old rows (read only when voting).
        vote: Whether to vote the new rows (the :func:`update_buckets` rule).
        k: Neighbours in the vote (``>= 1``).
        smallest_label_wins: Vote tie rule.
        min_samples: Core-distance neighbour rank (``>= 1``).
        min_cluster_size: Minimum cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``(votes, sizes, labels, links, lengths, n_clusters)``, the fields of a
        :class:`BucketUpdate`, fresh arrays.
    """
    n = rows.shape[0]
    n_new = n - n_old
    votes = np.full(n_new, -2, dtype=np.int64)
    sizes = np.zeros(n_new, dtype=np.int64)
    # Writable float64 points either way: the one array type of the kernels below.
    X = unit_rows(rows) if unit else rows.copy()  # (N, d)
    extend = n_old >= 1 and links.shape[0] == n_old - 1 and min(min_samples, n - 1) <= 1
    voting = vote and n_old >= 1 and n_new >= 1
    Z = np.empty((0, 0))
    D = np.empty((0, 0))
    if voting or extend:
        Z = X[n_old:].copy()  # (n_new, d), C-contiguous like every Z the kernels get
        D = squared_distances(transposed(X, n_old), Z)  # (n_new, n_old)
    if voting:
        votes = votes_from_distances(D, old_labels, min(k, n_old), smallest_label_wins)
        per_label = np.zeros(n_old + 1, dtype=np.int64)  # entry 0: noise, c + 1: cluster c
        for i in range(n_old):
            per_label[old_labels[i] + 1] += 1
        for j in range(n_new):
            sizes[j] = per_label[votes[j] + 1]
    if n < 2:
        labels = np.full(n, -1, dtype=np.int64)
        return votes, sizes, labels, np.zeros((0, 4), dtype=np.int32), np.zeros(0), 0
    if extend:
        m = n_old - 1
        ta = np.empty(m, dtype=np.int64)
        tb = np.empty(m, dtype=np.int64)
        left = np.empty(m, dtype=np.int64)
        right = np.empty(m, dtype=np.int64)
        ts = np.empty(m)  # writable copies: one array type for the shared kernels below
        for r in range(m):
            ta[r] = links[r, 0]
            tb[r] = links[r, 1]
            left[r] = links[r, 2]
            right[r] = links[r, 3]
            ts[r] = lengths[r]
        na, nb, ns, nl, nr, count = extend_sorted_tree(Z, D, ta, tb, ts, left, right, n_old)
    else:
        na, nb, ns = full_sorted_tree(X, min_samples)
        na, nb, ns, nl, nr, count = single_linkage(na, nb, ns, n)
    out_links = np.empty((n - 1, 4), dtype=np.int32)
    delta = np.empty(n - 1)
    for r in range(n - 1):
        out_links[r, 0] = na[r]
        out_links[r, 1] = nb[r]
        out_links[r, 2] = nl[r]
        out_links[r, 3] = nr[r]
        delta[r] = np.sqrt(ns[r])
    labels = labels_from_linkage(
        nl, nr, delta, count, n, min_cluster_size, leaf, allow_single_cluster
    )
    n_clusters = 0
    for i in range(n):
        n_clusters = max(n_clusters, labels[i] + 1)
    return votes, sizes, labels, out_links, ns, n_clusters


def links_to_tree(links: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A bucket's tree as ``(i, j, distance)`` rows, the inverse of :func:`tree_links`.

    Args:
        links: ``int32`` ``(m, 4)`` linked edges, ``(i, j, ...)`` in merge order.
        lengths: ``float64`` ``(m,)`` squared lengths of the edges.

    Returns:
        A fresh ``float64`` ``(m, 3)`` array, as
        :func:`~meds_gym.clustering.hdbscan.minimum_spanning_tree` returns it.
    """
    tree = np.empty((links.shape[0], 3))
    tree[:, :2] = links[:, :2]
    np.sqrt(lengths, out=tree[:, 2])
    return tree


@register(types.Tuple((LINKS, VALUES))(READ_ROWS, READ_ROWS))
@njit(cache=True, nogil=True)
def tree_links(X: np.ndarray, tree: np.ndarray):
    """A spanning tree given as ``(a, b, distance)`` rows, in the form :func:`refit_bucket` takes.

    Each edge's squared length is recomputed from the rows (so only the edge set of ``tree``
    matters, not its distances or row order), the edges are put in the canonical order and
    linked (single linkage).

    Args:
        X: ``float64`` ``(N, d)`` rows, C-contiguous.
        tree: ``float64`` ``(n_old - 1, 3)`` spanning tree of the first ``n_old <= N`` rows.

    Returns:
        ``(links, lengths)``: ``int32`` ``(n_old - 1, 4)`` and ``float64`` ``(n_old - 1,)``.
    """
    m, d = tree.shape[0], X.shape[1]
    ua = np.empty(m, dtype=np.int64)
    ub = np.empty(m, dtype=np.int64)
    us = np.zeros(m)
    for r in range(m):
        i = int(tree[r, 0])
        j = int(tree[r, 1])
        ua[r] = min(i, j)
        ub[r] = max(i, j)
        for f in range(d):
            diff = X[ua[r], f] - X[ub[r], f]
            us[r] += diff * diff
    order = edge_order(ua, ub, us, us)
    ta = take(ua, order)
    tb = take(ub, order)
    ts = take(us, order)
    _, _, _, left, right, _ = single_linkage(ta, tb, ts, m + 1)
    links = np.empty((m, 4), dtype=np.int32)
    for r in range(m):
        links[r, 0] = ta[r]
        links[r, 1] = tb[r]
        links[r, 2] = left[r]
        links[r, 3] = right[r]
    return links, ts


class BucketUpdate(NamedTuple):
    """What :func:`update_buckets` returns for one bucket.

    Attributes:
        votes: ``int64`` ``(N - n_old,)`` label voted for each new row from the old rows (``-2``
            where the bucket was not voted on or held no old row).
        sizes: ``int64`` ``(N - n_old,)`` old rows carrying that label (0 where not voted).
        labels: ``int64`` ``(N,)`` HDBSCAN labels of all rows (``-1`` noise).
        links: ``int32`` ``(N - 1, 4)`` the canonical MST of the unit rows in canonical edge
            order, rows ``(a, b, left, right)``: edge ``r`` joins rows ``a < b`` and is merge
            ``r`` of single linkage, which joins the dendrogram nodes ``left`` and ``right``
            (rows below ``N``, merge ``r'`` as ``N + r'``).
        lengths: ``float64`` ``(N - 1,)`` squared (mutual-reachability) length of each edge.
        n_clusters: Number of clusters (labels >= 0).
    """

    votes: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray
    links: np.ndarray
    lengths: np.ndarray
    n_clusters: int


class BucketInput(NamedTuple):
    """What :func:`update_buckets` needs of one bucket.

    Attributes:
        rows: ``float32`` ``(N, d)`` C-contiguous rows, finite and non-zero: the ``n_old`` old
            rows first, then the new ones.
        n_old: Number of old rows (``0 <= n_old <= N``).
        links: The ``links`` of the bucket's last update (spanning its old rows), or
            :data:`NO_LINKS` for a fit from scratch.
        lengths: The matching ``lengths``, or :data:`NO_LENGTHS`.
        old_labels: ``int64`` ``(n_old,)`` labels of the old rows (read only when voting).
        vote: Whether to vote the new rows.
    """

    rows: np.ndarray
    n_old: int
    links: np.ndarray
    lengths: np.ndarray
    old_labels: np.ndarray
    vote: bool


def update_buckets(
    prepare: Callable[[int], tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, bool]],
    work: np.ndarray,
    *,
    finish: Callable[..., Any] | None = None,
    k: int,
    smallest_label_wins: bool,
    min_samples: int,
    min_cluster_size: int,
    leaf: bool,
    allow_single_cluster: bool = False,
) -> list[Any]:
    """One memory step on many buckets, in parallel: vote the new rows, then refit each bucket.

    Trusted: no input checks; the error memory, which produces every input, is the caller.
    ``prepare(b)`` gives bucket ``b``'s input, the fields of a :class:`BucketInput` in order (a
    plain tuple will do); it is called on the thread that then runs the bucket, so the caller's
    per-bucket preparation overlaps the other threads' kernels (it must only touch bucket ``b``'s
    own data). When the input's ``vote`` is set, each new row gets the label of the majority of
    its ``k`` nearest old rows by cosine distance (the rule of
    :func:`~meds_gym.clustering.knn.vote_kernel`, ties by ``smallest_label_wins``). Then the
    bucket is refitted on all its rows: from its stored tree when ``links`` spans the old rows
    and ``min_samples`` is 1 (O(N x new x d)), otherwise from scratch.

    Args:
        prepare: Bucket index -> its :class:`BucketInput` fields.
        work: ``(B,)`` estimated cost of each bucket (about the distance computations it needs),
            which orders the buckets, largest first, and decides whether to use threads.
        finish: ``finish(b, *update)``, called with the fields of bucket ``b``'s
            :class:`BucketUpdate` on the same thread right after its kernel, is returned for the
            bucket instead (so the caller's bookkeeping overlaps the other kernels too).
        k: Neighbours in the vote (``>= 1``).
        smallest_label_wins: Vote tie rule.
        min_samples: Core-distance neighbour rank (``>= 1``).
        min_cluster_size: Smallest cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether a bucket may come out as one cluster.

    Returns:
        Per bucket, its :class:`BucketUpdate` (or what ``finish`` made of it).
    """
    ensure_compiled(SHAPER)
    out: list[Any] = [None] * len(work)
    params = (k, smallest_label_wins, min_samples, min_cluster_size, leaf, allow_single_cluster)
    make = BucketUpdate._make if finish is None else None

    def run(buckets: Iterable[int]) -> None:
        # Per bucket as little Python as possible: it holds the GIL, the kernel does not.
        for b in buckets:  # each bucket writes only its own slot
            rows, *tree_and_vote = prepare(b)
            # Widened exactly to the kernel's one row type (the public functions' float64).
            update = refit_bucket(rows.astype(np.float64), True, *tree_and_vote, *params)
            out[b] = make(update) if make is not None else finish(b, *update)  # type: ignore[misc]

    for_each_bucket(run, work)
    return out
