"""The error memory behind :class:`~meds_gym.meds.MEDSShaper`: one bucket per (problem, correct?).

docs/design.md section 2, steps 2, 3 and 5. Each bucket holds the fingerprints stored for it
(float32, as given, oldest first), the labels of its last clustering and, for HDBSCAN, the minimum
spanning tree of that fit (so the next refit extends it instead of starting over). Only the rows are
state; labels and trees are derived from them and rebuilt on load.

This store trusts its input: :func:`meds_gym.meds.batch.validate_batch` is the boundary in front
of it, and :class:`~meds_gym.meds.MEDSShaper` is the public object that owns it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.clustering import (
    NO_LENGTHS,
    NO_LINKS,
    BucketInput,
    links_to_tree,
    update_buckets,
    vote_kernel,
)
from meds_gym.errors import UnknownProblemError
from meds_gym.meds.batch import BucketKey
from meds_gym.meds.config import ClusterMethod, MEDSConfig, NoiseVote, TieBreak

logger = logging.getLogger(__name__)

NOT_ASSIGNED = -2
"""Cluster label reported for a rollout that was not assigned (not kept, not penalised, no
fingerprint, or a bucket with nothing stored yet)."""

TREE_MIN_ROWS = 128
"""Buckets with at least this many rows keep the spanning tree of their last fit, so the next
refit extends it (O(N * new) instead of O(N^2)). Smaller buckets are refitted from their rows,
which costs well under a millisecond and saves 24 bytes a row: a memory of many small buckets
stays within twice the size of its raw float32 fingerprints."""

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outside_package_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside meds_gym."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


_SPARE_FROM_ROWS = 64
"""Buckets of at least this many rows keep spare rows for the next appends."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """Read-only view of one bucket.

    Attributes:
        rows: (N, L) float32, the stored fingerprints as given, oldest first.
        labels: (N,) int64 labels of the last fit (-1 = noise).
        links: (N - 1, 4) int32 minimum spanning tree of the last HDBSCAN fit over the
            L2-normalised rows with its single-linkage merges (see
            :class:`~meds_gym.clustering.BucketUpdate`), kept for buckets of at least
            :data:`TREE_MIN_ROWS` rows so the next fit extends it; (0, 4) otherwise and for the
            single-cluster method.
        lengths: (N - 1,) float64 squared length of each tree edge ((0,) without a tree).
        n_clusters: Number of clusters (labels >= 0).
    """

    rows: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    links: npt.NDArray[np.int32]
    lengths: npt.NDArray[np.float64]
    n_clusters: int

    @classmethod
    def of_fit(
        cls,
        rows: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        links: npt.NDArray[np.int32] = NO_LINKS,
        lengths: npt.NDArray[np.float64] = NO_LENGTHS,
        n_clusters: int | None = None,
    ) -> Bucket:
        """The bucket after a fit, the tree kept only from TREE_MIN_ROWS rows.

        The arrays are made read-only when the bucket is handed out (:meth:`ErrorMemory.bucket`),
        not here: the memory never writes to them, and a step creates hundreds of buckets.
        """
        if len(rows) < TREE_MIN_ROWS:
            links, lengths = NO_LINKS, NO_LENGTHS
        if n_clusters is None:
            n_clusters = int(labels.max()) + 1 if labels.size else 0
        return cls(rows, labels, links, lengths, n_clusters)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def mst(self) -> npt.NDArray[np.float64]:
        """(N - 1, 3) float64 tree of the last fit, rows ``(i, j, distance)`` in merge order.

        As :func:`~meds_gym.clustering.minimum_spanning_tree` returns it; (0, 3) without a tree.
        """
        return links_to_tree(self.links, self.lengths)

    def cluster_sizes(self) -> npt.NDArray[np.int64]:
        """Stored rows per label: entry 0 counts noise (-1), entry ``c + 1`` cluster ``c``."""
        return np.bincount(self.labels + 1, minlength=1).astype(np.int64)


@dataclass(frozen=True)
class MemoryStats:
    """Summary of the memory.

    Attributes:
        rows: Stored fingerprints over all buckets.
        buckets: Number of buckets.
        clusters: Number of clusters (labels >= 0) over all buckets.
        mean_bucket_size: Mean rows per bucket (0.0 for an empty memory).
        max_bucket_size: Largest bucket (0 for an empty memory).
        top1_eigen_ratio: Per bucket, largest eigenvalue / trace of the covariance of its stored
            rows (1.0 = all variation along one direction, a collapsed mode); NaN when undefined
            (fewer than 2 rows or all rows identical).
    """

    rows: int
    buckets: int
    clusters: int
    mean_bucket_size: float
    max_bucket_size: int
    top1_eigen_ratio: dict[BucketKey, float]


def top1_eigen_ratio(rows: npt.NDArray[np.floating[Any]]) -> float:
    """Largest eigenvalue / trace of the covariance of ``rows`` (N, L); NaN when undefined."""
    return float(_eigen_ratios([rows])[0])


def _eigen_ratios(buckets: Sequence[npt.NDArray[np.floating[Any]]]) -> npt.NDArray[np.float64]:
    """Top-1 eigen ratio of each bucket's rows, with one batched eigendecomposition."""
    out = np.full(len(buckets), np.nan)
    if not buckets:
        return out
    dim = buckets[0].shape[1]
    covs = np.zeros((len(buckets), dim, dim))  # (B, L, L)
    for b, rows in enumerate(buckets):
        if rows.shape[0] >= 2:
            centred = rows.astype(np.float64)
            centred -= centred.mean(axis=0)
            np.matmul(centred.T, centred, out=covs[b])
            covs[b] /= rows.shape[0] - 1
    traces = np.einsum("bii->b", covs)  # (B,)
    valid = traces > 0.0
    if valid.any():
        top = np.linalg.eigvalsh(covs[valid])[:, -1]
        out[valid] = top / traces[valid]
    return out


