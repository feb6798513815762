"""The framework-free MEDS core: one ``shape`` call is one training step (DESIGN.md section 2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError
from meds_gym.meds.config import MEDSConfig
from meds_gym.meds.memory import NOT_ASSIGNED, BucketKey, ErrorMemory, MemoryStats, normalise_rows
from meds_gym.meds.penalty import meds_penalty
from meds_gym.meds.persistence import atomic_savez, read_npz

logger = logging.getLogger(__name__)

_KIND = "MEDSShaper"

FeaturesLike = npt.ArrayLike | Sequence[npt.ArrayLike | None] | None
"""A (B, L) array, or one (L,) vector or ``None`` per rollout, or ``None`` for the whole batch."""


@dataclass(frozen=True)
class ShapeResult:
    """What one :meth:`MEDSShaper.shape` call did to each rollout of the batch.

    Attributes:
        shaped_rewards: (B,) float64, ``rewards - penalties``.
        penalties: (B,) float64, ``meds_penalty(cluster_sizes)``, 0 where not assigned.
        clusters: (B,) int64 label voted from memory: -1 noise, -2 not assigned (not penalised
            by the config, no fingerprint, or no labelled memory for the bucket yet).
        cluster_sizes: (B,) int64 number of stored rows with that label (0 where not assigned).
    """

    shaped_rewards: npt.NDArray[np.float64]
    penalties: npt.NDArray[np.float64]
    clusters: npt.NDArray[np.int64]
    cluster_sizes: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.shaped_rewards.shape[0])


@dataclass(frozen=True)
class _Batch:
    """A validated batch."""

    keys: list[BucketKey]  # (B,)
    flags: npt.NDArray[np.bool_]  # (B,) correct?
    rewards: npt.NDArray[np.float64]  # (B,)
    present: npt.NDArray[np.int64]  # (M,) indices of the rollouts that have a fingerprint
    rows: npt.NDArray[np.float64]  # (M, L) their fingerprints, L2-normalised


def _validate_problem_ids(problem_ids: Any) -> list[str]:
    if isinstance(problem_ids, (str, bytes)) or not hasattr(problem_ids, "__len__"):
        raise InvalidArgumentError("problem_ids", "a sequence of str, one per rollout", problem_ids)
    ids = list(problem_ids)
    if not set(map(type, ids)) <= {str}:  # fast path: all plain str (not numpy.str_)
        for i, pid in enumerate(ids):
            if not isinstance(pid, str):
                raise InvalidArgumentError(f"problem_ids[{i}]", "a str problem id", pid)
        ids = [str(pid) for pid in ids]  # plain str (not numpy.str_) for keys and JSON
    return ids


def _validate_correct(correct: Any, batch: int) -> npt.NDArray[np.bool_]:
    expected = f"{batch} booleans (bool or numpy bool), one per rollout"
    if isinstance(correct, np.ndarray):
        if correct.dtype != np.bool_:
            raise InvalidArgumentError(
                "correct",
                expected,
                f"an array of dtype {correct.dtype}",
                "Convert 0/1 flags explicitly, e.g. `correct == 1`.",
            )
        flags = correct
    else:
        if isinstance(correct, (str, bytes)) or not hasattr(correct, "__len__"):
            raise InvalidArgumentError("correct", expected, correct)
        items = list(correct)
        for i, flag in enumerate(items):
            if not isinstance(flag, (bool, np.bool_)):
                raise InvalidArgumentError(f"correct[{i}]", "a bool (True = correct)", flag)
        flags = np.array(items, dtype=bool)
    if flags.shape != (batch,):
        raise InvalidArgumentError(
            "correct", f"{batch} flags (len(problem_ids))", f"shape {flags.shape}"
        )
    return flags


def _validate_rewards(rewards: Any, batch: int) -> npt.NDArray[np.float64]:
    if isinstance(rewards, (str, bytes)):
        raise InvalidArgumentError("rewards", "a sequence of finite floats", rewards)
    try:
        arr = np.asarray(rewards)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError("rewards", "a sequence of finite floats", rewards) from exc
    if arr.dtype.kind not in "fiu" or arr.shape != (batch,):
        raise InvalidArgumentError(
            "rewards",
            f"{batch} finite real numbers (len(problem_ids))",
            f"dtype {arr.dtype}, shape {arr.shape}",
        )
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(f"rewards[{i}]", "a finite real number", float(out[i]))
    return out


def _as_vector(value: Any, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(name, "a 1-D numeric fingerprint or None", value) from exc
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        raise InvalidArgumentError(
            name,
            "a 1-D numeric fingerprint of shape (L,) or None",
            f"dtype {arr.dtype}, shape {arr.shape}",
        )
    return arr.astype(np.float64)


def _validate_features(
    features: Any, batch: int, dim: int | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Return the indices of rollouts with a fingerprint and those rows, normalised."""
    if features is None:
        return np.zeros(0, np.int64), np.zeros((0, dim or 0))
    if isinstance(features, np.ndarray) and features.dtype != object:
        if (
            features.dtype.kind not in "fiu"
            or features.ndim != 2
            or features.shape[0] != batch
            or features.shape[1] < 1
        ):
            raise InvalidArgumentError(
                "features",
                f"a ({batch}, L) numeric array (or a list of vectors/None)",
                f"dtype {features.dtype}, shape {features.shape}",
            )
        matrix = features.astype(np.float64)
        if batch == 0:
            return np.zeros(0, np.int64), np.zeros((0, matrix.shape[1]))
        missing = np.isnan(matrix).all(axis=1)
    else:
        if isinstance(features, (str, bytes)) or not hasattr(features, "__len__"):
            raise InvalidArgumentError(
                "features", f"a ({batch}, L) array or a list of {batch} vectors/None", features
            )
        items = list(features)
        if len(items) != batch:
            raise InvalidArgumentError(
                "features", f"{batch} entries (len(problem_ids))", f"{len(items)} entries"
            )
        vectors: list[npt.NDArray[np.float64] | None] = [
            None if item is None else _as_vector(item, f"features[{i}]")
            for i, item in enumerate(items)
        ]
        missing = np.array(
            [v is None or (v.size > 0 and bool(np.isnan(v).all())) for v in vectors], dtype=bool
        )
        if missing.all():
            return np.zeros(0, np.int64), np.zeros((0, dim or 0))
        first = int(np.flatnonzero(~missing)[0])
        width = vectors[first].shape[0]  # type: ignore[union-attr]
        matrix = np.zeros((batch, width))
        for i, v in enumerate(vectors):
            if missing[i] or v is None:
                continue
            if v.shape[0] != width:
                raise InvalidArgumentError(
                    f"features[{i}]",
                    f"a fingerprint of dimension {width} like features[{first}]",
                    f"dimension {v.shape[0]}",
                )
            matrix[i] = v
    present = np.flatnonzero(~missing).astype(np.int64)
    # Check values here so that errors name the rollout's index in the batch.
    chosen = matrix[present]  # (M, L)
    bad_value = ~np.isfinite(chosen).all(axis=1)
    if bad_value.any():
        i = int(present[np.flatnonzero(bad_value)[0]])
        raise InvalidArgumentError(
            f"features[{i}]", "finite values (or all NaN for a missing fingerprint)", matrix[i]
        )
    zero = ~(chosen != 0.0).any(axis=1)
    if zero.any():
        i = int(present[np.flatnonzero(zero)[0]])
        raise InvalidArgumentError(
            f"features[{i}]", "a non-zero vector (cosine distance is undefined for zero)", matrix[i]
        )
    rows = normalise_rows(chosen, "features", dim)
    return present, rows


