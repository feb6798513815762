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


@njit(cache=True, inline="always")
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
def core_distances_sq(X: np.ndarray, min_samples: int) -> np.ndarray:
    """Squared core distances, rounded like the ``hdbscan`` package does.

    Args:
        X: ``float64`` array of shape ``(N, d)``, C-contiguous, ``N >= 2``.
        min_samples: Neighbour rank, already capped at ``N - 1`` by the caller (``>= 1``).

    Returns:
        ``float64`` array of shape ``(N,)``: ``fl(sqrt(s_k)) ** 2`` where ``s_k`` is the
        ``(min_samples + 1)``-th smallest squared distance from the row to all rows, itself
        included. Squaring the rounded root (not reusing ``s_k``) is what the package does.
    """
    n, d = X.shape
    k = min_samples
    XT = np.ascontiguousarray(X.T)
    acc = np.empty(n)
    top = np.empty(k + 1)  # the k+1 smallest squared distances seen so far, ascending
    out = np.empty(n)
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
        out[i] = core * core
    return out


@njit(cache=True)
def prim_mst(X: np.ndarray, core_sq: np.ndarray, use_core: bool) -> np.ndarray:
    """Dense O(N^2 d) Prim MST of the mutual-reachability graph, in canonical edge order.

    Distances are computed on the fly (no N x N matrix): the columns of the points not yet in the
    tree are kept compacted in a ``(d, m)`` buffer so the inner loop vectorises over points while
    every pair is still summed feature by feature.

    Args:
        X: ``float64`` array of shape ``(N, d)``, C-contiguous, ``N >= 2``.
        core_sq: ``float64`` array of shape ``(N,)`` from :func:`core_distances_sq` (ignored when
            ``use_core`` is false).
        use_core: ``False`` for ``min_samples=1``, where mutual reachability equals distance.

    Returns:
        ``float64`` array of shape ``(N - 1, 3)``: rows ``(a, b, distance)`` with ``a < b``,
        sorted in the canonical edge order.
    """
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)  # (d, m) compacted columns of the points outside the tree
    rem = np.arange(n)  # original index of each compacted column
    best_w = np.full(n, np.inf)  # best mutual-reachability^2 to the tree, per compacted column
    best_s = np.full(n, np.inf)  # raw squared distance of that best edge
    best_t = np.full(n, -1)  # tree endpoint of that best edge
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
        cu = core_sq[u] if use_core else 0.0
        arg = 0
        for p in range(m):
            s = acc[p]
            w = s
            if use_core:
                cj = core_sq[rem[p]]
                if cu > w:
                    w = cu
                if cj > w:
                    w = cj
            j = rem[p]
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
    return _sorted_edges(ea, eb, ew, es)


@njit(cache=True)
def _sorted_edges(ea: np.ndarray, eb: np.ndarray, ew: np.ndarray, es: np.ndarray) -> np.ndarray:
    """Sort edges in the canonical order and pack them as ``(a, b, sqrt(w))`` rows.

    Args:
        ea: ``int64`` ``(E,)`` smaller endpoints.
        eb: ``int64`` ``(E,)`` larger endpoints.
        ew: ``float64`` ``(E,)`` squared mutual-reachability distances.
        es: ``float64`` ``(E,)`` raw squared distances.

    Returns:
        ``float64`` array of shape ``(E, 3)``.
    """
    order = _canonical_order(ea, eb, ew, es)
    out = np.empty((ea.shape[0], 3))
    for r in range(ea.shape[0]):
        i = order[r]
        out[r, 0] = ea[i]
        out[r, 1] = eb[i]
        out[r, 2] = np.sqrt(ew[i])
    return out


@njit(cache=True)
def _canonical_order(ea: np.ndarray, eb: np.ndarray, ew: np.ndarray, es: np.ndarray) -> np.ndarray:
    """Permutation sorting edges by ``(ew, es, ea, eb)``: least significant key first, stable."""
    order = np.argsort(eb, kind="mergesort")
    order = order[np.argsort(ea[order], kind="mergesort")]
    order = order[np.argsort(es[order], kind="mergesort")]
    order = order[np.argsort(ew[order], kind="mergesort")]
    return order


@njit(cache=True, inline="always")
def _key_less(s1: float, a1: int, b1: int, s2: float, a2: int, b2: int) -> bool:
    """Canonical order for ``min_samples=1`` edges: squared distance, then endpoints (a < b)."""
    if s1 != s2:
        return s1 < s2
    if a1 != a2:
        return a1 < a2
    return b1 < b2


