"""The error memory: one bucket of past fingerprints per (problem id, correct?) pair.

DESIGN.md section 2, steps 2, 3 and 5: every bucket holds its L2-normalised fingerprints, the
HDBSCAN labels of its last fit and the minimum spanning tree of that fit (so the next refit can
extend it instead of starting over).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.clustering import knn_vote
from meds_gym.clustering.hdbscan import _refit_trusted
from meds_gym.clustering.knn import knn_vote_kernel
from meds_gym.errors import CorruptFileError, InvalidArgumentError, UnknownProblemError
from meds_gym.meds.config import MEDSConfig, NoiseVote
from meds_gym.meds.persistence import atomic_savez, read_npz

logger = logging.getLogger(__name__)

BucketKey = tuple[str, bool]
"""A bucket is named by (problem id, whether the rollouts in it were correct)."""

NOT_ASSIGNED = -2
"""Cluster label reported for a rollout that was not assigned (not penalised, no fingerprint, or a
bucket without labelled memory)."""

_KIND = "ErrorMemory"


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Bucket:
    """Read-only view of one bucket.

    Attributes:
        rows: (N, L) float64, the stored fingerprints, L2-normalised, oldest first.
        labels: (N,) int64, HDBSCAN labels of the last fit (-1 = noise).
        mst: (N - 1, 3) float64 minimum spanning tree of the last fit, rows ``(i, j, distance)``.
    """

    rows: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    mst: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def cluster_sizes(self) -> npt.NDArray[np.int64]:
        """Stored rows per label: entry 0 counts noise (-1), entry ``c + 1`` cluster ``c``."""
        return np.bincount(self.labels + 1, minlength=1).astype(np.int64)


@dataclass(frozen=True)
class MemoryStats:
    """Summary of an :class:`ErrorMemory`.

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


def top1_eigen_ratio(rows: npt.NDArray[np.float64]) -> float:
    """Largest eigenvalue / trace of the covariance of ``rows`` (N, L); NaN when undefined."""
    if rows.shape[0] < 2:
        return float("nan")
    cov = np.atleast_2d(np.cov(rows, rowvar=False))  # (L, L)
    trace = float(np.trace(cov))
    if not trace > 0.0:
        return float("nan")
    return float(np.linalg.eigvalsh(cov)[-1] / trace)