class ErrorMemory:
    """Buckets of past fingerprints with their cluster labels (internal to the shaper).

    The fingerprint length is fixed by the first row ever stored. Read it through
    :attr:`MEDSShaper.memory <meds_gym.meds.MEDSShaper.memory>`; only the shaper writes to it.

    Args:
        config: The MEDS configuration (clustering parameters, capacity, warning threshold).
    """

    def __init__(self, config: MEDSConfig) -> None:
        self.config = config
        self._buckets: dict[BucketKey, Bucket] = {}
        # Per bucket, an array whose leading rows are the bucket's rows, with spare rows behind
        # them: appending writes into the spare rows instead of copying the whole bucket every
        # step. Rows below a bucket's length are never written again, so every Bucket handed out
        # (a read-only view of those rows) keeps its contents.
        self._storage: dict[BucketKey, npt.NDArray[np.float32]] = {}
        self._eigen_cache: dict[BucketKey, float] = {}
        self._dim: int | None = None
        self._warned_size = False

    # ------------------------------------------------------------------ read access
    @property
    def dim(self) -> int | None:
        """Fingerprint length L, fixed by the first stored row (``None`` while empty)."""
        return self._dim

    @property
    def n_rows(self) -> int:
        """Stored fingerprints over all buckets."""
        return sum(len(b) for b in self._buckets.values())

    @property
    def n_clusters(self) -> int:
        """Clusters (labels >= 0) over all buckets."""
        return sum(b.n_clusters for b in self._buckets.values())

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def keys(self) -> list[BucketKey]:
        """Bucket keys ``(problem_id, correct)`` in creation order."""
        return list(self._buckets)

    def __iter__(self) -> Iterator[BucketKey]:
        return iter(list(self._buckets))

    def bucket(self, problem_id: str, correct: bool) -> Bucket:
        """The bucket of ``(problem_id, correct)``.

        Raises:
            UnknownProblemError: If no row was ever stored under that key.
        """
        key = (problem_id, bool(correct))
        if key not in self._buckets:
            known = sorted({pid for pid, flag in self._buckets if flag == bool(correct)})
            raise UnknownProblemError(
                problem_id, known, source=f"the {'correct' if correct else 'wrong'} buckets"
            )
        bucket = self._buckets[key]
        for array in (bucket.rows, bucket.labels, bucket.links, bucket.lengths):
            _frozen(array)
        return bucket

    def stats(self) -> MemoryStats:
        """Sizes, cluster counts and per-bucket top-1 eigen ratio (a diversity measure).

        Eigen ratios are cached per bucket until the bucket changes, so a call after a training
        step only recomputes the buckets that step touched.
        """
        stale = [key for key in self._buckets if key not in self._eigen_cache]
        if stale:
            ratios = _eigen_ratios([self._buckets[key].rows for key in stale])
            self._eigen_cache.update(zip(stale, ratios.tolist(), strict=True))
        sizes = np.fromiter((len(b) for b in self._buckets.values()), np.int64, len(self._buckets))
        return MemoryStats(
            rows=int(sizes.sum()),
            buckets=len(self._buckets),
            clusters=self.n_clusters,
            mean_bucket_size=float(sizes.mean()) if sizes.size else 0.0,
            max_bucket_size=int(sizes.max()) if sizes.size else 0,
            top1_eigen_ratio={key: self._eigen_cache[key] for key in self._buckets},
        )

    # ------------------------------------------------------------------ assignment
    def assign(
        self, keys: Sequence[BucketKey], rows: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Vote each row into a cluster of its bucket as the memory stands now (no update).

        Each row gets the majority label of its ``config.k`` nearest stored rows (cosine
        distance; all of them when fewer are stored), ties broken by ``config.tie_break``, and
        the number of stored rows that carry that label. A bucket holding one row is labelled
        ``[-1]``, so a row there votes noise with size 1, as in the reference code. Rows of a
        bucket with nothing stored get ``NOT_ASSIGNED`` and size 0. With
        ``NoiseVote.NO_PENALTY`` a noise vote has size 0. With ``ClusterMethod.SINGLE`` every row
        gets label 0 and the bucket's size. :meth:`update` gives the same votes.

        Args:
            keys: (Q,) bucket key of each row.
            rows: (Q, L) float32 validated rows.

        Returns:
            ``(labels, sizes)``, both (Q,) int64.
        """
        q = len(keys)
        labels = np.full(q, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(q, dtype=np.int64)
        config = self.config
        single = config.cluster_method is ClusterMethod.SINGLE
        for key, index in _rows_by_bucket(keys).items():
            stored = self._buckets.get(key)
            if stored is None:
                continue
            if single:
                labels[index] = 0
                sizes[index] = len(stored)
                continue
            votes = vote_kernel(
                stored.rows.astype(np.float64),
                stored.labels,
                rows[index].astype(np.float64),
                min(config.k, len(stored)),
                config.tie_break is TieBreak.SMALLEST_LABEL,
            )
            labels[index] = votes
            sizes[index] = stored.cluster_sizes()[votes + 1]
        return labels, self._noise_sizes(labels, sizes)

    def _noise_sizes(
        self, labels: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        if self.config.noise_vote is NoiseVote.NO_PENALTY:
            sizes[labels == -1] = 0
        return sizes

    # ------------------------------------------------------------------ update
    def update(
        self,
        keys: Sequence[BucketKey],
        rows: npt.NDArray[np.float32],
        voted: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Vote the ``voted`` rows as :meth:`assign` does, then append all rows and refit.

        One training step: the votes see the memory as it stood before the step. Every touched
        bucket is refitted once (from its stored tree when it has one), and the vote shares that
        work, so a step costs about what the refit alone costs. ``voted`` must be the same for
        every row of a bucket (it follows from the bucket's correct flag). All touched buckets are
        built and refitted before any is committed, and the size warning is issued before the
        commit too, so an error (or a warning turned into one) leaves the memory unchanged.

        Args:
            keys: (Q,) bucket key of each row.
            rows: (Q, L) float32 validated rows.
            voted: (Q,) bool, the rows to vote.

        Returns:
            ``(labels, sizes)``, both (Q,) int64, as :meth:`assign` gives them for the voted rows;
            ``NOT_ASSIGNED`` and 0 for the others.
        """
        q = len(keys)
        labels = np.full(q, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(q, dtype=np.int64)
        if q == 0:
            return labels, sizes
        config = self.config
        touched, order, bounds = _group_by_bucket(keys)
        grouped = rows[order]  # (Q, L), the rows of each touched bucket together, in order
        if config.cluster_method is ClusterMethod.SINGLE:
            if voted.any():
                labels[voted], sizes[voted] = self.assign(
                    [keys[i] for i in np.flatnonzero(voted).tolist()], rows[voted]
                )
            self._store(touched, grouped, bounds)
            return labels, sizes
        # Per touched bucket: its rows after the step and what the kernel needs of its past
        # (prepare), then its new state (finish), both on the thread that runs the bucket (see
        # update_buckets), so that this bookkeeping overlaps the other buckets' kernels.
        incremental = config.min_samples == 1
        wants = voted[order[bounds[:-1]]].tolist()  # per bucket (the same for all its rows)
        olds = [self._buckets.get(key) for key in touched]
        rows_after: list[Any] = [None] * len(touched)
        storages: list[Any] = [None] * len(touched)
        voted_here = [False] * len(touched)  # whether the kernel votes the bucket's new rows
        no_labels = np.zeros(0, dtype=np.int64)

        def prepare(b: int) -> tuple[Any, ...]:  # the fields of a BucketInput
            key, old = touched[b], olds[b]
            data, storages[b], n_old = self._appended(key, grouped[bounds[b] : bounds[b + 1]], old)
            rows_after[b] = data
            if old is None:
                return data, 0, NO_LINKS, NO_LENGTHS, no_labels, False
            wanted = wants[b]
            if wanted and n_old != old.rows.shape[0]:
                # The capacity dropped old rows: vote against the bucket as it stood first.
                index = order[bounds[b] : bounds[b + 1]]
                labels[index], sizes[index] = self.assign([key] * len(index), rows[index])
                wanted = False
            tree = n_old > 0 and incremental
            voted_here[b] = wanted
            return (
                data,
                n_old,
                old.links if tree else NO_LINKS,
                old.lengths if tree else NO_LENGTHS,
                old.labels if wanted else no_labels,
                wanted,
            )

        def finish(
            b: int,
            new_votes: npt.NDArray[np.int64],
            new_sizes: npt.NDArray[np.int64],
            fit_labels: npt.NDArray[np.int64],
            links: npt.NDArray[np.int32],
            lengths: npt.NDArray[np.float64],
            n_clusters: int,
        ) -> Bucket:  # the fields of a BucketUpdate
            if voted_here[b]:  # each bucket writes only its own rows' entries
                index = order[bounds[b] : bounds[b + 1]]
                labels[index] = new_votes
                sizes[index] = new_sizes
            return Bucket.of_fit(rows_after[b], fit_labels, links, lengths, n_clusters)

        # The kernel's cost of each bucket: its new rows x all its rows when its tree is
        # extended, all rows squared on a fit from scratch.
        old_sizes = np.array([0 if old is None else len(old.rows) for old in olds])
        extended = np.array(
            [old is not None and old.links.shape[0] == len(old.rows) - 1 for old in olds]
        )
        new_sizes = np.diff(bounds)
        totals = old_sizes + new_sizes
        work = totals * np.where(extended & incremental, new_sizes, totals) * rows.shape[1]
        buckets = update_buckets(
            prepare,
            work.astype(np.float64),
            finish=finish,
            k=config.k,
            smallest_label_wins=config.tie_break is TieBreak.SMALLEST_LABEL,
            min_samples=config.min_samples,
            min_cluster_size=config.min_cluster_size,
            leaf=config.cluster_selection_method == "leaf",
        )
        self._commit(touched, buckets, storages, int(totals.max()), int(rows.shape[1]))
        return labels, self._noise_sizes(labels, sizes)

    def _appended(
        self, key: BucketKey, new: npt.NDArray[np.float32], old: Bucket | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int]:
        """Bucket ``key`` (now ``old``) after appending ``new``: ``(rows, storage, n_old)``.

        ``rows`` is a view of ``storage``; ``n_old`` counts the old rows in their old places (0
        when the capacity dropped some). Writes only behind the bucket's current rows, so nothing
        visible changes.
        """
        size = 0 if old is None else old.rows.shape[0]
        total = size + new.shape[0]
        capacity = self.config.bucket_capacity
        if capacity is not None and total > capacity:
            # FIFO: the oldest rows leave first, so the old rows no longer form a prefix.
            parts = [new] if old is None else [old.rows, new]
            store = np.concatenate(parts, axis=0)[-capacity:].copy()
            return store, store, 0
        reusable = self._storage.get(key)
        if old is not None and reusable is not None and reusable.shape[0] >= total:
            reusable[size:total] = new
            return reusable[:total], reusable, size
        # Room for an eighth more rows, so a bucket is copied about once every size / 8 appended
        # rows rather than on every step. Small buckets get no spare rows: copying them is cheap,
        # and with many one-row buckets spare rows would multiply the memory's size.
        spare = total // 8 if total >= _SPARE_FROM_ROWS else 0
        store = np.empty((total + spare, new.shape[1]), dtype=np.float32)
        if old is not None:
            store[:size] = old.rows
        store[size:total] = new
        return (store if spare == 0 else store[:total]), store, size

    def _store(
        self, touched: list[BucketKey], grouped: npt.NDArray[np.float32], bounds: list[int]
    ) -> None:
        """Append rows without clustering (the single-cluster method: every row is cluster 0)."""
        plans = [
            self._appended(key, grouped[bounds[b] : bounds[b + 1]], self._buckets.get(key))
            for b, key in enumerate(touched)
        ]
        self._commit(
            touched,
            [Bucket.of_fit(data, np.zeros(len(data), dtype=np.int64)) for data, _, _ in plans],
            [storage for _, storage, _ in plans],
            max(len(data) for data, _, _ in plans),
            int(grouped.shape[1]),
        )

    def _commit(
        self,
        keys: list[BucketKey],
        buckets: list[Bucket],
        storages: list[npt.NDArray[np.float32]],
        largest: int,
        dim: int,
    ) -> None:
        """Replace the touched buckets with their new state.

        The size warning comes first, so that a warning turned into an error leaves the memory as
        it was.
        """
        if largest > self.config.warn_bucket_size and not self._warned_size:
            warnings.warn(
                f"A MEDS memory bucket holds {largest} rows (warn_bucket_size="
                f"{self.config.warn_bucket_size}). Each refit of a bucket costs O(N^2) time and "
                "memory in its size N, so steps will keep slowing down as buckets grow. Set "
                "MEDSConfig(bucket_capacity=...) (for example 2000) to keep only the newest rows "
                "of each bucket, or raise warn_bucket_size if this size is intended.",
                UserWarning,
                stacklevel=_outside_package_stacklevel(),
            )
            self._warned_size = True
        self._buckets.update(zip(keys, buckets, strict=True))
        self._storage.update(zip(keys, storages, strict=True))
        if self._eigen_cache:  # filled only by stats()
            for key in keys:
                self._eigen_cache.pop(key, None)
        if self._dim is None:
            self._dim = dim

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[list[BucketKey], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(keys, bucket_sizes, rows)``: everything the memory needs to be rebuilt."""
        keys = list(self._buckets)
        sizes = np.array([len(self._buckets[k]) for k in keys], dtype=np.int64)
        if keys:
            rows = np.concatenate([self._buckets[k].rows for k in keys])
        else:
            rows = np.zeros((0, self._dim or 0), dtype=np.float32)
        return keys, sizes, rows

    @classmethod
    def rebuild(
        cls,
        config: MEDSConfig,
        keys: Sequence[BucketKey],
        sizes: npt.NDArray[np.int64],
        rows: npt.NDArray[np.float32],
    ) -> ErrorMemory:
        """A memory holding ``rows`` (validated, grouped by bucket), with labels refitted."""
        memory = cls(config)
        if not keys:
            if rows.shape[1]:
                memory._dim = int(rows.shape[1])
            return memory
        starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        datasets = [rows[starts[b] : starts[b + 1]].copy() for b in range(len(keys))]
        if config.cluster_method is ClusterMethod.SINGLE:
            fits = [(np.zeros(len(d), dtype=np.int64), NO_LINKS, NO_LENGTHS) for d in datasets]
        else:
            no_labels = np.zeros(0, dtype=np.int64)
            results = update_buckets(
                lambda b: BucketInput(datasets[b], 0, NO_LINKS, NO_LENGTHS, no_labels, False),
                np.asarray(sizes, dtype=np.float64) ** 2 * rows.shape[1],
                k=config.k,
                smallest_label_wins=False,
                min_samples=config.min_samples,
                min_cluster_size=config.min_cluster_size,
                leaf=config.cluster_selection_method == "leaf",
            )
            fits = [(r.labels, r.links, r.lengths) for r in results]
        for key, data, (lab, links, lengths) in zip(keys, datasets, fits, strict=True):
            memory._buckets[key] = Bucket.of_fit(data, lab, links, lengths)
            memory._storage[key] = data
        memory._dim = int(rows.shape[1])
        return memory


def _rows_by_bucket(keys: Sequence[BucketKey]) -> dict[BucketKey, npt.NDArray[np.int64]]:
    """Row indices of each bucket key, buckets in order of first appearance, rows in order."""
    touched, order, bounds = _group_by_bucket(keys)
    return {key: order[bounds[b] : bounds[b + 1]] for b, key in enumerate(touched)}


def _group_by_bucket(
    keys: Sequence[BucketKey],
) -> tuple[list[BucketKey], npt.NDArray[np.int64], list[int]]:
    """Rows grouped by bucket: ``(touched, order, bounds)``.

    ``touched`` lists the bucket keys in order of first appearance and ``order`` the row indices
    by bucket (rows in order), bucket ``b``'s in ``order[bounds[b]:bounds[b + 1]]``.
    """
    codes: dict[BucketKey, int] = {}  # each key hashed once: a new key gets the next code
    inverse = np.array([codes.setdefault(key, len(codes)) for key in keys], dtype=np.int64)
    order = np.argsort(inverse, kind="stable")
    bounds = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=len(codes)), out=bounds[1:])
    return list(codes), order, bounds.tolist()
