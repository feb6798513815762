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

from meds_gym.clustering.hdbscan import refit_buckets
from meds_gym.clustering.knn import vote_kernel
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

_EMPTY_TREE = np.zeros((0, 3))
_EMPTY_TREE.flags.writeable = False


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


def unit_rows(rows: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """(N, L) rows divided by their L2 norm, in float64 (rows must be finite and non-zero)."""
    out = np.array(rows, dtype=np.float64)  # (N, L), a fresh C-contiguous copy
    out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
    return out


@dataclass(frozen=True, slots=True)
class Bucket:
    """Read-only view of one bucket.

    Attributes:
        rows: (N, L) float32, the stored fingerprints as given, oldest first.
        labels: (N,) int64 labels of the last fit (-1 = noise).
        mst: (N - 1, 3) float64 minimum spanning tree of the last HDBSCAN fit over the
            L2-normalised rows, rows ``(i, j, distance)``, kept for buckets of at least
            :data:`TREE_MIN_ROWS` rows; empty otherwise and for the single-cluster method.
        n_clusters: Number of clusters (labels >= 0).
    """

    rows: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    mst: npt.NDArray[np.float64]
    n_clusters: int

    @classmethod
    def of_fit(
        cls,
        rows: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        mst: npt.NDArray[np.float64],
    ) -> Bucket:
        """The bucket after a fit: arrays frozen, the tree kept only from TREE_MIN_ROWS rows."""
        if len(rows) < TREE_MIN_ROWS:
            mst = _EMPTY_TREE
        n_clusters = int(labels.max()) + 1 if labels.size else 0
        return cls(_frozen(rows), _frozen(labels), _frozen(mst), n_clusters)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

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
        return self._buckets[key]

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
            clusters=sum(b.n_clusters for b in self._buckets.values()),
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
        gets label 0 and the bucket's size.

        Args:
            keys: (Q,) bucket key of each row.
            rows: (Q, L) float32 validated rows.

        Returns:
            ``(labels, sizes)``, both (Q,) int64.
        """
        q = len(keys)
        labels = np.full(q, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(q, dtype=np.int64)
        groups: dict[BucketKey, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        config = self.config
        single = config.cluster_method is ClusterMethod.SINGLE
        smallest_wins = config.tie_break is TieBreak.SMALLEST_LABEL
        for key, idx in groups.items():
            stored = self._buckets.get(key)
            if stored is None:
                continue
            index = np.asarray(idx, dtype=np.int64)
            if single:
                labels[index] = 0
                sizes[index] = len(stored)
                continue
            votes = vote_kernel(
                stored.rows.astype(np.float64),
                stored.labels,
                rows[index].astype(np.float64),
                min(config.k, len(stored)),
                smallest_wins,
            )
            got = stored.cluster_sizes()[votes + 1]
            if config.noise_vote is NoiseVote.NO_PENALTY:
                got = np.where(votes == -1, 0, got)
            labels[index] = votes
            sizes[index] = got
        return labels, sizes

    # ------------------------------------------------------------------ update
    def commit(self, keys: Sequence[BucketKey], rows: npt.NDArray[np.float32]) -> None:
        """Append validated rows to their buckets and refit every touched bucket once.

        All touched buckets are built and refitted before any is committed, and the size warning
        is issued before the commit too, so an error (or a warning turned into one) leaves the
        memory unchanged.

        Args:
            keys: (Q,) bucket key of each row.
            rows: (Q, L) float32 validated rows.
        """
        if len(keys) == 0:
            return
        # Group the rows by bucket (buckets in order of first appearance, rows in batch order).
        touched = list(dict.fromkeys(keys))
        position = {key: b for b, key in enumerate(touched)}
        inverse = np.fromiter(map(position.__getitem__, keys), dtype=np.int64, count=len(keys))
        grouped = rows[np.argsort(inverse, kind="stable")]  # (Q, L)
        starts = np.zeros(len(touched) + 1, dtype=np.int64)
        np.cumsum(np.bincount(inverse, minlength=len(touched)), out=starts[1:])
        bounds = starts.tolist()
        capacity = self.config.bucket_capacity
        incremental = self.config.min_samples == 1
        datasets: list[npt.NDArray[np.float32]] = []
        previous: list[npt.NDArray[np.float64] | None] = []
        storage: list[npt.NDArray[np.float32]] = []
        for b, key in enumerate(touched):
            new = grouped[bounds[b] : bounds[b + 1]]
            old = self._buckets.get(key)
            size = 0 if old is None else len(old)
            total = size + new.shape[0]
            prev_mst = None
            if old is not None and incremental and old.mst.shape[0] == size - 1 and size > 1:
                prev_mst = old.mst
            reusable = self._storage.get(key)
            if old is None or reusable is None or reusable.shape[0] < total:
                reusable = None
            if capacity is not None and total > capacity:
                # FIFO: the oldest rows leave first. The tree of the old prefix no longer
                # describes a prefix, so the bucket gets a full fit.
                parts = [new] if old is None else [old.rows, new]
                store = np.concatenate(parts, axis=0)[-capacity:].copy()
                prev_mst = None
                total = capacity
            elif reusable is not None:
                # Writes only behind the bucket's rows: nothing visible changes until the
                # commit below, so a failed refit leaves the memory as it was.
                reusable[size:total] = new
                store = reusable
            else:
                # Room for an eighth more rows (at least 8), so a bucket is copied about once
                # every size / 8 appended rows rather than on every step.
                store = np.empty((total + max(total // 8, 8), new.shape[1]), dtype=np.float32)
                if old is not None:
                    store[:size] = old.rows
                store[size:total] = new
            datasets.append(store[:total])
            storage.append(store)
            previous.append(prev_mst)
        labels, msts = self._fit(datasets, previous)
        largest = max(len(d) for d in datasets)
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
        for key, data, lab, mst, store in zip(
            touched, datasets, labels, msts, storage, strict=True
        ):
            self._buckets[key] = Bucket.of_fit(data, lab, mst)
            self._storage[key] = store
            self._eigen_cache.pop(key, None)
        if self._dim is None:
            self._dim = int(rows.shape[1])

    def _fit(
        self,
        datasets: list[npt.NDArray[np.float32]],
        previous: list[npt.NDArray[np.float64] | None],
    ) -> tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.float64]]]:
        """Labels and trees of each dataset (a full or incremental HDBSCAN fit, or one cluster)."""
        if self.config.cluster_method is ClusterMethod.SINGLE:
            return [np.zeros(len(d), dtype=np.int64) for d in datasets], [_EMPTY_TREE] * len(
                datasets
            )
        return refit_buckets(
            [unit_rows(d) for d in datasets],
            previous,
            min_cluster_size=self.config.min_cluster_size,
            min_samples=self.config.min_samples,
            leaf=self.config.cluster_selection_method == "leaf",
        )

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
        labels, msts = memory._fit(datasets, [None] * len(datasets))
        for key, data, lab, mst in zip(keys, datasets, labels, msts, strict=True):
            memory._buckets[key] = Bucket.of_fit(data, lab, mst)
            memory._storage[key] = data
        memory._dim = int(rows.shape[1])
        return memory
