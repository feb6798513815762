"""From an ordered MST to HDBSCAN labels: single linkage, condensed tree, stability, selection.

Each step mirrors the ``hdbscan`` package (``_hdbscan_linkage.label`` and ``_hdbscan_tree``):
the order in which the condensed tree is walked (breadth first, left child before right) fixes
both the cluster ids and the order in which stability terms are summed; a zero merge distance
gives an infinite lambda; the excess-of-mass comparison sums the children's stabilities in single
precision, as the package does; and with ``allow_single_cluster``, when the root is selected, a
point keeps its label only if it left its cluster no earlier than the root's last departure.
Cluster labels are numbered by increasing cluster id, so on the same tree they equal the
package's labels, not just the partition. The package's per-point rows of the condensed tree are
never built (see :func:`labels_from_linkage`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from meds_gym.clustering.mst import single_linkage


@njit(cache=True, inline="always")
def _continue_or_fall(
    child: int,
    size: int,
    c: int,
    lam: float,
    n: int,
    mcs: int,
    queue: np.ndarray,
    tail: int,
    continues: np.ndarray,
    birth: np.ndarray,
    stability: np.ndarray,
    fell_at: np.ndarray,
    allow_single_cluster: bool,
) -> int:
    """One child of a merge that does not split cluster ``c``; returns the queue's new end.

    A child of at least ``mcs`` points continues the cluster and is queued. The points of a
    smaller one fall out of it at ``lam``, each adding its stability term (one row each, as the
    package's rows would).
    """
    if size >= mcs:
        continues[child - n] = True
        queue[tail] = child
        return tail + 1
    term = (lam - birth[c]) * 1.0
    for _ in range(size):
        stability[c] += term
    if allow_single_cluster:
        fell_at[child] = lam
    return tail


@njit(cache=True)
def labels_from_linkage(
    left: np.ndarray,
    right: np.ndarray,
    delta: np.ndarray,
    count: np.ndarray,
    n: int,
    mcs: int,
    leaf: bool,
    allow_single_cluster: bool,
) -> np.ndarray:
    """HDBSCAN labels from a single-linkage tree (see :func:`~meds_gym.clustering.mst.kruskal`).

    The package builds the condensed tree as rows (one per point that falls out of a cluster,
    one per child cluster), sums each cluster's stability over its rows, selects, and labels each
    point from its row. Here no point gets a row. The walk visits only the nodes that continue a
    cluster, in the package's order (breadth first, left child before right), so clusters get the
    package's ids and each stability gets the package's terms in the package's order: a branch
    of ``m`` points that falls out of cluster ``c`` at ``lam`` adds ``lam - birth(c)`` ``m``
    times, just as its ``m`` rows would. A branch is only marked with the cluster it fell from;
    one pass over the merges from the root down hands the mark to every node below it, and each
    point is labelled from its mark.

    Args:
        left: ``int64`` ``(n - 1,)`` first child of each merge (point ``< n`` or merge ``n + r``).
        right: ``int64`` ``(n - 1,)`` second child.
        delta: ``float64`` ``(n - 1,)`` merge distance.
        count: ``int64`` ``(n - 1,)`` size of each merged node.
        n: Number of points (``>= 2``).
        mcs: Minimum cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``int64`` array of shape ``(n,)``: cluster labels ``0..k-1``, ``-1`` for noise.
    """
    # Clusters by local id (the package's id minus n; 0 is the root). Each split makes two
    # clusters of at least mcs >= 2 points out of one, so there are fewer than n.
    birth = np.zeros(n)
    cparent = np.full(n, -1, dtype=np.int64)
    child1 = np.full(n, -1, dtype=np.int64)
    child2 = np.full(n, -1, dtype=np.int64)
    stability = np.zeros(n)
    # Per node: the cluster it belongs to (for a node that continues a cluster) or fell out of
    # (for a node below one), and for the latter the lambda at which its branch fell out.
    owner = np.empty(2 * n - 1, dtype=np.int64)
    fell_at = np.empty(2 * n - 1 if allow_single_cluster else 0)
    continues = np.zeros(n - 1, dtype=np.bool_)  # per merge: whether it continues a cluster
    queue = np.empty(n, dtype=np.int64)
    root = 2 * n - 2
    owner[root] = 0
    continues[root - n] = True
    queue[0] = root
    head = 0
    tail = 1
    n_clusters = 1
    root_max_lambda = 0.0
    while head < tail:
        node = queue[head]
        head += 1
        r = node - n
        c = owner[node]
        lc = left[r]
        rc = right[r]
        lam = 1.0 / delta[r] if delta[r] > 0.0 else np.inf
        left_count = count[lc - n] if lc >= n else 1
        right_count = count[rc - n] if rc >= n else 1
        if c == 0 and lam > root_max_lambda:
            root_max_lambda = lam  # every node of the root cluster gives the root a row
        if left_count >= mcs and right_count >= mcs:
            # Both children become clusters (a cluster splits once: they are its two children).
            stability[c] += (lam - birth[c]) * left_count
            stability[c] += (lam - birth[c]) * right_count
            child1[c] = n_clusters
            child2[c] = n_clusters + 1
            birth[n_clusters] = lam
            birth[n_clusters + 1] = lam
            cparent[n_clusters] = c
            cparent[n_clusters + 1] = c
            owner[lc] = n_clusters
            owner[rc] = n_clusters + 1
            continues[lc - n] = True
            continues[rc - n] = True
            queue[tail] = lc
            queue[tail + 1] = rc
            tail += 2
            n_clusters += 2
            continue
        # Otherwise a child of at least mcs points continues the cluster, and the points of a
        # smaller one fall out of it here.
        owner[lc] = c
        owner[rc] = c
        tail = _continue_or_fall(
            lc, left_count, c, lam, n, mcs, queue, tail, continues, birth, stability, fell_at,
            allow_single_cluster,
        )  # fmt: skip
        tail = _continue_or_fall(
            rc, right_count, c, lam, n, mcs, queue, tail, continues, birth, stability, fell_at,
            allow_single_cluster,
        )  # fmt: skip
    # Hand each mark down: a merge is created after its children, so going from the last merge
    # to the first reaches every node after its parent.
    for r in range(n - 2, -1, -1):
        if not continues[r]:
            mark = owner[n + r]
            owner[left[r]] = mark
            owner[right[r]] = mark
            if allow_single_cluster:
                fell_at[left[r]] = fell_at[n + r]
                fell_at[right[r]] = fell_at[n + r]

    selected = np.zeros(n_clusters, dtype=np.bool_)
    has_split = child1[0] >= 0
    if leaf:
        if has_split:
            for c in range(1, n_clusters):
                selected[c] = child1[c] < 0
    else:
        chosen = np.zeros(n_clusters, dtype=np.bool_)
        last = 0 if allow_single_cluster else 1
        for c in range(n_clusters - 1, last - 1, -1):
            # The package accumulates this sum in a C float (single precision).
            sub = np.float32(0.0)
            if child1[c] >= 0:
                sub = np.float32(np.float64(sub) + stability[child1[c]])
            if child2[c] >= 0:
                sub = np.float32(np.float64(sub) + stability[child2[c]])
            if np.float64(sub) > stability[c]:
                stability[c] = np.float64(sub)
            else:
                chosen[c] = True
        # A chosen cluster wins over every chosen descendant; parents have smaller ids.
        blocked = np.zeros(n_clusters, dtype=np.bool_)
        for c in range(n_clusters):
            if c > 0:
                p = cparent[c]
                blocked[c] = blocked[p] or chosen[p]
            selected[c] = chosen[c] and not blocked[c]

    # The label of each cluster's points: that of its nearest selected ancestor (itself
    # included), numbered by increasing cluster id; -1 if none is selected.
    label_of = np.full(n_clusters, -1, dtype=np.int64)
    k = 0
    for c in range(n_clusters):
        if selected[c]:
            label_of[c] = k
            k += 1
        elif c > 0:
            label_of[c] = label_of[cparent[c]]
    labels = np.empty(n, dtype=np.int64)
    for p in range(n):
        labels[p] = label_of[owner[p]]
    if allow_single_cluster and selected[0]:
        # Then every other cluster is blocked, and a point keeps the root's label only if it
        # left its cluster no earlier than the root's last departure.
        for p in range(n):
            if fell_at[p] < root_max_lambda:
                labels[p] = -1
    return labels


@njit(cache=True)
def labels_from_ordered_edges(
    edges: np.ndarray, n: int, mcs: int, leaf: bool, allow_single_cluster: bool
) -> np.ndarray:
    """HDBSCAN labels from MST edges already in merge order.

    Args:
        edges: ``float64`` array of shape ``(n - 1, 3)``, rows ``(a, b, distance)``.
        n: Number of points (``>= 2``).
        mcs: Minimum cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``int64`` array of shape ``(n,)``.
    """
    a = np.empty(n - 1, dtype=np.int64)
    b = np.empty(n - 1, dtype=np.int64)
    delta = np.empty(n - 1)
    for r in range(n - 1):
        a[r] = int(edges[r, 0])
        b[r] = int(edges[r, 1])
        delta[r] = edges[r, 2]
    _, _, _, left, right, count = single_linkage(a, b, delta, n)
    return labels_from_linkage(left, right, delta, count, n, mcs, leaf, allow_single_cluster)
