"""Minimum spanning trees under the HDBSCAN mutual-reachability distance (numba kernels).

Distances follow the ``hdbscan`` package bit for bit: the squared Euclidean distance of two rows is
summed feature by feature in ``float64``; the core distance of a row is the distance to its
``min_samples``-th nearest row *counting the row itself as the 0-th* (so ``min_samples=1`` means
the nearest other row, and a duplicate row counts); and the mutual-reachability distance is
``sqrt(max(d(a, b)**2, core(a)**2, core(b)**2))``. With ``min_samples=1`` the core distance never
exceeds a pair distance, so the mutual-reachability distance is the Euclidean distance.

Ties. Equal distances are common (duplicate rows, ``min_samples > 1``), and an MST is not unique
under ties. Every kernel here orders edges by one strict total order, the *canonical edge order*:
mutual-reachability distance, then raw squared distance, then the smaller endpoint index, then the
larger one. Under a strict total order the MST is unique, so the dense Prim fit and the
incremental extension return the very same edge set, listed in that order (which is also the order
single linkage merges them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from meds_gym.clustering.disjoint_set import union_if_disjoint


@njit(cache=True)
def _edge_less(
    w1: float, s1: float, a1: int, b1: int, w2: float, s2: float, a2: int, b2: int
) -> bool:
    """Whether edge 1 precedes edge 2 in the canonical order (a < b are the endpoints)."""
    if w1 != w2:
        return w1 < w2
    if s1 != s2:
        return s1 < s2
    if a1 != a2:
        return a1 < a2
    return b1 < b2


@njit(cache=True)
def full_mst(X: np.ndarray, min_samples: int) -> np.ndarray:
    """Canonical MST of the mutual-reachability graph of all rows of ``X`` (dense Prim).

    With ``k = min(min_samples, N - 1)`` (the ``hdbscan`` package caps it so), the squared core
    distance of a row is ``fl(sqrt(s_k)) ** 2`` where ``s_k`` is its ``(k + 1)``-th smallest
    squared distance to all rows, itself included; squaring the rounded root (not reusing
    ``s_k``) is what the package does. With ``k = 1`` the core distance never exceeds a pair
    distance, so mutual reachability is the plain distance and core distances are skipped.

    Args:
        X: ``float64`` ``(N, d)``, C-contiguous, ``N >= 2``.
        min_samples: Core-distance neighbour rank (``>= 1``).

    Returns:
        ``float64`` ``(N - 1, 3)``: rows ``(a, b, distance)`` with ``a < b``, sorted in the
        canonical edge order.
    """
    n, d = X.shape
    k = min(min_samples, n - 1)
    use_core = k > 1
    core_sq = np.zeros(n)
    if use_core:
        XT = np.empty((d, n))
        for i in range(n):
            for f in range(d):
                XT[f, i] = X[i, f]
        acc = np.empty(n)
        top = np.empty(k + 1)  # the k+1 smallest squared distances seen so far, ascending
        for i in range(n):
            acc[:] = 0.0
            for f in range(d):
                xi = X[i, f]
                for j in range(n):
                    diff = xi - XT[f, j]
                    acc[j] += diff * diff
            top[:] = np.inf
            for j in range(n):
                v = acc[j]
                if v < top[k]:
                    p = k
                    while p > 0 and top[p - 1] > v:
                        top[p] = top[p - 1]
                        p -= 1
                    top[p] = v
            core = np.sqrt(top[k])
            core_sq[i] = core * core
    ea, eb, ew, es = _prim_edges(X, core_sq)
    order = edge_order(ea, eb, ew, es)
    out = np.empty((n - 1, 3))
    for r in range(n - 1):
        i = order[r]
        out[r, 0] = ea[i]
        out[r, 1] = eb[i]
        out[r, 2] = np.sqrt(ew[i])  # mutual reachability (the raw distance when k = 1)
    return out


@njit(cache=True)
def _prim_edges(X: np.ndarray, core_sq: np.ndarray):
    """The edges of the dense Prim MST (see :func:`full_mst`), unsorted, with both keys.

    Distances are computed on the fly (no N x N matrix): the columns of the points not yet in the
    tree are kept compacted in a ``(d, m)`` buffer so the inner loop vectorises over points while
    every pair is still summed feature by feature.

    Args:
        X: ``float64`` array of shape ``(N, d)``, C-contiguous, ``N >= 2``.
        core_sq: ``float64`` array of shape ``(N,)``, squared core distances; all zeros for
            ``min_samples=1``, where mutual reachability is the plain distance.

    Returns:
        ``(ea, eb, ew, es)``: ``int64`` ``(N - 1,)`` smaller and larger endpoints and ``float64``
        ``(N - 1,)`` squared mutual-reachability and raw squared distances, in the order Prim
        added the edges.
    """
    n, d = X.shape
    XT = np.empty((d, n))  # (d, m) compacted columns of the points outside the tree
    for i in range(n):
        for f in range(d):
            XT[f, i] = X[i, f]
    rem = np.arange(n)  # original index of each compacted column
    best_w = np.empty(n)  # best mutual-reachability^2 to the tree, per compacted column
    best_s = np.empty(n)  # raw squared distance of that best edge
    best_t = np.empty(n, dtype=np.int64)  # tree endpoint of that best edge (-1: none yet)
    for p in range(n):
        best_t[p] = -1
    acc = np.empty(n)
    ea = np.empty(n - 1, dtype=np.int64)
    eb = np.empty(n - 1, dtype=np.int64)
    ew = np.empty(n - 1)
    es = np.empty(n - 1)

    # Start the tree at point 0: move its column out of the compacted buffer.
    u = 0
    m = n - 1
    rem[0] = rem[m]
    for f in range(d):
        XT[f, 0] = XT[f, m]
    for e in range(n - 1):
        for p in range(m):
            acc[p] = 0.0
        for f in range(d):
            xu = X[u, f]
            for p in range(m):
                diff = xu - XT[f, p]
                acc[p] += diff * diff
        cu = core_sq[u]
        arg = 0
        for p in range(m):
            s = acc[p]
            w = s  # mutual reachability: max(distance, both core distances), all squared
            if cu > w:
                w = cu
            j = rem[p]
            if core_sq[j] > w:
                w = core_sq[j]
            a = min(u, j)
            b = max(u, j)
            t = best_t[p]
            if t < 0 or _edge_less(w, s, a, b, best_w[p], best_s[p], min(t, j), max(t, j)):
                best_w[p] = w
                best_s[p] = s
                best_t[p] = u
            if p > 0:
                q = arg
                jq = rem[q]
                tq = best_t[q]
                tp = best_t[p]
                if _edge_less(
                    best_w[p],
                    best_s[p],
                    min(tp, j),
                    max(tp, j),
                    best_w[q],
                    best_s[q],
                    min(tq, jq),
                    max(tq, jq),
                ):
                    arg = p
        v = rem[arg]
        t = best_t[arg]
        ea[e] = min(t, v)
        eb[e] = max(t, v)
        ew[e] = best_w[arg]
        es[e] = best_s[arg]
        # Remove column `arg` by moving the last column into its place.
        m -= 1
        rem[arg] = rem[m]
        best_w[arg] = best_w[m]
        best_s[arg] = best_s[m]
        best_t[arg] = best_t[m]
        for f in range(d):
            XT[f, arg] = XT[f, m]
        u = v
    return ea, eb, ew, es


@njit(cache=True)
def edge_order(ea: np.ndarray, eb: np.ndarray, ew: np.ndarray, es: np.ndarray) -> np.ndarray:
    """Permutation listing edges in the canonical order ``(ew, es, ea, eb)``.

    The order is strict and total on the edges of a graph without parallel edges, so the
    permutation is unique. Already sorted input (the usual case for a stored tree) costs one
    pass; otherwise insertion-sorted runs of 16 are merged bottom-up.

    Args:
        ea: ``int64`` ``(E,)`` smaller endpoints.
        eb: ``int64`` ``(E,)`` larger endpoints.
        ew: ``float64`` ``(E,)`` squared mutual-reachability distances (for ``min_samples=1``
            pass the raw squared distances, the same array as ``es``).
        es: ``float64`` ``(E,)`` raw squared distances.

    Returns:
        ``int64`` ``(E,)``.
    """
    m = ea.shape[0]
    order = np.arange(m)
    in_order = True
    for r in range(1, m):
        if _edge_less(ew[r], es[r], ea[r], eb[r], ew[r - 1], es[r - 1], ea[r - 1], eb[r - 1]):
            in_order = False
            break
    if in_order:
        return order
    run = 16
    for lo in range(0, m, run):
        hi = min(lo + run, m)
        for r in range(lo + 1, hi):
            x = order[r]
            p = r
            while p > lo:
                y = order[p - 1]
                if not _edge_less(ew[x], es[x], ea[x], eb[x], ew[y], es[y], ea[y], eb[y]):
                    break
                order[p] = y
                p -= 1
            order[p] = x
    buf = np.empty(m, dtype=np.int64)
    width = run
    while width < m:
        for lo in range(0, m, 2 * width):
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i = lo
            j = mid
            o = lo
            while i < mid and j < hi:
                x = order[i]
                y = order[j]
                if _edge_less(ew[y], es[y], ea[y], eb[y], ew[x], es[x], ea[x], eb[x]):
                    buf[o] = y
                    j += 1
                else:
                    buf[o] = x
                    i += 1
                o += 1
            while i < mid:
                buf[o] = order[i]
                i += 1
                o += 1
            while j < hi:
                buf[o] = order[j]
                j += 1
                o += 1
        order, buf = buf, order
        width *= 2
    return order


@njit(cache=True)
def _key_less(s1: float, a1: int, b1: int, s2: float, a2: int, b2: int) -> bool:
    """Canonical order for ``min_samples=1`` edges: squared distance, then endpoints (a < b)."""
    if s1 != s2:
        return s1 < s2
    if a1 != a2:
        return a1 < a2
    return b1 < b2


@njit(cache=True)
def _rooted_tree(ta: np.ndarray, tb: np.ndarray, n: int):
    """A depth-first order of a tree over ``0..n-1`` from vertex 0, with parent links.

    Args:
        ta: ``int64`` ``(n - 1,)`` one endpoint of each edge.
        tb: ``int64`` ``(n - 1,)`` the other endpoint.
        n: Number of vertices (``>= 1``).

    Returns:
        ``(order, position, parent_pos, parent_edge)``: ``int64`` ``(n,)`` each. ``order`` lists
        every vertex after its parent and ``position`` inverts it; entry ``p`` of the last two
        describes vertex ``order[p]``: the position of its parent in ``order`` and the index of
        the edge to it (``-1`` for the root).
    """
    n_edges = ta.shape[0]
    start = np.zeros(n + 1, dtype=np.int64)  # CSR adjacency
    for e in range(n_edges):
        start[ta[e] + 1] += 1
        start[tb[e] + 1] += 1
    for u in range(n):
        start[u + 1] += start[u]
    fill = start[:n].copy()
    nbr = np.empty(2 * n_edges, dtype=np.int64)
    nbr_edge = np.empty(2 * n_edges, dtype=np.int64)
    for e in range(n_edges):
        nbr[fill[ta[e]]] = tb[e]
        nbr_edge[fill[ta[e]]] = e
        fill[ta[e]] += 1
        nbr[fill[tb[e]]] = ta[e]
        nbr_edge[fill[tb[e]]] = e
        fill[tb[e]] += 1
    order = np.empty(n, dtype=np.int64)
    parent = np.empty(n, dtype=np.int64)
    parent_edge = np.empty(n, dtype=np.int64)
    parent[0] = -1  # every other entry is written when its vertex is first seen
    stack = fill  # the fill cursors are spent: reuse the buffer (size n) as the DFS stack
    stack[0] = 0
    top = 1
    seen = np.zeros(n, dtype=np.bool_)
    seen[0] = True
    position = np.empty(n, dtype=np.int64)
    count = 0
    while top > 0:
        top -= 1
        u = stack[top]
        order[count] = u
        position[u] = count
        count += 1
        for q in range(start[u], start[u + 1]):
            w = nbr[q]
            if not seen[w]:
                seen[w] = True
                parent[w] = u
                parent_edge[w] = nbr_edge[q]
                stack[top] = w
                top += 1
    parent_pos = np.empty(n, dtype=np.int64)
    edge_at = np.empty(n, dtype=np.int64)
    parent_pos[0] = -1  # the root
    edge_at[0] = -1
    for p in range(1, n):
        u = order[p]
        parent_pos[p] = position[parent[u]]
        edge_at[p] = parent_edge[u]
    return order, position, parent_pos, edge_at


@njit(cache=True)
def _insertion_candidates(
    XT: np.ndarray,
    xz: np.ndarray,
    z: int,
    order: np.ndarray,
    parent_pos: np.ndarray,
    up_s: np.ndarray,
    up_a: np.ndarray,
    up_b: np.ndarray,
    best_s: np.ndarray,
    best_a: np.ndarray,
    best_b: np.ndarray,
    found_a: np.ndarray,
    found_s: np.ndarray,
) -> int:
    """Edges from a new row ``z`` to the old rows that survive its insertion into the old tree.

    Vertex insertion (Chin and Houck, 1978), O(n_old d): walk the old tree from the leaves up;
    ``best[u]`` is the lightest pending edge joining ``u``'s subtree to ``z``, first the direct
    edge ``(u, z)``. Of ``best[u]`` and the tree edge from ``u`` up to its parent the lighter stays
    in the MST of the old tree plus ``z``'s edges, and the heavier becomes a candidate for
    ``best[parent]``; at the root the pending edge stays. Every dropped edge is the heaviest on a
    cycle. All per-vertex arrays are indexed by position in the depth-first order, so the walk
    reads them sequentially.

    Args:
        XT: ``float64`` ``(d, n_old)`` old rows, transposed, columns in depth-first order.
        xz: ``float64`` ``(d,)`` the new row.
        z: Index of the new row (``>= n_old``).
        order: ``int64`` ``(n_old,)`` vertex at each position, every vertex after its parent.
        parent_pos: ``int64`` ``(n_old,)`` position of the parent (``-1`` at the root, unread).
        up_s: ``float64`` ``(n_old,)`` squared length of the edge up to the parent.
        up_a: ``int64`` ``(n_old,)`` its smaller endpoint.
        up_b: ``int64`` ``(n_old,)`` its larger endpoint.
        best_s: ``float64`` ``(n_old,)`` scratch.
        best_a: ``int64`` ``(n_old,)`` scratch.
        best_b: ``int64`` ``(n_old,)`` scratch.
        found_a: ``int64`` ``(n_old,)`` receives the old endpoint of each surviving edge.
        found_s: ``float64`` ``(n_old,)`` receives its squared length.

    Returns:
        The number of surviving edges written to ``found_a`` and ``found_s``.
    """
    d, n_old = XT.shape
    for p in range(n_old):
        best_s[p] = 0.0
    for f in range(d):
        x = xz[f]
        for p in range(n_old):
            diff = XT[f, p] - x
            best_s[p] += diff * diff
    for p in range(n_old):
        best_a[p] = order[p]
        best_b[p] = z
    found = 0
    for p in range(n_old - 1, 0, -1):  # children before parents, the root last
        r = parent_pos[p]
        if _key_less(best_s[p], best_a[p], best_b[p], up_s[p], up_a[p], up_b[p]):
            # The pending edge stays; an edge to z is a candidate (a tree edge is in the merge
            # anyway), and the tree edge becomes the pending edge above.
            if best_b[p] == z:
                found_a[found] = best_a[p]
                found_s[found] = best_s[p]
                found += 1
            heavy_s, heavy_a, heavy_b = up_s[p], up_a[p], up_b[p]
        else:
            heavy_s, heavy_a, heavy_b = best_s[p], best_a[p], best_b[p]
        if _key_less(heavy_s, heavy_a, heavy_b, best_s[r], best_a[r], best_b[r]):
            best_s[r] = heavy_s
            best_a[r] = heavy_a
            best_b[r] = heavy_b
    if best_b[0] == z:
        found_a[found] = best_a[0]
        found_s[found] = best_s[0]
        found += 1
    return found


@njit(cache=True)
def extend_mst(X: np.ndarray, mst: np.ndarray, n_old: int) -> np.ndarray:
    """MST of all rows of ``X`` from a spanning tree of its first ``n_old`` rows (min_samples=1).

    With ``T`` the given tree and ``Z`` the new rows, the result is the minimum spanning tree of
    ``T`` plus every edge incident to a row of ``Z`` (the graph whose MST inserting the new rows
    one at a time would give), under the canonical edge order. When ``T`` is the canonical MST of
    the old rows this is the canonical MST of all rows. It is built in three steps:

    1. For each new row ``z``, vertex insertion into the *old* tree (Chin and Houck, 1978) finds
       the edges incident to ``z`` in the MST of ``T`` plus ``z``'s edges to the old rows: walk
       the tree from the leaves up keeping, per vertex ``u``, the lightest pending edge joining
       ``u``'s subtree to ``z``; of that edge and the tree edge above ``u`` the heavier is the
       largest on a cycle and so is dropped. Any edge from ``z`` to an old row dropped there is
       the largest on a cycle of the full graph too, so it cannot be in the final tree. The old
       tree and its traversal order are shared by all new rows: O(n_old d) per new row.
    2. Likewise, among the edges joining two new rows only those of the new rows' own MST (dense
       Prim) can be in the final tree.
    3. Kruskal over the old tree edges (in canonical order) merged with those few candidates
       (sorted by the same order) with the disjoint sets of
       :mod:`meds_gym.clustering.disjoint_set`: the accepted edges come out in canonical
       order, so no final sort is needed.

    Edge keys are recomputed from ``X``, so the result depends only on the rows and on the edge
    set of ``mst``, not on its distances or row order.

    Args:
        X: ``float64`` array of shape ``(N, d)``, C-contiguous, ``N >= 2``.
        mst: ``float64`` array of shape ``(n_old - 1, 3)``, rows ``(a, b, distance)``, a spanning
            tree of the first ``n_old`` rows.
        n_old: Number of leading rows of ``X`` that ``mst`` spans (``1 <= n_old <= N``).

    Returns:
        ``float64`` array of shape ``(N - 1, 3)`` in canonical edge order.
    """
    n, d = X.shape
    k = n - n_old  # new rows
    m_old = mst.shape[0]
    ta = np.empty(m_old, dtype=np.int64)
    tb = np.empty(m_old, dtype=np.int64)
    ts = np.empty(m_old)
    for r in range(m_old):
        i = int(mst[r, 0])
        j = int(mst[r, 1])
        ta[r] = min(i, j)
        tb[r] = max(i, j)
    # Candidate edges: from new rows to old rows (step 1), then the k - 1 edges of the new rows'
    # own tree (step 2), for which room is always kept at the end.
    cap = 4 * k + 16
    ca = np.empty(cap, dtype=np.int64)
    cb = np.empty(cap, dtype=np.int64)
    cs = np.empty(cap)
    nc = 0
    if k == 0:
        # No new rows: only the tree's own edge keys are needed, recomputed from X.
        for r in range(m_old):
            s = 0.0
            for f in range(d):
                diff = X[ta[r], f] - X[tb[r], f]
                s += diff * diff
            ts[r] = s
    else:
        # 1. Candidate edges from each new row to the old rows.
        order, position, parent_pos, edge_at = _rooted_tree(ta, tb, n_old)
        # Everything the walk reads, laid out by depth-first position. The rows are read in
        # storage order (they are usually not in cache yet; a sequential read is prefetched).
        XT = np.empty((d, n_old))  # (d, n_old): the distance loops run over rows
        for u in range(n_old):
            p = position[u]
            for f in range(d):
                XT[f, p] = X[u, f]
        # Squared length of each tree edge, summed feature by feature as everywhere else.
        up_s = np.zeros(n_old)
        for f in range(d):
            for p in range(1, n_old):
                diff = XT[f, p] - XT[f, parent_pos[p]]
                up_s[p] += diff * diff
        up_a = np.zeros(n_old, dtype=np.int64)
        up_b = np.zeros(n_old, dtype=np.int64)
        for p in range(1, n_old):
            e = edge_at[p]
            ts[e] = up_s[p]
            up_a[p] = ta[e]
            up_b[p] = tb[e]
        work_s = np.empty(n_old)
        work_a = np.empty(n_old, dtype=np.int64)
        work_b = np.empty(n_old, dtype=np.int64)
        found_a = np.empty(n_old, dtype=np.int64)
        found_s = np.empty(n_old)
        for z in range(n_old, n):
            found = _insertion_candidates(
                XT, X[z], z, order, parent_pos, up_s, up_a, up_b,
                work_s, work_a, work_b, found_a, found_s,
            )  # fmt: skip
            if nc + found + k > cap:
                cap = 2 * (nc + found + k)
                grown_a = np.empty(cap, dtype=np.int64)
                grown_b = np.empty(cap, dtype=np.int64)
                grown_s = np.empty(cap)
                for r in range(nc):
                    grown_a[r] = ca[r]
                    grown_b[r] = cb[r]
                    grown_s[r] = cs[r]
                ca, cb, cs = grown_a, grown_b, grown_s
            for r in range(found):
                ca[nc] = found_a[r]
                cb[nc] = z
                cs[nc] = found_s[r]
                nc += 1

    old_order = edge_order(ta, tb, ts, ts)

    # 2. Candidate edges between new rows: their own MST.
    if k >= 2:
        na, nb, _, ns = _prim_edges(X[n_old:], np.zeros(k))
        for r in range(k - 1):
            ca[nc] = na[r] + n_old
            cb[nc] = nb[r] + n_old
            cs[nc] = ns[r]
            nc += 1
    ca = ca[:nc]
    cb = cb[:nc]
    cs = cs[:nc]
    cand_order = edge_order(ca, cb, cs, cs)

    # 3. Kruskal over the two sorted lists.
    out = np.empty((n - 1, 3))
    forest = np.arange(n)
    i = 0
    j = 0
    taken = 0
    while taken < n - 1:
        if j >= nc or (
            i < m_old
            and _key_less(
                ts[old_order[i]],
                ta[old_order[i]],
                tb[old_order[i]],
                cs[cand_order[j]],
                ca[cand_order[j]],
                cb[cand_order[j]],
            )
        ):
            e = old_order[i]
            a, b, s = ta[e], tb[e], ts[e]
            i += 1
        else:
            e = cand_order[j]
            a, b, s = ca[e], cb[e], cs[e]
            j += 1
        if not union_if_disjoint(forest, a, b):
            continue  # the largest edge of a cycle
        out[taken, 0] = a
        out[taken, 1] = b
        out[taken, 2] = np.sqrt(s)
        taken += 1
    return out
