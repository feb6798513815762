"""The one validation boundary of MEDS: user input in, a trusted :class:`Batch` out.

Every public entry point (:meth:`MEDSShaper.shape`, the Gymnasium wrappers, the SB3 and TRL
integrations) hands its rollouts to :func:`validate_batch`; nothing behind it checks again. An
adapter that must reject a bad fingerprint before it acts (the Gymnasium wrappers check an
action's fingerprint before the wrapped env steps) checks it with :func:`validate_features`, the
same check :func:`validate_batch` runs, and passes on the :class:`Fingerprints` it returns, which
are not checked again. A rejected input raises :class:`~meds_gym.errors.InvalidArgumentError`
naming the argument (and the rollout), before any state is touched.

Fingerprints are stored as float32, the precision language models produce them in; values outside
float32's range are rejected rather than silently turned into infinities or zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError
from meds_gym.meds.config import GroupRule

BucketKey = tuple[str, bool]
"""A bucket is named by (problem id, whether the rollouts in it were correct)."""

FeaturesLike = npt.ArrayLike | Sequence[npt.ArrayLike | None] | None
"""A (B, L) array, or one (L,) vector or ``None`` per rollout, or ``None`` for the whole batch."""

_FEATURE_EXPECTED = "finite float32 values (or all NaN for a missing fingerprint)"


@dataclass(frozen=True)
class Batch:
    """A validated batch of rollouts: what the memory and the penalty trust.

    Attributes:
        keys: (B,) bucket key ``(problem_id, correct)`` of each rollout.
        correct: (B,) bool.
        rewards: (B,) float64 finite rewards.
        kept: (B,) bool, the rollouts the trainer keeps (the others are neither shaped nor stored).
        present: (M,) int64 indices of the kept rollouts that have a fingerprint.
        rows: (M, L) float32 their fingerprints: finite, non-zero, C-contiguous.
        answers: (B,) final answer (str, or ``None`` for none) of each rollout, for the
            answer-string memory; ``None`` when the caller gave no answers.
    """

    keys: list[BucketKey]
    correct: npt.NDArray[np.bool_]
    rewards: npt.NDArray[np.float64]
    kept: npt.NDArray[np.bool_]
    present: npt.NDArray[np.int64]
    rows: npt.NDArray[np.float32]
    answers: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Fingerprints:
    """A batch's fingerprints as :func:`validate_features` accepted them; trusted from then on.

    Pass them as ``features`` to :meth:`~meds_gym.meds.MEDSShaper.shape` or :func:`validate_batch`,
    which then check only that they belong to a batch of that size and the memory's length.

    Attributes:
        size: B, the number of rollouts they were checked for.
        present: (M,) int64 indices of the rollouts that have a fingerprint.
        rows: (M, L) float32 their fingerprints: finite, non-zero, C-contiguous.
    """

    size: int
    present: npt.NDArray[np.int64]
    rows: npt.NDArray[np.float32]

    @property
    def dim(self) -> int | None:
        """L, or ``None`` when no rollout has a fingerprint."""
        return int(self.rows.shape[1]) if self.present.size else None

    def subset(self, rollouts: npt.ArrayLike) -> Fingerprints:
        """The fingerprints of some rollouts, as a batch of their own.

        Args:
            rollouts: (K,) indices of rollouts of this batch, in the new batch's order.

        Returns:
            Fingerprints of size K.
        """
        chosen = np.asarray(rollouts, dtype=np.int64)  # (K,)
        position = np.full(self.size, -1, dtype=np.int64)  # (B,) row of each rollout, or -1
        position[self.present] = np.arange(self.present.size)
        rows = position[chosen]  # (K,)
        has = rows >= 0
        return Fingerprints(
            size=int(chosen.size),
            present=np.flatnonzero(has).astype(np.int64),
            rows=np.ascontiguousarray(self.rows[rows[has]]),
        )


def _sequence(value: Any, name: str, what: str, batch: int | None = None) -> list[Any]:
    """``value`` as a list, checked to be one entry per rollout.

    Accepts any sized sequence that is not a string (a 1-D array included) and, when ``batch`` is
    given, checks its length. ``what`` names the entries in the error ("final answers (str or
    None)"); its part before the parenthesis counts them when the length is wrong.
    """
    if (
        isinstance(value, (str, bytes))
        or not hasattr(value, "__len__")
        or (isinstance(value, np.ndarray) and value.ndim != 1)
    ):
        count = "" if batch is None else f"{batch} "
        raise InvalidArgumentError(name, f"a sequence of {count}{what}, one per rollout", value)
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    if batch is not None and len(items) != batch:
        raise InvalidArgumentError(
            name,
            f"{batch} {what}, one per rollout of problem_ids",
            f"{len(items)} {what.split(' (')[0]}",
        )
    return items


def _problem_ids(problem_ids: Any) -> list[str]:
    ids = _sequence(problem_ids, "problem_ids", "str problem ids")
    if not set(map(type, ids)) <= {str}:  # fast path: all plain str (not numpy.str_)
        for i, pid in enumerate(ids):
            if not isinstance(pid, str):
                raise InvalidArgumentError(f"problem_ids[{i}]", "a str problem id", pid)
        ids = [str(pid) for pid in ids]  # plain str (not numpy.str_) for keys and JSON
    return ids


def _flags(value: Any, batch: int, name: str, meaning: str) -> npt.NDArray[np.bool_]:
    expected = f"{batch} booleans (bool or numpy bool), one per rollout"
    if isinstance(value, np.ndarray):
        if value.dtype != np.bool_:
            raise InvalidArgumentError(
                name,
                expected,
                f"an array of dtype {value.dtype}",
                "Convert 0/1 flags explicitly, e.g. `flags == 1`.",
            )
        flags = value.copy()
    else:
        items = _sequence(value, name, "booleans (bool or numpy bool)")
        for i, flag in enumerate(items):
            if not isinstance(flag, (bool, np.bool_)):
                raise InvalidArgumentError(f"{name}[{i}]", f"a bool ({meaning})", flag)
        flags = np.array(items, dtype=bool)
    if flags.shape != (batch,):
        raise InvalidArgumentError(
            name, f"{batch} flags (len(problem_ids))", f"shape {flags.shape}"
        )
    return flags


def _rewards(rewards: Any, batch: int) -> npt.NDArray[np.float64]:
    if isinstance(rewards, (str, bytes)):
        raise InvalidArgumentError("rewards", "a sequence of finite floats", rewards)
    try:
        arr = np.asarray(rewards)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError("rewards", "a sequence of finite floats", rewards) from exc
    if arr.dtype.kind not in "fiub" or arr.shape != (batch,):
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


def _answers(answers: Any, batch: int) -> list[str | None]:
    """One final answer (str, or ``None`` for none) per rollout, for the answer-string memory."""
    items = _sequence(answers, "answers", "final answers (str or None)", batch)
    for i, answer in enumerate(items):
        if answer is not None and not isinstance(answer, str):
            raise InvalidArgumentError(f"answers[{i}]", "a str final answer or None", answer)
    return items


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


def _feature_matrix(
    features: Any, batch: int, row_name: Callable[[int], str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]] | None:
    """(B, L) float64 matrix and (B,) "missing" mask, or None when no rollout has one."""
    if features is None:
        return None
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
        missing = np.asarray(np.isnan(matrix).all(axis=1), dtype=bool)
        return matrix, missing
    items = _sequence(features, "features", "fingerprints (vectors or None)", batch)
    vectors = [
        None if item is None else _as_vector(item, row_name(i)) for i, item in enumerate(items)
    ]
    missing = np.array(
        [v is None or (v.size > 0 and bool(np.isnan(v).all())) for v in vectors], dtype=bool
    )
    if missing.all():
        return None
    first = int(np.flatnonzero(~missing)[0])
    width = vectors[first].shape[0]  # type: ignore[union-attr]
    matrix = np.zeros((batch, width))
    for i, v in enumerate(vectors):
        if missing[i] or v is None:
            continue
        if v.shape[0] != width:
            raise InvalidArgumentError(
                row_name(i),
                f"a fingerprint of dimension {width} like {row_name(first)}",
                f"dimension {v.shape[0]}",
            )
        matrix[i] = v
    return matrix, missing


def _dim_mismatch(name: str, dim: int, received: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        name,
        f"fingerprints of dimension {dim}, the length of the earlier ones (a memory holds one)",
        f"dimension {received}",
    )


def validate_features(
    features: FeaturesLike,
    batch: int,
    dim: int | None,
    *,
    names: Sequence[str] | None = None,
) -> Fingerprints:
    """Check a batch's fingerprints: the check :func:`validate_batch` runs, on its own.

    An adapter calls it to reject a bad fingerprint before it acts on the rest of a step (the
    Gymnasium wrappers, before the wrapped env steps), then hands the result to
    :meth:`~meds_gym.meds.MEDSShaper.shape`, which does not check it again.

    Args:
        features: (B, L) array, or a list of B (L,) vectors / ``None``, or ``None``; a ``None`` or
            all-NaN row means "no fingerprint".
        batch: B.
        dim: The length the fingerprints must have (the memory's), or ``None`` while none is
            fixed.
        names: How errors name each rollout's fingerprint, as the caller's user wrote it
            (default ``features[i]``).

    Returns:
        Which rollouts have a fingerprint and their float32 rows.

    Raises:
        InvalidArgumentError: Naming the rollout's fingerprint for a bad one (not 1-D numeric,
            not finite in float32, all zero, or of another length than the others or than
            ``dim``).

    Example:
        >>> checked = validate_features([[1.0, 0.0], None], 2, None)
        >>> checked.present.tolist(), checked.rows.dtype.name
        ([0], 'float32')
        >>> validate_features([[0.0, 0.0]], 1, None, names=['action["features"]'])
        Traceback (most recent call last):
        ...
        meds_gym.errors.InvalidArgumentError: `action["features"]` must be a non-zero vector ...
    """
    if names is not None and len(names) != batch:
        raise InvalidArgumentError("names", f"{batch} names, one per rollout", names)
    row_name = (lambda i: f"features[{i}]") if names is None else names.__getitem__
    found = _feature_matrix(features, batch, row_name)
    if found is None:
        empty = np.zeros((0, dim or 0), np.float32)
        return Fingerprints(size=batch, present=np.zeros(0, np.int64), rows=empty)
    matrix, missing = found
    present = np.flatnonzero(~missing).astype(np.int64)
    if dim is not None and matrix.shape[1] != dim:
        # The whole array has the wrong length; a list names its first fingerprint.
        raise _dim_mismatch(
            "features" if names is None else names[int(present[0])], dim, matrix.shape[1]
        )
    chosen = matrix[present]  # (M, L) float64
    with np.errstate(over="ignore", under="ignore"):
        rows = np.ascontiguousarray(chosen, dtype=np.float32)  # (M, L)
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        i = int(present[np.flatnonzero(bad)[0]])
        raise InvalidArgumentError(row_name(i), _FEATURE_EXPECTED, matrix[i])
    zero = ~(rows != 0.0).any(axis=1)
    if zero.any():
        i = int(present[np.flatnonzero(zero)[0]])
        raise InvalidArgumentError(
            row_name(i),
            "a non-zero vector in float32 (cosine distance is undefined for zero)",
            matrix[i],
        )
    return Fingerprints(size=batch, present=present, rows=rows)


def validate_batch(
    problem_ids: Any,
    correct: Any,
    rewards: Any,
    features: FeaturesLike | Fingerprints,
    *,
    kept: Any = None,
    dim: int | None = None,
    answers: Any = None,
) -> Batch:
    """Turn one step's rollouts, as a user gives them, into a trusted :class:`Batch`.

    Args:
        problem_ids: (B,) str problem id of each rollout.
        correct: (B,) bool, whether each rollout was right.
        rewards: (B,) finite rewards.
        features: See :func:`validate_features`; or its result, which is not checked again
            (only its batch size and length).
        kept: (B,) bool, the rollouts the trainer keeps (``None``: all); the others (for example
            groups that DAPO's dynamic sampling drops) are neither shaped nor stored.
        dim: The memory's fingerprint length, or ``None`` while it is empty.
        answers: (B,) final answer (str, or ``None`` for none) of each rollout, for the
            answer-string memory; ``None``: no answers.

    Returns:
        The batch.

    Raises:
        InvalidArgumentError: For any bad input, naming the argument and the rollout.
    """
    ids = _problem_ids(problem_ids)
    flags = _flags(correct, len(ids), "correct", "True = correct")
    values = _rewards(rewards, len(ids))
    keep = (
        np.ones(len(ids), dtype=bool)
        if kept is None
        else _flags(kept, len(ids), "kept", "True = the trainer keeps this rollout")
    )
    checked_answers = None if answers is None else _answers(answers, len(ids))
    if not isinstance(features, Fingerprints):
        features = validate_features(features, len(ids), dim)
    elif features.size != len(ids):
        raise InvalidArgumentError(
            "features", f"fingerprints of {len(ids)} rollouts", f"{features.size} rollouts"
        )
    elif dim is not None and features.dim not in (None, dim):
        raise _dim_mismatch("features", dim, features.rows.shape[1])
    present, rows = features.present, features.rows
    if not keep.all() and present.size:
        chosen = keep[present]
        present, rows = present[chosen], np.ascontiguousarray(rows[chosen])
    keys = list(zip(ids, flags.tolist(), strict=True))  # tolist() gives Python bools
    return Batch(
        keys=keys,
        correct=flags,
        rewards=values,
        kept=keep,
        present=present,
        rows=rows,
        answers=checked_answers,
    )


def mixed_groups(
    problem_ids: Sequence[str],
    correct: npt.ArrayLike,
    group_ids: Sequence[Hashable] | npt.NDArray[Any] | None = None,
) -> npt.NDArray[np.bool_]:
    """Which rollouts belong to a group holding both right and wrong answers (DAPO's filter).

    The reference rule, :func:`shaped_groups` with ``GroupRule.MIXED``: DAPO's dynamic sampling
    drops the groups whose rewards are all equal, and the reference MEDS code clusters only what
    it keeps; pass this mask as ``kept`` to do the same.

    Example:
        >>> mixed_groups(["a", "a", "b", "b"], [True, False, False, False]).tolist()
        [True, True, False, False]

        Problem ``"a"`` sampled in two groups: only the mixed one is kept.

        >>> mixed_groups(["a"] * 4, [False, False, True, False], group_ids=[0, 0, 1, 1]).tolist()
        [False, False, True, True]
    """
    return shaped_groups(problem_ids, correct, group_ids, GroupRule.MIXED)


def shaped_groups(
    problem_ids: Sequence[str],
    correct: npt.ArrayLike,
    group_ids: Sequence[Hashable] | npt.NDArray[Any] | None = None,
    rule: GroupRule = GroupRule.MIXED,
) -> npt.NDArray[np.bool_]:
    """Which rollouts belong to a group that ``rule`` shapes; pass the mask as ``kept``.

    A group is the set of responses sampled together for one prompt (veRL's ``uid``). Each group
    is judged on its own, so a problem drawn twice in one batch (or in two dynamic-sampling
    rounds) is two groups, one of which may be kept while the other is dropped. The error memory
    still keys by problem id; only the filter looks at groups.

    Args:
        problem_ids: (B,) problem id of each rollout.
        correct: (B,) bool.
        group_ids: (B,) hashable id of the sampled group of each rollout (e.g. veRL's ``uid``, or
            ``i // n`` for consecutive blocks of ``n`` responses). ``None``: the rollouts sharing a
            problem id form one group, which is right only when each problem is sampled once per
            batch.
        rule: :class:`~meds_gym.meds.GroupRule`: mixed groups only (the reference), or mixed and
            all-wrong groups.

    Returns:
        (B,) bool.

    Raises:
        InvalidArgumentError: If ``correct`` or ``group_ids`` does not hold one entry per rollout,
            a group id is not hashable, or ``rule`` is not a ``GroupRule``.

    Example:
        >>> shaped_groups(["a", "a", "b", "b", "c"], [True, False, False, False, True],
        ...               rule=GroupRule.MIXED_AND_ALL_WRONG).tolist()
        [True, True, True, True, False]
    """
    if not isinstance(rule, GroupRule):
        raise InvalidArgumentError(
            "rule", f"a GroupRule ({', '.join(v.name for v in GroupRule)})", rule
        )
    flags = np.asarray(correct, dtype=bool)
    ids = list(problem_ids)
    if flags.shape != (len(ids),):
        raise InvalidArgumentError(
            "correct", f"{len(ids)} flags (len(problem_ids))", f"shape {flags.shape}"
        )
    keys: list[Hashable]
    if group_ids is None:
        keys = list(ids)
    else:
        keys = _sequence(group_ids, "group_ids", "group ids (hashable)", len(ids))
    seen: dict[Hashable, list[bool]] = {}
    for i, (key, flag) in enumerate(zip(keys, flags.tolist(), strict=True)):
        try:
            outcomes = seen.setdefault(key, [False, False])
        except TypeError as exc:
            raise InvalidArgumentError(
                f"group_ids[{i}]", "a hashable group id (e.g. an int or a str)", key
            ) from exc
        outcomes[int(flag)] = True
    return np.array([rule.keeps(*seen[key][::-1]) for key in keys], dtype=bool)
