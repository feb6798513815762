"""Answer-string memory: the cheap baseline of MEDS, clustering wrong rollouts by final answer.

With ``MEDSConfig(cluster_method=ClusterMethod.ANSWER)`` a rollout's cluster is the set of
earlier rollouts of its bucket (same problem, same correctness) whose normalised final answer is
the same; the penalty is MEDS's ``min(alpha * log(n + 1), beta)`` of that count. No logits are
needed, so it works on any env that reports an answer, and it is the control that tells whether
MEDS's fingerprints find more than the answers themselves say.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from meds_gym.meds.batch import BucketKey
from meds_gym.meds.memory import NOT_ASSIGNED, MemoryStats

_INTEGER = re.compile(r"([+-]?)0*(\d+)(?:\.0+)?")
_SPACE = re.compile(r"\s+")


def answer_key(answer: str | None) -> str | None:
    r"""The normalised form under which two final answers count as the same answer.

    Unicode compatibility forms are folded (NFKC: fullwidth digits and minus), whitespace and
    surrounding ``$`` and a trailing full stop are dropped, and an integer is written without
    sign ``+``, leading zeros or a ``.0`` tail. Nothing is evaluated: ``1/2`` and ``0.5`` stay two
    answers, as two different strings a model writes are two habits.

    Args:
        answer: A parsed final answer; ``None`` (no answer) stays ``None``.

    Returns:
        The key, or ``None`` for no answer or an empty one.

    Example:
        >>> answer_key(" $+007.0$ "), answer_key("\\frac{1}{2}."), answer_key("   ")
        ('7', '\\frac{1}{2}', None)
    """
    if answer is None:
        return None
    text = _SPACE.sub("", unicodedata.normalize("NFKC", answer)).strip("$").rstrip(".")
    match = _INTEGER.fullmatch(text)
    if match is not None:
        sign, digits = match.groups()
        text = ("-" if sign == "-" and digits != "0" else "") + digits
    return text or None


class AnswerMemory:
    """Per bucket ``(problem_id, correct)``, the normalised answers stored so far, in order.

    A rollout's cluster label is the index of its answer among the bucket's distinct answers (in
    order of first storage); its cluster size is how many stored rollouts gave that answer. A
    rollout whose answer the bucket has not seen, or which has no answer, gets
    :data:`NOT_ASSIGNED` and size 0 (no penalty).
    """

    def __init__(self) -> None:
        self._answers: dict[BucketKey, list[str]] = {}
        self._counts: dict[BucketKey, dict[str, int]] = {}
        self._labels: dict[BucketKey, dict[str, int]] = {}

    @property
    def dim(self) -> None:
        """No fingerprints are stored (for the shaper's validation)."""
        return None

    @property
    def n_rows(self) -> int:
        """Stored answers over all buckets."""
        return sum(len(a) for a in self._answers.values())

    @property
    def n_clusters(self) -> int:
        """Distinct answers over all buckets."""
        return sum(len(c) for c in self._counts.values())

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: object) -> bool:
        return key in self._answers

    def keys(self) -> list[BucketKey]:
        """Bucket keys in creation order."""
        return list(self._answers)

    def answers(self, problem_id: str, correct: bool) -> tuple[str, ...]:
        """The normalised answers stored in a bucket, in order (empty if none)."""
        return tuple(self._answers.get((problem_id, bool(correct)), ()))

    def stats(self) -> MemoryStats:
        """Sizes and cluster counts (a cluster is a distinct answer); no eigen ratios."""
        sizes = np.array([len(a) for a in self._answers.values()], dtype=np.int64)
        return MemoryStats(
            rows=int(sizes.sum()),
            buckets=len(self._answers),
            clusters=self.n_clusters,
            mean_bucket_size=float(sizes.mean()) if sizes.size else 0.0,
            max_bucket_size=int(sizes.max()) if sizes.size else 0,
            top1_eigen_ratio={key: float("nan") for key in self._answers},
        )

    def assign(
        self, keys: Sequence[BucketKey], answers: Sequence[str | None]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each rollout's cluster label and size as the memory stands now (no update)."""
        labels = np.full(len(keys), NOT_ASSIGNED, dtype=np.int64)
        sizes = np.zeros(len(keys), dtype=np.int64)
        for i, (key, answer) in enumerate(zip(keys, answers, strict=True)):
            count = self._counts.get(key, {}).get(answer, 0) if answer is not None else 0
            if count:
                labels[i] = self._labels[key][answer]  # type: ignore[index]
                sizes[i] = count
        return labels, sizes

    def update(
        self, keys: Sequence[BucketKey], answers: Sequence[str | None], voted: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """:meth:`assign` the ``voted`` rollouts, then store every rollout that has an answer.

        Returns:
            ``(labels, sizes)``, both (Q,) int64, as the memory stood before the step;
            ``NOT_ASSIGNED`` and 0 for rollouts not voted.
        """
        labels, sizes = self.assign(keys, answers)
        labels[~voted] = NOT_ASSIGNED
        sizes[~voted] = 0
        for key, answer in zip(keys, answers, strict=True):
            if answer is not None:
                self._store(key, answer)
        return labels, sizes

    def _store(self, key: BucketKey, answer: str) -> None:
        counts = self._counts.setdefault(key, {})
        self._labels.setdefault(key, {}).setdefault(answer, len(counts))
        counts[answer] = counts.get(answer, 0) + 1
        self._answers.setdefault(key, []).append(answer)

    def state(self) -> tuple[list[BucketKey], list[list[str]]]:
        """Bucket keys and each bucket's stored answers, in order (what :meth:`rebuild` reads)."""
        return list(self._answers), [list(a) for a in self._answers.values()]

    @classmethod
    def rebuild(cls, keys: Sequence[BucketKey], answers: Sequence[Sequence[str]]) -> AnswerMemory:
        """The memory that stored ``answers[b]`` in bucket ``keys[b]``, in that order."""
        memory = cls()
        for key, stored in zip(keys, answers, strict=True):
            for answer in stored:
                memory._store(key, answer)
        return memory
