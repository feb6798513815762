"""Disjoint sets (union-find) over ``0..n-1``, the one implementation every kernel here uses.

A forest is an ``int64`` array ``parent`` of length ``n``; ``parent[x] == x`` marks a root. Start
one with ``np.arange(n)``. Finds halve the path as they walk it (each visited node skips to its
grandparent), which keeps later finds short without a second pass.

Users: the cycle check of a user-supplied tree (:func:`is_spanning_tree`) and Kruskal's merge,
which builds single linkage on the way (:func:`meds_gym.clustering.mst.kruskal`).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def find_root(parent: np.ndarray, x: int) -> int:
    """Root of ``x``, halving the path on the way.

    Args:
        parent: ``int64`` ``(n,)`` forest, modified in place (path halving).
        x: An element, ``0 <= x < n``.

    Returns:
        The root of the set holding ``x``.
    """
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def union_if_disjoint(parent: np.ndarray, a: int, b: int) -> bool:
    """Merge the sets of ``a`` and ``b`` unless they are one set already.

    Args:
        parent: ``int64`` ``(n,)`` forest, modified in place.
        a: An element.
        b: An element.

    Returns:
        ``True`` if two sets were merged, ``False`` if ``a`` and ``b`` were already together
        (for a graph: the edge ``(a, b)`` closes a cycle).
    """
    ra = find_root(parent, a)
    rb = find_root(parent, b)
    if ra == rb:
        return False
    parent[ra] = rb
    return True


@njit(cache=True)
def is_spanning_tree(a: np.ndarray, b: np.ndarray, n: int) -> bool:
    """Whether the ``n - 1`` edges ``(a[r], b[r])`` over ``0..n-1`` hold no cycle (so a tree).

    Args:
        a: ``int64`` ``(n - 1,)`` one endpoint of each edge, in ``[0, n)``.
        b: ``int64`` ``(n - 1,)`` the other endpoint.
        n: Number of vertices.

    Returns:
        ``True`` when no edge closes a cycle; with ``n - 1`` edges that makes a spanning tree.
    """
    parent = np.arange(n)
    for r in range(a.shape[0]):
        if not union_if_disjoint(parent, a[r], b[r]):
            return False
    return True
