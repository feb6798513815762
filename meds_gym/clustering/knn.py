"""Assign new rows to stored clusters by a k-nearest-neighbour majority vote (cosine distance).

MEDS (paper section 2, step 3) gives each new wrong rollout the label held by the majority of its
``k = 3`` nearest stored fingerprints. Noise (``-1``) is an ordinary label in the vote, as in the
reference code.

Example:
    >>> import numpy as np
    >>> memory = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> knn_vote(memory, np.array([0, 0, 1, 1]), np.array([[1.0, 0.05]]), k=3).tolist()
    [0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types

from meds_gym.clustering._validation import as_finite_matrix, check_int
from meds_gym.clustering.compilation import (
    FUNCTIONS,
    INDEX,
    READ_INDEX,
    READ_ROWS,
    VOTE,
    ensure_compiled,
    register,
)
from meds_gym.clustering.mst import squared_distances, transposed
from meds_gym.errors import InvalidArgumentError

__all__ = ["knn_vote", "vote_kernel"]


@njit(cache=True)
def unit_rows(rows: np.ndarray) -> np.ndarray:
    """``float64`` ``(N, d)`` rows divided by their L2 norm; all-zero rows stay zero.

    The norm is summed feature by feature from 0.0 and each entry divided by it, in ``float64``
    (``float32`` input is widened exactly first): every kernel that needs unit rows uses this, so
    they all see the same numbers.
    """
    n, d = rows.shape
    out = np.empty((n, d))  # no zeroing pass: every entry is written below
    for i in range(n):
        s = 0.0
        for f in range(d):
            v = np.float64(rows[i, f])
            s += v * v
        if s > 0.0:
            norm = np.sqrt(s)
            for f in range(d):
                out[i, f] = np.float64(rows[i, f]) / norm
        else:
            for f in range(d):
                out[i, f] = 0.0
    return out


@njit(cache=True)
def votes_from_distances(D: np.ndarray, labels: np.ndarray, k: int, smallest_label_wins: bool):
    """Majority label of the ``k`` nearest stored rows of each query, from the distances.

    The rule is :func:`vote_kernel`'s.

    Args:
        D: ``float64`` ``(Q, N)`` distances (any monotone function of the cosine distance) from
            each query to each stored row.
        labels: ``(N,)`` label of each stored row.
        k: Number of neighbours, ``1 <= k <= N``.
        smallest_label_wins: Tie rule.

    Returns:
        ``int64`` ``(Q,)``.
    """
    q_count, n = D.shape
    out = np.empty(q_count, dtype=np.int64)
    top_d = np.empty(k)
    top_i = np.empty(k, dtype=np.int64)
    for q in range(q_count):
        filled = 0
        for i in range(n):
            dist = D[q, i]
            # Keep the k best by (distance, index); i only grows, so ties keep earlier rows.
            if filled < k:
                p = filled
                filled += 1
            elif dist < top_d[k - 1]:
                p = k - 1
            else:
                continue
            while p > 0 and top_d[p - 1] > dist:
                top_d[p] = top_d[p - 1]
                top_i[p] = top_i[p - 1]
                p -= 1
            top_d[p] = dist
            top_i[p] = i
        best_label = labels[top_i[0]]
        best_count = 0
        for a in range(k):  # nearest first
            label = labels[top_i[a]]
            c = 0
            for b in range(k):
                if labels[top_i[b]] == label:
                    c += 1
            # Strictly more votes always wins; on equal votes a nearer neighbour's label has
            # already been seen, so only the smallest-label rule can replace it.
            if c > best_count or (smallest_label_wins and c == best_count and label < best_label):
                best_count = c
                best_label = label
        out[q] = best_label
    return out


@njit(cache=True)
def _is_zero(rows: np.ndarray, i: int) -> bool:
    zero = True
    for f in range(rows.shape[1]):
        zero &= rows[i, f] == 0.0
    return zero


@register(
    INDEX(READ_ROWS, READ_INDEX, READ_ROWS, types.int64, types.boolean), groups=(VOTE, FUNCTIONS)
)
@njit(cache=True, nogil=True)
def _vote(
    stored_rows: np.ndarray,
    stored_labels: np.ndarray,
    queries: np.ndarray,
    k: int,
    smallest_label_wins: bool,
) -> np.ndarray:
    """Majority label of the ``k`` nearest stored rows of each query, by cosine distance.

    The kernel behind :func:`vote_kernel`, which states the rule; runs without the GIL. For unit
    rows the squared Euclidean distance is twice the cosine distance, so neighbours are ranked by
    the squared distance between the unit rows (summed feature by feature, as the clustering
    kernels do); an all-zero row is at cosine distance 1 (squared distance 2) from everything.

    Args:
        stored_rows: ``float64`` ``(N, d)``, ``N >= 1``.
        stored_labels: ``int64`` ``(N,)``.
        queries: ``float64`` ``(Q, d)``.
        k: Number of neighbours, ``1 <= k <= N``.
        smallest_label_wins: Tie rule, see above.

    Returns:
        ``int64`` ``(Q,)``.
    """
    n = stored_rows.shape[0]
    unit_stored = unit_rows(stored_rows)
    unit_queries = unit_rows(queries)
    D = squared_distances(transposed(unit_stored, n), unit_queries)  # (Q, N)
    # An all-zero row (all zero after normalising) is at cosine distance 1 from everything.
    zero_stored = np.empty(n, dtype=np.bool_)
    for i in range(n):
        zero_stored[i] = _is_zero(unit_stored, i)
    for q in range(queries.shape[0]):
        zero_query = _is_zero(unit_queries, q)
        for i in range(n):
            if zero_query or zero_stored[i]:
                D[q, i] = 2.0
    return votes_from_distances(D, stored_labels, k, smallest_label_wins)


def vote_kernel(
    stored_rows: np.ndarray,
    stored_labels: np.ndarray,
    queries: np.ndarray,
    k: int,
    smallest_label_wins: bool,
) -> np.ndarray:
    """Majority label of the ``k`` nearest stored rows of each query, by cosine distance.

    Trusted: no input checks (:func:`knn_vote` is the validating entry point). Neighbours are
    ranked by ``(distance, stored row index)``. The winning label is the one held by the most of
    the ``k`` neighbours; among labels tied on that count, the smallest label wins when
    ``smallest_label_wins`` (the reference code's ``np.unique(..., return_counts=True)`` then
    ``argmax``, so noise, ``-1``, wins every tie it is in), otherwise the label of the nearest
    neighbour among them.

    Args:
        stored_rows: ``float64`` ``(N, d)``, C-contiguous, ``N >= 1``.
        stored_labels: ``int64`` ``(N,)``, C-contiguous.
        queries: ``float64`` ``(Q, d)``, C-contiguous.
        k: Number of neighbours, ``1 <= k <= N``.
        smallest_label_wins: Tie rule, see above.

    Returns:
        ``int64`` ``(Q,)``.
    """
    ensure_compiled(VOTE)  # the error memory's trusted vote, compiled on its first use
    return _vote(stored_rows, stored_labels, queries, k, smallest_label_wins)


def knn_vote_kernel(
    memory: np.ndarray, memory_labels: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """Former name, kept for existing imports: :func:`vote_kernel` with the nearest rule."""
    return vote_kernel(memory, memory_labels, queries, k, False)


TIE_BREAKS = ("smallest_label", "nearest")


def knn_vote(
    memory_X: Any,
    memory_labels: Any,
    queries: Any,
    k: int = 3,
    tie_break: str = "smallest_label",
) -> np.ndarray:
    """Label each query with the majority label of its ``k`` nearest stored rows (cosine).

    Cosine distance is ``1 - <a, b> / (|a| |b|)``; an all-zero row is at distance 1 from
    everything (as in scikit-learn). Ties are broken deterministically: equally distant stored
    rows rank by their index, and among labels with the same number of votes ``tie_break``
    decides: ``"smallest_label"`` (the default, the reference code's rule: it takes
    ``np.unique(labels, return_counts=True)`` and the ``argmax``, so noise, ``-1``, wins any tie
    it is in) or ``"nearest"`` (the label of the nearest neighbour among the tied ones). With
    ``k`` larger than the memory, all stored rows vote.

    Args:
        memory_X: Array-like ``(N, d)`` of stored rows, ``N >= 1``.
        memory_labels: Integer array-like ``(N,)``: the label of each stored row (``-1`` noise is
            an ordinary label).
        queries: Array-like ``(Q, d)`` of new rows (``Q`` may be 0).
        k: Number of neighbours (``>= 1``).
        tie_break: ``"smallest_label"`` or ``"nearest"``, see above.

    Returns:
        ``int64`` array of shape ``(Q,)``.

    Raises:
        InvalidArgumentError: On an empty memory, mismatched shapes, non-integer labels, NaN or
            infinity, ``k < 1`` or an unknown ``tie_break``.
    """
    if not isinstance(tie_break, str) or tie_break not in TIE_BREAKS:
        raise InvalidArgumentError(
            "tie_break", 'one of "smallest_label" (the reference rule) or "nearest"', tie_break
        )
    memory = as_finite_matrix("memory_X", memory_X)
    if memory.shape[0] == 0:
        raise InvalidArgumentError(
            "memory_X",
            "a non-empty memory (at least one stored row)",
            memory_X,
            fix="On a problem's first visit there is nothing to vote with; use cluster size 0.",
        )
    labels = np.asarray(memory_labels)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgumentError(
            "memory_labels", f"an integer array (got dtype {labels.dtype})", memory_labels
        )
    if labels.shape != (memory.shape[0],):
        raise InvalidArgumentError(
            "memory_labels",
            f"a 1-D array with one label per stored row, shape ({memory.shape[0]},) "
            f"(got shape {labels.shape})",
            memory_labels,
        )
    query_matrix = as_finite_matrix("queries", queries)
    if query_matrix.shape[1] != memory.shape[1]:
        raise InvalidArgumentError(
            "queries",
            f"rows of {memory.shape[1]} features like memory_X (got {query_matrix.shape[1]})",
            queries,
        )
    count = check_int("k", k, 1)
    ensure_compiled(FUNCTIONS)
    return _vote(
        memory,
        np.ascontiguousarray(labels, dtype=np.int64),
        query_matrix,
        min(count, memory.shape[0]),
        tie_break == "smallest_label",
    )