class MEDSShaper:
    """MEDS reward shaping for batches of rollouts, without any environment.

    One :meth:`shape` call is one training step with the paper's semantics: every new rollout is
    voted into a cluster of its bucket as the memory stood *before* the batch, penalised by
    ``min(alpha * log(n + 1), beta)``, and only then are the batch's fingerprints stored and each
    touched bucket refitted once.

    Set :attr:`training` to ``False`` to evaluate: rollouts are still assigned and penalised, but
    nothing is stored or refitted.

    Args:
        config: The MEDS configuration.

    Example:
        >>> import numpy as np
        >>> shaper = MEDSShaper(MEDSConfig())
        >>> out = shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3,
        ...                    np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]))
        >>> out.penalties.tolist()  # first visit: nothing stored yet
        [0.0, 0.0, 0.0]
    """

    def __init__(self, config: MEDSConfig | None = None) -> None:
        if config is None:
            config = MEDSConfig()
        if not isinstance(config, MEDSConfig):
            raise InvalidArgumentError("config", "a MEDSConfig", config)
        self.config = config
        self.memory = ErrorMemory(config)
        self._training = True

    @property
    def training(self) -> bool:
        """Whether :meth:`shape` stores fingerprints and refits (``False`` freezes the memory)."""
        return self._training

    @training.setter
    def training(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidArgumentError("training", "a bool", value)
        self._training = bool(value)

    def stats(self) -> MemoryStats:
        """Statistics of the memory (see :meth:`ErrorMemory.stats`)."""
        return self.memory.stats()

    def _validate(self, problem_ids: Any, correct: Any, rewards: Any, features: Any) -> _Batch:
        ids = _validate_problem_ids(problem_ids)
        flags = _validate_correct(correct, len(ids))
        values = _validate_rewards(rewards, len(ids))
        present, rows = _validate_features(features, len(ids), self.memory.dim)
        keys = list(zip(ids, flags.tolist(), strict=True))  # tolist() gives Python bools
        return _Batch(keys=keys, flags=flags, rewards=values, present=present, rows=rows)

    def shape(
        self,
        problem_ids: Sequence[str],
        correct: Sequence[bool] | npt.NDArray[np.bool_],
        rewards: npt.ArrayLike,
        features: FeaturesLike,
    ) -> ShapeResult:
        """Shape the rewards of one batch (one training step) and, in training, learn from it.

        Args:
            problem_ids: (B,) problem id (str) of each rollout.
            correct: (B,) bool, whether each rollout was right.
            rewards: (B,) finite float rewards from the verifier.
            features: (B, L) fingerprints, or a list of (L,) vectors / ``None``; a ``None`` or
                all-NaN row means "no fingerprint": that rollout is never penalised or stored.

        Returns:
            The per-rollout penalties, clusters, cluster sizes and shaped rewards.

        Raises:
            InvalidArgumentError: For any bad input (naming the argument, what was expected and
                what was received); the memory is then left exactly as it was.
        """
        batch = self._validate(problem_ids, correct, rewards, features)
        size = len(batch.keys)
        penalties = np.zeros(size, dtype=np.float64)
        clusters = np.full(size, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(size, dtype=np.int64)
        if batch.present.size:
            target = self.config.penalize
            present_flags = batch.flags[batch.present]  # (M,)
            penalised = np.where(
                present_flags, target.penalises(True), target.penalises(False)
            )  # (M,) bool
            if penalised.any():
                which = batch.present[penalised]
                keys = batch.keys
                labels, counts = self.memory.assign(
                    [keys[i] for i in which.tolist()], batch.rows[penalised]
                )
                clusters[which] = labels
                sizes[which] = counts
                penalties[which] = meds_penalty(counts, self.config.alpha, self.config.beta)
            if self._training:
                keys = batch.keys
                self.memory._commit(
                    [keys[i] for i in batch.present.tolist()], batch.rows, _stacklevel=2
                )
        shaped = batch.rewards - penalties
        return ShapeResult(
            shaped_rewards=shaped, penalties=penalties, clusters=clusters, cluster_sizes=sizes
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration and the memory to one ``.npz`` file, atomically, no pickle.

        Args:
            path: Destination file; written exactly as named.
        """
        meta, arrays = self.memory._state_arrays()
        meta["kind"] = _KIND
        atomic_savez(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MEDSShaper:
        """Read a shaper written by :meth:`save`; continuing it gives bit-identical penalties.

        Args:
            path: The file.

        Returns:
            A shaper in training mode with the saved configuration and memory.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            CorruptFileError: If the file is truncated, corrupt, of another format version or
                not a :class:`MEDSShaper` file.
        """
        meta, arrays = read_npz(path, _KIND)
        memory = ErrorMemory._from_state(meta, arrays, str(path))
        shaper = cls(memory.config)
        shaper.memory = memory
        return shaper
