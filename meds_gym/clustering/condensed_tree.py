"""From an ordered MST to HDBSCAN labels: single linkage, condensed tree, stability, selection.

Each step mirrors the ``hdbscan`` package (``_hdbscan_linkage.label`` and ``_hdbscan_tree``):
the order in which the condensed tree is built (breadth first, left child before right, points of a
pruned branch in breadth-first order) fixes both the cluster ids and the order in which stability
terms are summed; a zero merge distance gives an infinite lambda; the excess-of-mass comparison
sums the children's stabilities in single precision, as the package does; and with
``allow_single_cluster`` a point of the root cluster keeps the label only if it left the root no
earlier than the root's last departure. Cluster labels are numbered by increasing cluster id, so
on the same tree they equal the package's labels, not just the partition.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from meds_gym.clustering.mst import kruskal


@njit(cache=True)
def condense_tree(
    left: np.ndarray, right: np.ndarray, delta: np.ndarray, count: np.ndarray, n: int, mcs: int
):
    """Condensed tree: clusters of at least ``mcs`` points and the lambdas at which points leave.

    Args:
        left: ``int64`` ``(n - 1,)`` left child of each single-linkage node.
        right: ``int64`` ``(n - 1,)`` right child.
        delta: ``float64`` ``(n - 1,)`` merge distance.
        count: ``int64`` ``(n - 1,)`` node size.
        n: Number of points (``>= 2``).
        mcs: Minimum cluster size (``>= 2``).

    Returns:
        ``(parent, child, lam, child_size, n_clusters)``: row arrays of the condensed tree
        (``int64``, ``int64``, ``float64``, ``int64``, each trimmed to its length) and the number
        of clusters. Cluster ids run from ``n`` (the root) to ``n + n_clusters - 1``.
    """
    total = 2 * n - 1
    root = total - 1
    # The nodes that continue a cluster, in breadth-first order (left child before right): the
    # order in which a breadth-first walk of the whole tree meets them, since every ancestor of
    # such a node continues a cluster too. The points of a pruned branch are emitted from a
    # second queue, so every node is visited once.
    relabel = np.empty(n - 1, dtype=np.int64)  # cluster id of each internal node that has one
    relabel[root - n] = n
    next_label = n + 1
    res_parent = np.empty(2 * n, dtype=np.int64)
    res_child = np.empty(2 * n, dtype=np.int64)
    res_lam = np.empty(2 * n)
    res_size = np.empty(2 * n, dtype=np.int64)
    main = np.empty(n, dtype=np.int64)
    queue = np.empty(total, dtype=np.int64)
    pos = 0
    head = 0
    tail = 1
    main[0] = root
    while head < tail:
        node = main[head]
        head += 1
        r = node - n
        cluster = relabel[r]
        lc = left[r]
        rc = right[r]
        lam = 1.0 / delta[r] if delta[r] > 0.0 else np.inf
        left_count = count[lc - n] if lc >= n else 1
        right_count = count[rc - n] if rc >= n else 1
        if left_count >= mcs and right_count >= mcs:
            relabel[lc - n] = next_label
            res_parent[pos] = cluster
            res_child[pos] = next_label
            res_lam[pos] = lam
            res_size[pos] = left_count
            relabel[rc - n] = next_label + 1
            res_parent[pos + 1] = cluster
            res_child[pos + 1] = next_label + 1
            res_lam[pos + 1] = lam
            res_size[pos + 1] = right_count
            pos += 2
            next_label += 2
            main[tail] = lc
            main[tail + 1] = rc
            tail += 2
            continue
        for side in range(2):
            sub_root = lc if side == 0 else rc
            sub_count = left_count if side == 0 else right_count
            if sub_count >= mcs:
                relabel[sub_root - n] = cluster  # the big child continues the cluster
                main[tail] = sub_root
                tail += 1
                continue
            # The small child's points fall out of the cluster at this lambda.
            queue[0] = sub_root
            qh = 0
            qt = 1
            while qh < qt:
                sub = queue[qh]
                qh += 1
                if sub < n:
                    res_parent[pos] = cluster
                    res_child[pos] = sub
                    res_lam[pos] = lam
                    res_size[pos] = 1
                    pos += 1
                else:
                    queue[qt] = left[sub - n]
                    queue[qt + 1] = right[sub - n]
                    qt += 2
    return res_parent[:pos], res_child[:pos], res_lam[:pos], res_size[:pos], next_label - n


@njit(cache=True)
def select_and_label(
    parent: np.ndarray,
    child: np.ndarray,
    lam: np.ndarray,
    child_size: np.ndarray,
    n: int,
    n_clusters: int,
    leaf: bool,
    allow_single_cluster: bool,
) -> np.ndarray:
    """Stability, excess-of-mass (or leaf) selection and point labels from a condensed tree.

    Args:
        parent: ``int64`` ``(R,)`` parent cluster id of each condensed-tree row.
        child: ``int64`` ``(R,)`` child id (a point ``< n`` or a cluster ``>= n``).
        lam: ``float64`` ``(R,)`` lambda (1 / distance) of the row.
        child_size: ``int64`` ``(R,)`` number of points in the child.
        n: Number of points.
        n_clusters: Number of clusters (ids ``n`` .. ``n + n_clusters - 1``; ``n`` is the root).
        leaf: Select leaf clusters instead of excess of mass.
        allow_single_cluster: Whether the root may be selected as the only cluster.

    Returns:
        ``int64`` array of shape ``(n,)``: cluster labels ``0..k-1``, ``-1`` for noise.
    """
    n_rows = parent.shape[0]
    birth = np.zeros(n_clusters)
    cparent = np.full(n_clusters, -1, dtype=np.int64)  # parent cluster (local ids), -1 for root
    child1 = np.full(n_clusters, -1, dtype=np.int64)
    child2 = np.full(n_clusters, -1, dtype=np.int64)
    stability = np.zeros(n_clusters)
    root_max_lambda = 0.0
    # One pass: rows come in breadth-first order, so a cluster's birth row precedes its own rows
    # and each stability is summed in row order, as the package does.
    for r in range(n_rows):
        c = child[r]
        lp = parent[r] - n
        if c >= n:
            lc = c - n
            birth[lc] = lam[r]
            cparent[lc] = lp
            if child1[lp] < 0:
                child1[lp] = lc
            else:
                child2[lp] = lc
        stability[lp] += (lam[r] - birth[lp]) * child_size[r]
        if lp == 0 and lam[r] > root_max_lambda:
            root_max_lambda = lam[r]

    selected = np.zeros(n_clusters, dtype=np.bool_)
    has_split = False
    for c in range(n_clusters):
        if child1[c] >= 0:
            has_split = True
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

    label_of = np.full(n_clusters, -1, dtype=np.int64)
    k = 0
    for c in range(n_clusters):
        if selected[c]:
            label_of[c] = k
            k += 1
    # Nearest selected ancestor of each cluster (itself included).
    anc = np.full(n_clusters, -1, dtype=np.int64)
    for c in range(n_clusters):
        if selected[c]:
            anc[c] = c
        elif c > 0:
            anc[c] = anc[cparent[c]]
    labels = np.full(n, -1, dtype=np.int64)
    for r in range(n_rows):
        pt = child[r]
        if pt >= n:
            continue
        a = anc[parent[r] - n]
        if a < 0:
            continue
        if a == 0:
            # Only reachable with allow_single_cluster and the root selected.
            if lam[r] >= root_max_lambda:
                labels[pt] = label_of[0]
        else:
            labels[pt] = label_of[a]
    return labels


@njit(cache=True, inline="always")
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

    Args:
        left: ``int64`` ``(n - 1,)`` first child of each merge.
        right: ``int64`` ``(n - 1,)`` second child.
        delta: ``float64`` ``(n - 1,)`` merge distance.
        count: ``int64`` ``(n - 1,)`` size of each merged node.
        n: Number of points (``>= 2``).
        mcs: Minimum cluster size (``>= 2``).
        leaf: Leaf selection instead of excess of mass.
        allow_single_cluster: Whether the root may be the only cluster.

    Returns:
        ``int64`` array of shape ``(n,)``.
    """
    parent, child, lam, child_size, n_clusters = condense_tree(left, right, delta, count, n, mcs)
    return select_and_label(
        parent, child, lam, child_size, n, n_clusters, leaf, allow_single_cluster
    )


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
    _, _, _, left, right, count = kruskal(a, b, delta, a[:0], b[:0], delta[:0], n)
    return labels_from_linkage(left, right, delta, count, n, mcs, leaf, allow_single_cluster)
