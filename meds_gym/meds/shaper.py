"""The framework-free MEDS core: one ``shape`` call is one training step (docs/design.md, 2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.clustering import warm_up
from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds.answer_memory import AnswerMemory, answer_key
from meds_gym.meds.batch import (
    Batch,
    BucketKey,
    FeaturesLike,
    Fingerprints,
    validate_batch,
    validate_features,
)
from meds_gym.meds.config import ClusterMethod, MEDSConfig
from meds_gym.meds.memory import NOT_ASSIGNED, ErrorMemory, MemoryStats
from meds_gym.meds.penalty import meds_penalty
from meds_gym.meds.persistence import atomic_savez, read_npz

logger = logging.getLogger(__name__)

_KIND = "MEDSShaper"

_warm_up_started = False
"""Whether this process has started compiling the clustering kernels in the background."""

MAX_LOADED_BUCKET_ROWS = 32_768
"""Largest bucket :meth:`MEDSShaper.load` refits by default (its refit costs O(N^2))."""

_MEMBERS: dict[str, tuple[tuple[str, ...], int]] = {
    "rows": (("f4", "f8"), 2),  # float64 in format version 1
    "bucket_sizes": (("i8",), 1),
}
"""The arrays a saved shaper holds: every stored fingerprint, grouped by bucket, and the sizes."""


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


class MEDSShaper:
    """MEDS reward shaping for batches of rollouts: the one public state object of MEDS.

    One :meth:`shape` call is one training step with the paper's semantics: every new rollout is
    voted into a cluster of its bucket as the memory stood *before* the batch, penalised by
    ``min(alpha * log(n + 1), beta)``, and only then are the batch's fingerprints stored and each
    touched bucket refitted once. Rollouts outside ``kept`` (groups a trainer's filter drops) are
    neither shaped nor stored, as in the reference code, which clusters after DAPO's filter.

    Set :attr:`training` to ``False`` to evaluate: rollouts are still assigned and penalised, but
    nothing is stored or refitted. :meth:`save` and :meth:`load` write and read the whole state
    (configuration and stored fingerprints) in one file.

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
        self._memory: ErrorMemory | AnswerMemory = (
            AnswerMemory() if config.cluster_method is ClusterMethod.ANSWER else ErrorMemory(config)
        )
        self._training = True
        global _warm_up_started
        if config.cluster_method is ClusterMethod.HDBSCAN and not _warm_up_started:
            # Compile (or load) the clustering kernels while the caller builds models and
            # generates the first rollouts; the first shape() waits for it if it is not done.
            _warm_up_started = True
            warm_up(background=True)

    @property
    def memory(self) -> ErrorMemory | AnswerMemory:
        """The error memory, for reading (buckets, sizes, stats); only :meth:`shape` writes it.

        An :class:`~meds_gym.meds.answer_memory.AnswerMemory` with ``ClusterMethod.ANSWER``.
        """
        return self._memory

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
        return self._memory.stats()

    def validate(
        self,
        problem_ids: Any,
        correct: Any,
        rewards: Any,
        features: FeaturesLike | Fingerprints,
        *,
        kept: Any = None,
        answers: Any = None,
    ) -> Batch:
        """Check one step's rollouts against this shaper (see :func:`validate_batch`)."""
        dim = self._memory.dim
        return validate_batch(
            problem_ids, correct, rewards, features, kept=kept, dim=dim, answers=answers
        )

    def shape(
        self,
        problem_ids: Sequence[str],
        correct: Sequence[bool] | npt.NDArray[np.bool_],
        rewards: npt.ArrayLike,
        features: FeaturesLike | Fingerprints,
        *,
        kept: Sequence[bool] | npt.NDArray[np.bool_] | None = None,
        answers: Sequence[str | None] | None = None,
    ) -> ShapeResult:
        """Shape the rewards of one batch (one training step) and, in training, learn from it.

        Args:
            problem_ids: (B,) problem id (str) of each rollout.
            correct: (B,) bool, whether each rollout was right.
            rewards: (B,) finite rewards from the verifier.
            features: (B, L) fingerprints, or a list of (L,) vectors / ``None``; a ``None`` or
                all-NaN row means "no fingerprint": that rollout is never penalised or stored.
                Fingerprints that :func:`~meds_gym.meds.validate_features` already accepted
                are not checked again.
            kept: (B,) bool, the rollouts the trainer keeps (default: all). Pass
                :func:`~meds_gym.meds.mixed_groups` to follow the reference code, which shapes
                and stores only groups holding both right and wrong rollouts.
            answers: (B,) final answer of each rollout (``None``: no answer); read instead of
                ``features`` with ``ClusterMethod.ANSWER`` (pass ``features=None``), and only then.

        Returns:
            The per-rollout penalties, clusters, cluster sizes and shaped rewards.

        Raises:
            InvalidArgumentError: For any bad input (naming the argument, what was expected and
                what was received); the memory is then left exactly as it was.
        """
        if self.config.cluster_method is ClusterMethod.ANSWER:
            if answers is None:
                raise InvalidArgumentError(
                    "answers",
                    "one final answer (str or None) per rollout with ClusterMethod.ANSWER",
                    None,
                )
            return self._shape_answers(
                self.validate(problem_ids, correct, rewards, None, kept=kept, answers=answers)
            )
        if answers is not None:
            raise InvalidArgumentError(
                "answers",
                "None unless the config's cluster_method is ClusterMethod.ANSWER",
                f"{type(answers).__name__} of answers with cluster_method "
                f"{self.config.cluster_method.name}",
                "Pass fingerprints as `features`, or use MEDSConfig(cluster_method=ANSWER).",
            )
        return self.shape_batch(self.validate(problem_ids, correct, rewards, features, kept=kept))

    def _shape_answers(self, batch: Batch) -> ShapeResult:
        """:meth:`shape_batch` for the answer-string memory: answers stand in for fingerprints."""
        assert batch.answers is not None  # shape() validated them
        keys = [answer_key(answer) for answer in batch.answers]
        which = np.flatnonzero(batch.kept & np.array([k is not None for k in keys], dtype=bool))
        labels = counts = np.zeros(0, dtype=np.int64)
        if which.size:
            target = self.config.penalize
            penalised = np.array([target.penalises(bool(batch.correct[i])) for i in which])
            bucket_keys = [batch.keys[i] for i in which.tolist()]
            answers = [keys[i] for i in which.tolist()]
            memory = self._memory
            assert isinstance(memory, AnswerMemory)
            if self._training:
                labels, counts = memory.update(bucket_keys, answers, penalised)
            else:
                labels, counts = memory.assign(bucket_keys, answers)
                labels[~penalised], counts[~penalised] = NOT_ASSIGNED, 0
        return self._result(batch, which, labels, counts)

    def shape_batch(self, batch: Batch) -> ShapeResult:
        """:meth:`shape` for a batch that :meth:`validate` already checked (fingerprint memory)."""
        memory = self._memory
        if isinstance(memory, AnswerMemory):
            raise InvalidArgumentError(
                "batch", "a call to shape(..., answers=...) with ClusterMethod.ANSWER", "a Batch"
            )
        which = labels = counts = np.zeros(0, dtype=np.int64)
        if batch.present.size:
            target = self.config.penalize
            present_flags = batch.correct[batch.present]  # (M,)
            penalised = np.where(
                present_flags, target.penalises(True), target.penalises(False)
            )  # (M,) bool
            keys = batch.keys
            present_keys = (
                keys
                if len(batch.present) == len(keys)
                else [keys[i] for i in batch.present.tolist()]
            )
            if self._training:
                labels, counts = memory.update(present_keys, batch.rows, penalised)
                labels, counts = labels[penalised], counts[penalised]
            elif penalised.any():
                labels, counts = memory.assign(
                    [k for k, p in zip(present_keys, penalised.tolist(), strict=True) if p],
                    batch.rows[penalised],
                )
            which = batch.present[penalised]
        return self._result(batch, which, labels, counts)

    def _result(
        self,
        batch: Batch,
        which: npt.NDArray[np.int64],
        labels: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
    ) -> ShapeResult:
        """The batch's result: rollouts ``which`` got ``labels`` and ``counts``; the rest none."""
        size = len(batch)
        penalties = np.zeros(size, dtype=np.float64)
        clusters = np.full(size, NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(size, dtype=np.int64)
        clusters[which], sizes[which] = labels, counts
        penalties[which] = meds_penalty(counts, self.config.alpha, self.config.beta)
        return ShapeResult(
            shaped_rewards=batch.rewards - penalties,
            penalties=penalties,
            clusters=clusters,
            cluster_sizes=sizes,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration and the stored fingerprints to one file, atomically, no pickle.

        Only the fingerprints (or, with ``ClusterMethod.ANSWER``, the normalised answers) are
        stored; labels and trees are rebuilt from them on load.

        Args:
            path: Destination file; written exactly as named.
        """
        meta: dict[str, Any] = {"kind": _KIND, "config": self.config.to_dict()}
        if isinstance(self._memory, AnswerMemory):
            keys, answers = self._memory.state()
            sizes = np.array([len(a) for a in answers], dtype=np.int64)
            rows = np.zeros((0, 1), dtype=np.float32)
            meta["answers"] = answers
        else:
            keys, sizes, rows = self._memory.state()
        meta["bucket_keys"] = [[pid, flag] for pid, flag in keys]
        meta["dim"] = self._memory.dim
        atomic_savez(path, meta, {"rows": rows, "bucket_sizes": sizes})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        max_bucket_rows: int | None = MAX_LOADED_BUCKET_ROWS,
    ) -> MEDSShaper:
        """Read a shaper written by :meth:`save`; continuing it gives bit-identical penalties.

        The stored fingerprints are checked like user input and the clusters are refitted from
        them, so nothing in the file is trusted. Refitting a bucket costs O(N^2) in its rows, so
        a bucket larger than ``max_bucket_rows`` (or than the config's ``bucket_capacity``, which
        the memory never exceeds) is refused before any refit: a crafted file cannot keep a
        process busy for minutes.

        Args:
            path: The file.
            max_bucket_rows: Largest bucket to refit (:data:`MAX_LOADED_BUCKET_ROWS`, about 3 s
                on one core); ``None`` loads any size.

        Returns:
            A shaper in training mode with the saved configuration and memory.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            CorruptFileError: If the file is truncated, corrupt, crafted, of another format
                version or not a :class:`MEDSShaper` file.
        """
        where = str(path)
        meta, arrays = read_npz(path, _KIND, _MEMBERS)
        config, keys, dim = _parse_meta(meta, where)
        sizes, rows = arrays["bucket_sizes"], arrays["rows"]

        def bad(why: str) -> CorruptFileError:
            return CorruptFileError(f"{where!r} is inconsistent: {why}.")

        if sizes.shape != (len(keys),) or (sizes.size and int(sizes.min()) < 1):
            raise bad("bucket sizes do not match the bucket keys")
        largest = int(sizes.max()) if sizes.size else 0
        if config.bucket_capacity is not None and largest > config.bucket_capacity:
            raise bad(
                f"a bucket of {largest} rows exceeds bucket_capacity={config.bucket_capacity}"
            )
        if (
            max_bucket_rows is not None
            and config.cluster_method is not ClusterMethod.ANSWER
            and largest > max_bucket_rows
        ):
            raise CorruptFileError(
                f"{where!r} holds a bucket of {largest} rows, more than max_bucket_rows="
                f"{max_bucket_rows} (its refit costs O(N^2)). Load a file you trust with "
                "MEDSShaper.load(path, max_bucket_rows=None)."
            )
        if config.cluster_method is ClusterMethod.ANSWER:
            answers = meta.get("answers")
            if (
                not isinstance(answers, list)
                or [len(a) if isinstance(a, list) else -1 for a in answers] != sizes.tolist()
                or not all(isinstance(x, str) and answer_key(x) == x for a in answers for x in a)
                or rows.shape[0] != 0
            ):
                raise bad("the stored answers do not match the bucket sizes")
            shaper = cls(config)
            shaper._memory = AnswerMemory.rebuild(keys, answers)
            return shaper
        if rows.shape[0] != int(sizes.sum()) or (keys and rows.shape[1] != dim):
            raise bad("the fingerprint array does not match the bucket sizes and dimension")
        checked = np.zeros((0, dim or 0), dtype=np.float32)
        if rows.shape[0]:
            try:
                stored = validate_features(rows, rows.shape[0], dim)
            except InvalidArgumentError as exc:
                raise bad(f"stored fingerprints: {exc}") from exc
            checked = stored.rows
            if stored.present.size != rows.shape[0]:
                raise bad("a stored fingerprint is missing (all NaN)")
        shaper = cls(config)
        shaper._memory = ErrorMemory.rebuild(config, keys, sizes, checked)
        return shaper


def _parse_meta(meta: dict[str, Any], where: str) -> tuple[MEDSConfig, list[BucketKey], int | None]:
    """The configuration, bucket keys and dimension of a saved shaper, or CorruptFileError."""
    try:
        config = MEDSConfig.from_dict(dict(meta["config"]))
    except (KeyError, TypeError, ValueError, InvalidArgumentError) as exc:
        raise CorruptFileError(f"{where!r}: missing or invalid configuration ({exc}).") from exc
    keys_raw = meta.get("bucket_keys")
    if not isinstance(keys_raw, list) or not all(
        isinstance(k, list) and len(k) == 2 and isinstance(k[0], str) and isinstance(k[1], bool)
        for k in keys_raw
    ):
        raise CorruptFileError(f"{where!r}: bucket keys are not [problem_id, correct] pairs.")
    keys = [(k[0], k[1]) for k in keys_raw]
    if len(set(keys)) != len(keys):
        raise CorruptFileError(f"{where!r}: duplicate bucket keys.")
    dim = meta.get("dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise CorruptFileError(f"{where!r}: feature dimension {dim!r}.")
    if keys and dim is None and config.cluster_method is not ClusterMethod.ANSWER:
        raise CorruptFileError(f"{where!r}: buckets without a feature dimension.")
    return config, keys, dim
