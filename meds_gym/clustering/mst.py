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

from meds_gym.clustering.disjoint_set import find_root


@njit(cache=True)
def take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` for 1-D arrays, as a plain loop.

    Numba's own fancy indexing (and slice assignment) compiles error-reporting code that costs
    more compilation time than everything it is used for here.
    """
    out = np.empty(index.shape[0], dtype=values.dtype)
    for i in range(index.shape[0]):
        out[i] = values[index[i]]
    return out


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
def full_sorted_tree(X: np.ndarray, min_samples: int):
    """Canonical MST of the mutual-reachability graph of all rows of ``X``, as sorted arrays.

    With ``k = min(min_samples, N - 1)`` (the ``hdbscan`` package caps it so), the squared core
    distance of a row is ``fl(sqrt(s_k)) ** 2`` where ``s_k`` is its ``(k + 1)``-th smallest
    squared distance to all rows, itself included; squaring the rounded root (not reusing
    ``s_k``) is what the package does. With ``k = 1`` the core distance never exceeds a pair
    distance, so mutual reachability is the plain distance and core distances are skipped.

    Args:
        X: ``float64`` ``(N, d)``, C-contiguous, ``N >= 2``.
        min_samples: Core-distance neighbour rank (``>= 1``).

    Returns:
        ``(ta, tb, tw)``: ``int64`` ``(N - 1,)`` smaller and larger endpoints and ``float64``
        ``(N - 1,)`` squared mutual-reachability distances, in the canonical edge order.
    """
    n, d = X.shape
    k = min(min_samples, n - 1)
    core_sq = np.zeros(n)
    if k > 1:
        XT = transposed(X, n)
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
    return take(ea, order), take(eb, order), take(ew, order)


@njit(cache=True)
def _prim_edges(X: np.ndarray, core_sq: np.ndarray):
    """The edges of the dense Prim MST (see :func:`full_sorted_tree`), unsorted, with both keys.

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
    XT = transposed(X, n)  # (d, m) compacted columns of the points outside the tree
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
def transposed(X: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows of ``X`` (N, d) as a C-contiguous ``float64`` ``(d, n)`` matrix."""
    d = X.shape[1]
    XT = np.empty((d, n))
    for i in range(n):
        for f in range(d):
            XT[f, i] = X[i, f]
    return XT


@njit(cache=True)
def squared_distances(XT: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``(k, n)`` squared distances from each row of ``Z`` (k, d) to each column of ``XT`` (d, n).

    Each distance is summed feature by feature from 0.0 in ``float64``, like every distance here,
    so it equals the one a pairwise loop over the two rows gives; the innermost loop runs over
    ``XT``'s columns and writes one contiguous output row, which vectorises.
    """
    d, n = XT.shape
    k = Z.shape[0]
    out = np.zeros((k, n))
    for j in range(k):
        for f in range(d):
            z = Z[j, f]
            for i in range(n):
                diff = XT[f, i] - z
                out[j, i] += diff * diff
    return out


@njit(cache=True)
def _surviving_edges(
    D: np.ndarray,
    ta: np.ndarray,
    ts: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    n_old: int,
):
    """Edges from each new row to the old rows that survive its insertion into the old tree.

    The old tree's edges, taken in canonical order, build a single-linkage dendrogram: merge
    ``r`` joins the nodes ``left[r]`` and ``right[r]`` (point ``u < n_old`` or merge ``n_old + r'``)
    at edge ``r``. An edge ``(u, z)`` from new row ``z`` stays in the MST of the old tree plus
    ``z``'s edges exactly when no path from ``z`` to ``u`` uses only lighter edges (the cycle
    property under a strict order). Such a path is an edge ``(z, x)`` lighter than ``(u, z)`` and
    a tree path from ``x`` to ``u`` over lighter edges, so ``x`` lies in the largest dendrogram
    node that holds ``u`` and was merged below ``(u, z)``. Hence ``(u, z)`` survives exactly when
    ``u`` is the row nearest to ``z`` (ties by index) in that node. Passes over the merges in
    order find them all: each node carries the nearest row below it; at a merge, the farther of
    the two children's nearest rows is decided (it survives if the merge edge is heavier than its
    edge to ``z``, otherwise a lighter path reaches it through the other child) and the nearer one
    moves up; the root's nearest row survives. O(n_old) per new row after the distances, reading
    the merges sequentially, with no traversal of the tree.

    Any edge dropped here is the heaviest on a cycle of the full graph too, so only the returned
    edges can join the old tree's edges in the final tree.

    Args:
        D: ``float64`` ``(k, n_old)`` squared distances from new row ``j`` (index ``n_old + j``)
            to the old rows.
        ta: ``(n_old - 1,)`` smaller endpoint of each old tree edge, in canonical order.
        ts: ``float64`` ``(n_old - 1,)`` squared length.
        left: ``(n_old - 1,)`` first dendrogram child of each merge.
        right: ``(n_old - 1,)`` second child.
        n_old: Number of old rows (``>= 1``).

    Returns:
        ``(ca, cb, cs)``: ``int64``, ``int64`` and ``float64`` arrays of the surviving edges
        (old endpoint, new endpoint, squared length), in no particular order.
    """
    k = D.shape[0]
    nodes = 2 * n_old - 1
    # Per node (row-major, k entries each): the squared distance from each new row to the nearest
    # old row below the node, and that row.
    near_s = np.empty(nodes * k)
    near_u = np.empty(nodes * k, dtype=np.int64)
    for u in range(n_old):
        for j in range(k):
            near_s[u * k + j] = D[j, u]
            near_u[u * k + j] = u
    # Two passes over the merges, each simple enough to run on vector registers (offsets are
    # unsigned, so numba skips its negative-index check): the nearest rows move up, then each
    # merge counts its survivors. The few merges that have some are visited a third time.
    for r in range(n_old - 1):
        at_x = np.uint64(left[r] * k)
        at_y = np.uint64(right[r] * k)
        at_up = np.uint64((n_old + r) * k)
        for j in range(np.uint64(k)):  # all new rows at once, without branches
            sx = near_s[at_x + j]
            ux = near_u[at_x + j]
            sy = near_s[at_y + j]
            uy = near_u[at_y + j]
            # Whether y's row is nearer (ties by index), as an all-ones mask, to swap the rows.
            swap = (ux ^ uy) & -np.int64((sy < sx) | ((sy == sx) & (uy < ux)))
            near_s[at_up + j] = min(sx, sy)
            near_u[at_up + j] = ux ^ swap
    hits = np.empty(n_old - 1, dtype=np.int64)
    nc = k  # the root's nearest rows
    for r in range(n_old - 1):
        at_x = np.uint64(left[r] * k)
        at_y = np.uint64(right[r] * k)
        s_r = ts[r]
        a_r = ta[r]
        h = 0
        for j in range(np.uint64(k)):
            sx = near_s[at_x + j]
            ux = near_u[at_x + j]
            sy = near_s[at_y + j]
            uy = near_u[at_y + j]
            swap = (ux ^ uy) & -np.int64((sy < sx) | ((sy == sx) & (uy < ux)))
            hs = max(sx, sy)  # the farther child's nearest row, decided here
            hu = uy ^ swap
            # Whether (hu, z) precedes merge r's edge (a_r, b_r) in the canonical order; at equal
            # lengths and hu == a_r it does not, as b_r < n_old <= z.
            h += np.int64((hs < s_r) | ((hs == s_r) & (hu < a_r)))
        hits[r] = h
        nc += h
    ca = np.empty(nc, dtype=np.int64)
    cb = np.empty(nc, dtype=np.int64)
    cs = np.empty(nc)
    for j in range(k):  # the root's nearest row survives
        ca[j] = near_u[(nodes - 1) * k + j]
        cb[j] = n_old + j
        cs[j] = near_s[(nodes - 1) * k + j]
    c = k
    for r in range(n_old - 1):
        if hits[r] == 0:
            continue
        at_x = left[r] * k
        at_y = right[r] * k
        for j in range(k):
            sx = near_s[at_x + j]
            ux = near_u[at_x + j]
            sy = near_s[at_y + j]
            uy = near_u[at_y + j]
            y_nearer = sy < sx or (sy == sx and uy < ux)
            hs = sx if y_nearer else sy
            hu = ux if y_nearer else uy
            if hs < ts[r] or (hs == ts[r] and hu < ta[r]):
                ca[c] = hu
                cb[c] = n_old + j
                cs[c] = hs
                c += 1
    return ca, cb, cs


@njit(cache=True)
def kruskal(
    ta: np.ndarray,
    tb: np.ndarray,
    ts: np.ndarray,
    tree_left: np.ndarray,
    tree_right: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    cs: np.ndarray,
    n_old: int,
    n: int,
):
    """Kruskal over a tree of the first ``n_old`` points and new edges, building single linkage.

    The two lists are merged in canonical order ``(squared length, a, b)`` (the tree's edge first
    on equal keys) and each edge whose endpoints are not joined yet is taken: the edges taken form
    the minimum spanning tree of both lists' edges, in canonical order, and taking edge ``r`` is
    merge ``r`` of the single-linkage dendrogram. Without a tree (``n_old`` 0, empty tree arrays)
    the new edges are taken in their given order, whatever their keys
    (:func:`single_linkage`).

    The disjoint sets (:mod:`meds_gym.clustering.disjoint_set`) are kept over dendrogram nodes:
    the tree's points and merges (``n_old + i``, from the tree's own single linkage
    ``tree_left``, ``tree_right``) and the new points. When tree edge ``i`` comes up, every
    earlier tree edge has joined its endpoints, so the points below each child of the tree's merge
    ``i`` already form one set, and the edge's finds start at those children, which are nearly
    always roots themselves. Only the new edges, few in an incremental step, start at points.

    Args:
        ta: ``int64`` ``(n_old - 1,)`` smaller endpoints of the tree's edges, in canonical order.
        tb: ``int64`` ``(n_old - 1,)`` larger endpoints.
        ts: ``float64`` ``(n_old - 1,)`` squared lengths.
        tree_left: ``int64`` ``(n_old - 1,)`` the tree's single linkage (this function on the
            tree alone): first child of each merge.
        tree_right: ``int64`` ``(n_old - 1,)`` second child.
        ca: ``int64`` ``(C,)`` smaller endpoints of the new edges, in canonical order.
        cb: ``int64`` ``(C,)`` larger endpoints (``>= n_old``: each new edge touches a new point).
        cs: ``float64`` ``(C,)`` squared lengths.
        n_old: Points spanned by the tree (0 for none).
        n: Number of points; both lists' edges together must connect them.

    Returns:
        ``(na, nb, ns, left, right, count)``: ``int64`` arrays of shape ``(n - 1,)`` (``ns``
        ``float64``): the edges taken, in order, and the dendrogram: merge ``r`` creates node
        ``n + r`` of ``count[r]`` points by joining the nodes holding ``na[r]`` (``left[r]``) and
        ``nb[r]`` (``right[r]``); nodes below ``n`` are points.
    """
    m_old = ta.shape[0]
    nc = ca.shape[0]
    na = np.empty(n - 1, dtype=np.int64)
    nb = np.empty(n - 1, dtype=np.int64)
    ns = np.empty(n - 1)
    left = np.empty(n - 1, dtype=np.int64)
    right = np.empty(n - 1, dtype=np.int64)
    count = np.empty(n - 1, dtype=np.int64)
    # Set elements: the tree's nodes 0..2 n_old - 2, then new point p as element p + shift.
    shift = max(n_old - 1, 0)
    forest = np.arange(n + shift)
    node_of = np.empty(n + shift, dtype=np.int64)  # dendrogram node of each root's set
    size = np.ones(n + shift, dtype=np.int64)  # points in each root's set
    for u in range(n_old):
        node_of[u] = u
    for p in range(n_old, n):
        node_of[p + shift] = p
    i = 0
    j = 0
    r = 0
    # The two kinds of edge join their sets differently, each in its own branch: one shared
    # union step with a flag runs slower.
    while r < n - 1:
        if j < nc and (i >= m_old or _key_less(cs[j], ca[j], cb[j], ts[i], ta[i], tb[i])):
            a = ca[j]
            b = cb[j]
            x = find_root(forest, a if a < n_old else a + shift)
            y = find_root(forest, b + shift)
            if x != y:
                na[r] = a
                nb[r] = b
                ns[r] = cs[j]
                left[r] = node_of[x]
                right[r] = node_of[y]
                count[r] = size[x] + size[y]
                if size[x] > size[y]:  # union by size keeps the new edges' finds short
                    x, y = y, x
                forest[x] = y
                size[y] = count[r]
                node_of[y] = n + r
                r += 1
            j += 1
        else:
            x = find_root(forest, tree_left[i])
            y = find_root(forest, tree_right[i])
            merge = n_old + i  # the tree's merge i, which later tree edges name as a child
            if x != y:
                na[r] = ta[i]
                nb[r] = tb[i]
                ns[r] = ts[i]
                left[r] = node_of[x]
                right[r] = node_of[y]
                count[r] = size[x] + size[y]
                forest[x] = merge
                forest[y] = merge
                size[merge] = count[r]
                node_of[merge] = n + r
                r += 1
            else:  # dropped: new edges joined its sides earlier
                forest[merge] = x
            i += 1
    return na, nb, ns, left, right, count


@njit(cache=True, inline="always")
def single_linkage(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int):
    """:func:`kruskal` of one edge list, taken in its given order (a spanning tree of ``n`` points).

    Args:
        a: ``int64`` ``(n - 1,)`` one endpoint of each edge.
        b: ``int64`` ``(n - 1,)`` the other endpoint.
        s: ``float64`` ``(n - 1,)`` the merge heights (returned as ``ns``).
        n: Number of points (``>= 1``).

    Returns:
        As :func:`kruskal`.
    """
    no_index = np.empty(0, dtype=np.int64)
    # np.int64(0), not 0: a literal would compile kruskal a second time, for that constant.
    return kruskal(no_index, no_index, np.empty(0), no_index, no_index, a, b, s, np.int64(0), n)


@njit(cache=True, inline="always")
def extend_sorted_tree(
    Z: np.ndarray,
    D: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    ts: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    n_old: int,
):
    """The canonical MST of old and new rows from a sorted tree of the old rows and its linkage.

    With ``T`` the old tree and ``Z`` the new rows, the result is the minimum spanning tree of
    ``T`` plus every edge incident to a row of ``Z`` under the canonical edge order (the
    canonical MST of all rows when ``T`` is the canonical MST of the old ones):

    1. per new row, the edges to old rows that survive its insertion into ``T``
       (:func:`_surviving_edges`, from the distances ``D`` and ``T``'s dendrogram);
    2. among the edges between new rows, only those of the new rows' own MST (dense Prim);
    3. Kruskal over ``T``'s edges merged with those candidates, with single linkage built on the
       way (:func:`kruskal`, which follows ``T``'s dendrogram).

    Args:
        Z: ``float64`` ``(k, d)`` C-contiguous new rows (``k >= 1``); row ``j`` is point
            ``n_old + j``.
        D: ``float64`` ``(k, n_old)`` squared distances from the new rows to the old ones
            (:func:`squared_distances`).
        ta: ``(n_old - 1,)`` smaller endpoints of ``T``'s edges, in canonical order.
        tb: ``(n_old - 1,)`` larger endpoints.
        ts: ``float64`` ``(n_old - 1,)`` squared lengths (the canonical keys).
        left: ``(n_old - 1,)`` dendrogram of ``T``: first child of each merge.
        right: ``(n_old - 1,)`` second child.
        n_old: Rows spanned by ``T``.

    Returns:
        As :func:`kruskal`.
    """
    k = Z.shape[0]
    n = n_old + k
    ca, cb, cs = _surviving_edges(D, ta, ts, left, right, n_old)
    if k >= 2:
        na, nb, _, ns = _prim_edges(Z, np.zeros(k))
        nc = ca.shape[0]
        all_a = np.empty(nc + k - 1, dtype=np.int64)
        all_b = np.empty(nc + k - 1, dtype=np.int64)
        all_s = np.empty(nc + k - 1)
        for r in range(nc):
            all_a[r] = ca[r]
            all_b[r] = cb[r]
            all_s[r] = cs[r]
        for r in range(k - 1):
            all_a[nc + r] = na[r] + n_old
            all_b[nc + r] = nb[r] + n_old
            all_s[nc + r] = ns[r]
        ca, cb, cs = all_a, all_b, all_s
    order = edge_order(ca, cb, cs, cs)
    return kruskal(
        ta, tb, ts, left, right, take(ca, order), take(cb, order), take(cs, order), n_old, n
    )