class ErrorMemory:
    """Buckets of past fingerprints with their HDBSCAN labels.

    The feature dimension is fixed by the first row ever stored. Rows are stored L2-normalised
    (float64), so Euclidean HDBSCAN on them orders pairs as cosine distance does.

    Args:
        config: The MEDS configuration (clustering parameters, capacity, warning threshold).

    Example:
        >>> import numpy as np
        >>> memory = ErrorMemory()
        >>> memory.add(["p0", "p0"], np.array([False, False]), np.array([[1.0, 0.0], [1.0, 0.1]]))
        >>> len(memory.bucket("p0", False))
        2
    """

    def __init__(self, config: MEDSConfig | None = None) -> None:
        if config is None:
            config = MEDSConfig()
        if not isinstance(config, MEDSConfig):
            raise InvalidArgumentError("config", "a MEDSConfig", config)
        self.config = config
        self._buckets: dict[BucketKey, Bucket] = {}
        # Per bucket, an array whose leading rows are the bucket's rows, with spare rows behind
        # them: appending to a bucket writes into the spare rows instead of copying the whole
        # bucket every step. Rows below a bucket's length are never written again, so every
        # Bucket handed out (a read-only view of those rows) keeps its contents.
        self._storage: dict[BucketKey, npt.NDArray[np.float64]] = {}
        self._dim: int | None = None
        self._warned_size = False

    # ------------------------------------------------------------------ read access
    @property
    def dim(self) -> int | None:
        """Feature dimension L, fixed by the first stored row (``None`` while empty)."""
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
        """Sizes, cluster counts and per-bucket top-1 eigen ratio (a diversity measure)."""
        sizes = [len(b) for b in self._buckets.values()]
        clusters = sum(int(np.unique(b.labels[b.labels >= 0]).size) for b in self._buckets.values())
        return MemoryStats(
            rows=int(sum(sizes)),
            buckets=len(sizes),
            clusters=clusters,
            mean_bucket_size=float(np.mean(sizes)) if sizes else 0.0,
            max_bucket_size=int(max(sizes)) if sizes else 0,
            top1_eigen_ratio={key: top1_eigen_ratio(b.rows) for key, b in self._buckets.items()},
        )

    # ------------------------------------------------------------------ assignment
    def assign(
        self, keys: Sequence[BucketKey], rows: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Vote each row into a cluster of its bucket as the memory stands now (no update).

        Each row gets the majority label of its ``config.k`` nearest stored rows (cosine distance)
        and the number of stored rows that carry that label. Rows of a bucket whose last fit had
        fewer than 2 rows get label ``NOT_ASSIGNED`` (-2) and size 0. With
        ``NoiseVote.NO_PENALTY`` a noise vote (-1) has size 0.

        Args:
            keys: (Q,) bucket key of each row.
            rows: (Q, L) float64 L2-normalised rows (already validated).

        Returns:
            ``(labels, sizes)``, both (Q,) int64.
        """
        q = len(keys)
        labels = np.full(q, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(q, dtype=np.int64)
        groups: dict[BucketKey, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        # Stored rows and labels are the memory's own (finite, normalised, int64, contiguous), so
        # when the queries are well-formed too the vote kernel runs without knn_vote's checks;
        # otherwise knn_vote raises its usual error.
        queries_ok = (
            isinstance(rows, np.ndarray)
            and rows.dtype == np.float64
            and rows.ndim == 2
            and (self._dim is None or rows.shape[1] == self._dim)
            and bool(np.isfinite(rows).all())
        )
        k = self.config.k
        for key, idx in groups.items():
            stored = self._buckets.get(key)
            if stored is None or len(stored) < 2:
                continue
            index = np.asarray(idx, dtype=np.int64)
            if queries_ok:
                votes = knn_vote_kernel(
                    stored.rows, stored.labels, rows[index], min(k, len(stored))
                )
            else:
                votes = np.asarray(
                    knn_vote(stored.rows, stored.labels, np.ascontiguousarray(rows[index]), k=k),
                    dtype=np.int64,
                )
            counts = stored.cluster_sizes()
            got = counts[votes + 1]
            if self.config.noise_vote is NoiseVote.NO_PENALTY:
                got = np.where(votes == -1, 0, got)
            labels[index] = votes
            sizes[index] = got
        return labels, sizes

    # ------------------------------------------------------------------ update
    def add(
        self,
        problem_ids: Sequence[str],
        correct: npt.NDArray[np.bool_] | Sequence[bool],
        rows: npt.ArrayLike,
        *,
        _stacklevel: int = 2,
    ) -> None:
        """Append rows to their buckets and refit every touched bucket once.

        All new buckets are built and refitted before any is committed, so an error leaves the
        memory unchanged.

        Args:
            problem_ids: (Q,) problem id of each row.
            correct: (Q,) correctness of each row.
            rows: (Q, L) finite, non-zero fingerprints (normalised here).

        Raises:
            InvalidArgumentError: If lengths differ, a row is not finite or zero, or L differs
                from the memory's dimension.
        """
        rows = np.asarray(rows, dtype=np.float64)
        flags = np.asarray(correct)
        if flags.dtype != np.bool_:
            raise InvalidArgumentError("correct", "booleans (bool or numpy bool)", correct)
        if rows.ndim != 2 or rows.shape[0] != len(problem_ids) or flags.shape != (rows.shape[0],):
            raise InvalidArgumentError(
                "rows", f"a (Q, L) array with Q = len(problem_ids) = {len(problem_ids)}", rows.shape
            )
        if rows.shape[0] == 0:
            return
        normalised = normalise_rows(rows, "rows", self._dim)
        keys = [(str(pid), bool(flag)) for pid, flag in zip(problem_ids, flags, strict=True)]
        self._commit(keys, normalised, _stacklevel=_stacklevel)

    def _commit(
        self, keys: Sequence[BucketKey], rows: npt.NDArray[np.float64], *, _stacklevel: int
    ) -> None:
        """Append validated, normalised rows and refit the touched buckets (all or nothing)."""
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
        datasets: list[npt.NDArray[np.float64]] = []
        previous: list[npt.NDArray[np.float64] | None] = []
        storage: list[npt.NDArray[np.float64]] = []
        for b, key in enumerate(touched):
            new = grouped[bounds[b] : bounds[b + 1]]
            old = self._buckets.get(key)
            size = 0 if old is None else len(old)
            total = size + new.shape[0]
            prev_mst = None if old is None or not incremental else old.mst
            # The stored array behind this bucket, if its leading rows are the bucket's rows
            # and it has room for the new ones.
            reusable = self._storage.get(key)
            if old is None or reusable is None or reusable.shape[0] < total:
                reusable = None
            elif old.rows.base is not reusable:
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
                # Room for a quarter more rows (at least 16), so a bucket is copied about once
                # every size / 4 appended rows rather than on every step.
                store = np.empty((total + max(total // 4, 16), new.shape[1]))
                if old is not None:
                    store[:size] = old.rows
                store[size:total] = new
            datasets.append(store[:total])
            storage.append(store)
            previous.append(prev_mst)
        # The rows were validated and normalised here and every previous tree is one the
        # clustering module returned for a prefix of its bucket, so the batched refit can skip
        # its argument checks (the public `refit_many` re-validates every tree and matrix).
        labels, msts = _refit_trusted(
            datasets,
            previous,
            min_cluster_size=self.config.min_cluster_size,
            min_samples=self.config.min_samples,
            leaf=self.config.cluster_selection_method == "leaf",
            allow_single_cluster=False,
        )
        built = {}
        for key, data, lab, mst in zip(touched, datasets, labels, msts, strict=True):
            # _refit_trusted returns fresh int64 (N,) and float64 (N - 1, 3) arrays per bucket.
            data.flags.writeable = False
            lab.flags.writeable = False
            mst.flags.writeable = False
            built[key] = Bucket(data, lab, mst)
        self._buckets.update(built)
        self._storage.update(zip(touched, storage, strict=True))
        if self._dim is None:
            self._dim = int(rows.shape[1])
        largest = max(len(b) for b in built.values())
        if largest > self.config.warn_bucket_size and not self._warned_size:
            self._warned_size = True
            warnings.warn(
                f"A MEDS memory bucket holds {largest} rows (warn_bucket_size="
                f"{self.config.warn_bucket_size}). Each refit of a bucket costs O(N^2) time and "
                "memory in its size N, so steps will keep slowing down as buckets grow. Set "
                "MEDSConfig(bucket_capacity=...) (for example 2000) to keep only the newest rows "
                "of each bucket, or raise warn_bucket_size if this size is intended.",
                UserWarning,
                stacklevel=_stacklevel + 1,
            )

    # ------------------------------------------------------------------ persistence
    def _state_arrays(self) -> tuple[dict[str, object], dict[str, npt.NDArray[Any]]]:
        keys = list(self._buckets)
        buckets = [self._buckets[k] for k in keys]
        dim = self._dim if self._dim is not None else 0
        rows = np.concatenate([b.rows for b in buckets]) if buckets else np.zeros((0, dim))
        labels = np.concatenate([b.labels for b in buckets]) if buckets else np.zeros(0, np.int64)
        msts = np.concatenate([b.mst for b in buckets]) if buckets else np.zeros((0, 3))
        meta: dict[str, object] = {
            "config": self.config.to_dict(),
            "bucket_keys": [[pid, flag] for pid, flag in keys],
            "dim": self._dim,
        }
        arrays = {
            "rows": rows.astype(np.float64),
            "labels": labels.astype(np.int64),
            "bucket_sizes": np.array([len(b) for b in buckets], dtype=np.int64),
            "msts": msts.astype(np.float64),
            "mst_sizes": np.array([b.mst.shape[0] for b in buckets], dtype=np.int64),
        }
        return meta, arrays

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the memory to one ``.npz`` file atomically (no pickle).

        Args:
            path: Destination file; written exactly as named.
        """
        meta, arrays = self._state_arrays()
        meta["kind"] = _KIND
        atomic_savez(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ErrorMemory:
        """Read a memory written by :meth:`save`.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            CorruptFileError: If the file is truncated, corrupt, of another format version or
                not an :class:`ErrorMemory` file.
        """
        meta, arrays = read_npz(path, _KIND)
        return cls._from_state(meta, arrays, str(path))

    @classmethod
    def _from_state(
        cls, meta: dict[str, object], arrays: dict[str, npt.NDArray[Any]], where: str
    ) -> ErrorMemory:
        try:
            config = MEDSConfig.from_dict(dict(meta["config"]))  # type: ignore[call-overload]
            keys_raw = meta["bucket_keys"]
            dim = meta["dim"]
            rows = arrays["rows"]
            labels = arrays["labels"]
            sizes = arrays["bucket_sizes"]
            msts = arrays["msts"]
            mst_sizes = arrays["mst_sizes"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{where!r}: missing or invalid entry ({exc}).") from exc

        def bad(why: str) -> CorruptFileError:
            return CorruptFileError(f"{where!r} is inconsistent: {why}.")

        if not isinstance(keys_raw, list) or not all(
            isinstance(k, list) and len(k) == 2 and isinstance(k[0], str) and isinstance(k[1], bool)
            for k in keys_raw
        ):
            raise bad("bucket keys are not [problem_id, correct] pairs")
        keys = [(k[0], k[1]) for k in keys_raw]
        if len(set(keys)) != len(keys):
            raise bad("duplicate bucket keys")
        nb = len(keys)
        if not (
            sizes.dtype == np.int64
            and mst_sizes.dtype == np.int64
            and sizes.shape == (nb,)
            and mst_sizes.shape == (nb,)
            and np.all(sizes >= 1)
            and np.all(mst_sizes >= 0)
        ):
            raise bad("bucket size arrays do not match the bucket keys")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise bad(f"feature dimension {dim!r}")
        if nb and dim is None:
            raise bad("buckets without a feature dimension")
        total = int(sizes.sum())
        if not (
            rows.dtype == np.float64
            and rows.ndim == 2
            and rows.shape[0] == total
            and (nb == 0 or rows.shape[1] == dim)
            and labels.dtype == np.int64
            and labels.shape == (total,)
            and msts.dtype == np.float64
            and msts.shape == (int(mst_sizes.sum()), 3)
        ):
            raise bad("array shapes or dtypes do not match the bucket sizes")
        if not np.all(np.isfinite(rows)) or not np.all(np.isfinite(msts)):
            raise bad("non-finite values")
        memory = cls(config)
        memory._dim = dim
        r0 = m0 = 0
        for key, n, m in zip(keys, sizes.tolist(), mst_sizes.tolist(), strict=True):
            lab = labels[r0 : r0 + n]
            if np.any(lab < -1) or np.any(lab >= n):
                raise bad(f"labels of bucket {key!r} out of range")
            memory._buckets[key] = Bucket(
                rows=_frozen(np.ascontiguousarray(rows[r0 : r0 + n])),
                labels=_frozen(np.ascontiguousarray(lab)),
                mst=_frozen(np.ascontiguousarray(msts[m0 : m0 + m])),
            )
            r0 += n
            m0 += m
        return memory


def normalise_rows(
    rows: npt.NDArray[np.float64], name: str, dim: int | None
) -> npt.NDArray[np.float64]:
    """Check (Q, L) fingerprints (finite, non-zero, dimension ``dim``) and L2-normalise them.

    Args:
        rows: (Q, L) float64.
        name: Parameter name used in errors.
        dim: Required L, or ``None`` for any.

    Returns:
        (Q, L) float64, each row of unit L2 norm.

    Raises:
        InvalidArgumentError: Naming ``name`` and the first bad row.
    """
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise InvalidArgumentError(name, "a (Q, L) array of fingerprints with L >= 1", rows.shape)
    if dim is not None and rows.shape[1] != dim:
        raise InvalidArgumentError(
            name,
            f"fingerprints of dimension {dim} (fixed by the first row stored in the memory)",
            f"dimension {rows.shape[1]}",
        )
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidArgumentError(
            f"{name}[{i}]", "finite values (or all NaN for a missing fingerprint)", rows[i]
        )
    # Scale by the largest magnitude first so that the squared norm cannot overflow.
    scale = np.max(np.abs(rows), axis=1)  # (Q,)
    zero = ~(scale > 0.0)
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise InvalidArgumentError(
            f"{name}[{i}]", "a non-zero vector (cosine distance is undefined for zero)", rows[i]
        )
    scaled = rows / scale[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))  # (Q,)
    return scaled / norms[:, None]