@njit(cache=True)
def _insert_vertex(X: np.ndarray, z: int, ta: np.ndarray, tb: np.ndarray, ts: np.ndarray) -> None:
    """Grow the MST of rows ``0..z-1`` into the MST of rows ``0..z`` in O(z d) (in place).

    Vertex insertion (Chin and Houck, 1978): walk the old tree from the leaves up; for each
    vertex ``u`` with parent ``r``, ``best[u]`` is the lightest pending edge joining ``u``'s
    subtree to ``z``. Of ``best[u]`` and the tree edge ``(u, r)``, the lighter joins the new tree
    and the heavier becomes a candidate for joining ``r``'s side to ``z``; at the root the
    lightest candidate joins the tree. Every dropped edge is the heaviest on a cycle, so under a
    strict edge order the result is the unique MST.

    Args:
        X: ``float64`` ``(N, d)`` rows; row ``z`` is the new vertex.
        z: Index of the new vertex (``>= 1``); the tree spans ``0..z-1``.
        ta: ``int64`` ``(N - 1,)`` smaller endpoints; the first ``z - 1`` entries hold the tree,
            entry ``z - 1`` receives the new edge.
        tb: ``int64`` ``(N - 1,)`` larger endpoints, same layout.
        ts: ``float64`` ``(N - 1,)`` squared distances, same layout.
    """
    d = X.shape[1]
    n_edges = z - 1
    dz = np.empty(z)
    for u in range(z):
        s = 0.0
        for f in range(d):
            diff = X[u, f] - X[z, f]
            s += diff * diff
        dz[u] = s
    # Adjacency of the old tree (CSR), then an iterative depth-first order from vertex 0.
    deg = np.zeros(z + 1, dtype=np.int64)
    for e in range(n_edges):
        deg[ta[e] + 1] += 1
        deg[tb[e] + 1] += 1
    for u in range(z):
        deg[u + 1] += deg[u]
    fill = deg[:z].copy()
    nbr = np.empty(2 * n_edges, dtype=np.int64)
    nbr_edge = np.empty(2 * n_edges, dtype=np.int64)
    for e in range(n_edges):
        nbr[fill[ta[e]]] = tb[e]
        nbr_edge[fill[ta[e]]] = e
        fill[ta[e]] += 1
        nbr[fill[tb[e]]] = ta[e]
        nbr_edge[fill[tb[e]]] = e
        fill[tb[e]] += 1
    order = np.empty(z, dtype=np.int64)
    parent = np.full(z, -1, dtype=np.int64)
    parent_edge = np.full(z, -1, dtype=np.int64)
    seen = np.zeros(z, dtype=np.bool_)
    stack = np.empty(z, dtype=np.int64)
    stack[0] = 0
    seen[0] = True
    top = 1
    count = 0
    while top > 0:
        top -= 1
        u = stack[top]
        order[count] = u
        count += 1
        for q in range(deg[u], deg[u + 1]):
            w = nbr[q]
            if not seen[w]:
                seen[w] = True
                parent[w] = u
                parent_edge[w] = nbr_edge[q]
                stack[top] = w
                top += 1
    # best[u]: lightest pending edge from u's subtree to z, initially the direct edge (u, z).
    best_s = dz.copy()
    best_a = np.arange(z)
    best_b = np.full(z, z, dtype=np.int64)
    new_a = np.empty(z, dtype=np.int64)
    new_b = np.empty(z, dtype=np.int64)
    new_s = np.empty(z)
    k = 0
    for idx in range(z - 1, 0, -1):  # children before parents
        u = order[idx]
        r = parent[u]
        e = parent_edge[u]
        if _key_less(best_s[u], best_a[u], best_b[u], ts[e], ta[e], tb[e]):
            new_a[k], new_b[k], new_s[k] = best_a[u], best_b[u], best_s[u]
            heavy_s, heavy_a, heavy_b = ts[e], ta[e], tb[e]
        else:
            new_a[k], new_b[k], new_s[k] = ta[e], tb[e], ts[e]
            heavy_s, heavy_a, heavy_b = best_s[u], best_a[u], best_b[u]
        k += 1
        if _key_less(heavy_s, heavy_a, heavy_b, best_s[r], best_a[r], best_b[r]):
            best_s[r], best_a[r], best_b[r] = heavy_s, heavy_a, heavy_b
    root = order[0]
    new_a[k], new_b[k], new_s[k] = best_a[root], best_b[root], best_s[root]
    ta[:z] = new_a
    tb[:z] = new_b
    ts[:z] = new_s


@njit(cache=True)
def extend_mst(X: np.ndarray, mst: np.ndarray, n_old: int) -> np.ndarray:
    """MST of all rows of ``X`` from the MST of its first ``n_old`` rows (``min_samples=1``).

    The new rows are inserted one at a time with :func:`_insert_vertex`, O(N d) each, so a batch
    of ``new`` rows costs O(new x N x d). Edge keys are recomputed from ``X``, so the result is
    the canonical MST whenever ``mst`` is, and a minimum spanning tree whenever ``mst`` is one.

    Args:
        X: ``float64`` array of shape ``(N, d)``, C-contiguous, ``N >= 2``.
        mst: ``float64`` array of shape ``(n_old - 1, 3)``, rows ``(a, b, distance)``.
        n_old: Number of leading rows of ``X`` that ``mst`` spans (``1 <= n_old <= N``).

    Returns:
        ``float64`` array of shape ``(N - 1, 3)`` in canonical edge order.
    """
    n, d = X.shape
    ta = np.empty(n - 1, dtype=np.int64)
    tb = np.empty(n - 1, dtype=np.int64)
    ts = np.empty(n - 1)
    for r in range(mst.shape[0]):
        i = int(mst[r, 0])
        j = int(mst[r, 1])
        s = 0.0
        for f in range(d):
            diff = X[i, f] - X[j, f]
            s += diff * diff
        ta[r] = min(i, j)
        tb[r] = max(i, j)
        ts[r] = s
    for z in range(n_old, n):
        _insert_vertex(X, z, ta, tb, ts)
    # With min_samples=1 the mutual-reachability key equals the raw squared distance.
    return _sorted_edges(ta, tb, ts, ts)
