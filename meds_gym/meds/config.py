"""The MEDS configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from meds_gym.errors import InvalidArgumentError


class PenaltyTarget(Enum):
    """Which rollouts the memory penalises.

    The paper penalises wrong rollouts only (docs/design.md section 2, step 4). The other choices
    are for ablations: ``CORRECT`` pushes apart repeated correct solutions, ``BOTH`` does both,
    ``NONE`` keeps the memory (and its statistics) without changing any reward.
    """

    WRONG = "wrong"
    CORRECT = "correct"
    BOTH = "both"
    NONE = "none"

    def penalises(self, correct: bool) -> bool:
        """Whether a rollout with this correctness is penalised under this target."""
        if self is PenaltyTarget.BOTH:
            return True
        if self is PenaltyTarget.NONE:
            return False
        return (self is PenaltyTarget.CORRECT) == bool(correct)


class NoiseVote(Enum):
    """What a rollout whose nearest stored neighbours vote for noise (label -1) is charged.

    ``COUNT_NOISE`` is the reference-code behaviour (docs/design.md section 2, step 3): the cluster
    size is the number of stored noise rows, so a bucket full of scattered errors still penalises.
    ``NO_PENALTY`` treats noise as "no recurring mode" and charges nothing.
    """

    COUNT_NOISE = "count_noise"
    NO_PENALTY = "no_penalty"


class TieBreak(Enum):
    """Which label wins when several labels get the same number of the k nearest neighbours' votes.

    ``SMALLEST_LABEL`` is the reference code's rule (docs/design.md section 2, step 3): it takes
    ``np.unique(labels, return_counts=True)`` and the first argmax, so the smallest tied label
    wins and noise (-1) wins any tie it is in. ``NEAREST`` gives the tie to the label of the
    nearest neighbour among the tied ones.
    """

    SMALLEST_LABEL = "smallest_label"
    NEAREST = "nearest"


class ClusterMethod(Enum):
    """How the stored fingerprints of a bucket are grouped.

    ``HDBSCAN`` is the paper's method. ``SINGLE`` is the reference code's control: every stored row
    of a bucket is in one cluster, so a rollout's cluster size is the number of rows stored for its
    bucket (a uniform penalty by count, whatever the fingerprint). ``ANSWER`` is the cheap baseline
    that needs no logits: a rollout's cluster is the earlier rollouts of its bucket with the same
    normalised final answer (:func:`~meds_gym.meds.answer_key`); the shaper then reads
    ``answers`` instead of fingerprints.
    """

    HDBSCAN = "hdbscan"
    SINGLE = "single"
    ANSWER = "answer"


class GroupRule(Enum):
    """Which sampled groups an entry point that sees groups hands to the shaper.

    A group is the set of responses sampled together for one prompt. ``MIXED`` is the reference
    rule (DAPO's filter, then MEDS): only groups holding both right and wrong answers are shaped
    and stored. ``MIXED_AND_ALL_WRONG`` is a variant beyond the paper: all-wrong groups are shaped
    and stored too. Under group normalisation an all-wrong group has no signal of its own, so
    there the penalties are the only signal, pushing rollouts away from the error clusters they
    repeat. All-right groups are never shaped (only wrong rollouts are penalised by default).

    Only entry points that form groups read it (:func:`~meds_gym.meds.shaped_groups`, the vector
    wrapper and TRL with ``skip_uniform_groups=True``, the bundled agent); the single-env
    wrappers (:class:`~meds_gym.meds.MEDSRewardWrapper`,
    :class:`~meds_gym.meds.MEDSEpisodeRewardWrapper`) have no group to judge and shape every
    episode.
    """

    MIXED = "mixed"
    MIXED_AND_ALL_WRONG = "mixed_and_all_wrong"

    def keeps(self, has_right: bool, has_wrong: bool) -> bool:
        """Whether a group with these outcomes is shaped under this rule."""
        if self is GroupRule.MIXED:
            return has_right and has_wrong
        return has_wrong


_MAX_INT = 2**31 - 1
"""Largest value of an integer field: every count and size fits the clustering kernels' ints."""


def _check_finite_nonneg(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(name, "a finite real number >= 0", value)
    try:
        number = float(value)  # an int beyond float range overflows here
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise InvalidArgumentError(name, "a finite real number >= 0", value)


def _check_int(name: str, value: Any, minimum: int) -> None:
    expected = f"an integer in [{minimum}, {_MAX_INT}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(name, expected, value)
    if not minimum <= value <= _MAX_INT:
        raise InvalidArgumentError(name, expected, value)


@dataclass(frozen=True)
class MEDSConfig:
    """Hyper-parameters of MEDS (Memory-Enhanced Dynamic reward Shaping).

    Every field is validated on construction; a bad value raises
    :class:`~meds_gym.errors.InvalidArgumentError` naming the field.

    **Reward scale.** ``alpha`` and ``beta`` are in reward units. The defaults (0.1, 0.2) are the
    paper's, on the reference's +1 / -1 rewards (right / wrong), which the bundled agent and the
    TRL reward function use by default. The Gymnasium envs score 1 / 0: there a gap of 1 instead
    of 2 separates right from wrong, so under group normalisation the same strength is
    ``alpha=0.05, beta=0.1`` (half of each).

    Example:
        >>> cfg = MEDSConfig(alpha=0.02, beta=0.04)
        >>> cfg.penalize
        <PenaltyTarget.WRONG: 'wrong'>

        The paper's strength on +1 / -1 rewards, and the same strength on 1 / 0 rewards:

        >>> paper = MEDSConfig()
        >>> (paper.alpha, paper.beta)
        (0.1, 0.2)
        >>> on_one_zero = MEDSConfig(alpha=paper.alpha / 2, beta=paper.beta / 2)
        >>> (on_one_zero.alpha, on_one_zero.beta)
        (0.05, 0.1)
    """

    alpha: float = 0.1
    """Slope of the penalty: a rollout in a cluster of n stored rows loses ``alpha*log(n + 1)``."""
    beta: float = 0.2
    """Cap of the penalty (``2 * alpha`` in the reference code; 0.04 for Qwen3-8B in the paper)."""
    k: int = 3
    """Number of nearest stored fingerprints (cosine distance) whose majority label a new rollout
    gets."""
    min_cluster_size: int = 2
    """HDBSCAN ``min_cluster_size``: the smallest group of fingerprints that forms a cluster."""
    min_samples: int = 1
    """HDBSCAN ``min_samples`` (core distance neighbourhood). With 1, refits are incremental."""
    cluster_selection_method: str = "eom"
    """HDBSCAN cluster selection: ``"eom"`` (excess of mass, as in the paper) or ``"leaf"``."""
    penalize: PenaltyTarget = PenaltyTarget.WRONG
    """Which rollouts are penalised; the paper penalises wrong ones only."""
    noise_vote: NoiseVote = NoiseVote.COUNT_NOISE
    """What a rollout voted into noise is charged; the default follows the reference code."""
    tie_break: TieBreak = TieBreak.SMALLEST_LABEL
    """Which label wins a tied vote; the default follows the reference code."""
    cluster_method: ClusterMethod = ClusterMethod.HDBSCAN
    """HDBSCAN (the paper) or one cluster per bucket (the reference's ``single`` control)."""
    shape_groups: GroupRule = GroupRule.MIXED
    """Which sampled groups are shaped where groups exist (the reference: mixed groups only)."""
    bucket_capacity: int | None = None
    """Most rows one bucket keeps. ``None`` (the paper) keeps every past fingerprint. When set, a
    bucket that grows past it drops its oldest rows first (FIFO) before the refit, which bounds the
    O(N^2) refit cost and memory of a bucket at the price of forgetting old error modes."""
    warn_bucket_size: int = 10_000
    """Bucket size past which a warning is issued once (refit cost and memory grow as O(N^2))."""

    def __post_init__(self) -> None:
        _check_finite_nonneg("alpha", self.alpha)
        _check_finite_nonneg("beta", self.beta)
        _check_int("k", self.k, 1)
        _check_int("min_cluster_size", self.min_cluster_size, 2)
        _check_int("min_samples", self.min_samples, 1)
        if self.cluster_selection_method not in ("eom", "leaf"):
            raise InvalidArgumentError(
                "cluster_selection_method", "one of 'eom', 'leaf'", self.cluster_selection_method
            )
        if not isinstance(self.penalize, PenaltyTarget):
            raise InvalidArgumentError(
                "penalize",
                f"a PenaltyTarget ({', '.join(t.name for t in PenaltyTarget)})",
                self.penalize,
            )
        if not isinstance(self.noise_vote, NoiseVote):
            raise InvalidArgumentError(
                "noise_vote",
                f"a NoiseVote ({', '.join(v.name for v in NoiseVote)})",
                self.noise_vote,
            )
        if not isinstance(self.tie_break, TieBreak):
            raise InvalidArgumentError(
                "tie_break", f"a TieBreak ({', '.join(v.name for v in TieBreak)})", self.tie_break
            )
        if not isinstance(self.cluster_method, ClusterMethod):
            raise InvalidArgumentError(
                "cluster_method",
                f"a ClusterMethod ({', '.join(v.name for v in ClusterMethod)})",
                self.cluster_method,
            )
        if not isinstance(self.shape_groups, GroupRule):
            raise InvalidArgumentError(
                "shape_groups",
                f"a GroupRule ({', '.join(v.name for v in GroupRule)})",
                self.shape_groups,
            )
        if self.bucket_capacity is not None:
            _check_int("bucket_capacity", self.bucket_capacity, 2)
        _check_int("warn_bucket_size", self.warn_bucket_size, 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields (enums as their values)."""
        out = asdict(self)
        for name in _ENUM_FIELDS:
            out[name] = getattr(self, name).value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MEDSConfig:
        """Rebuild a config from :meth:`to_dict` output (validated as on construction).

        Args:
            data: The dict; unknown keys raise :class:`~meds_gym.errors.InvalidArgumentError`.

        Returns:
            The config.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidArgumentError(
                "data", f"a dict with keys among {sorted(known)}", sorted(unknown)
            )
        kwargs = dict(data)
        try:
            for name, enum in _ENUM_FIELDS.items():
                if name in kwargs:
                    kwargs[name] = enum(kwargs[name])
        except ValueError as exc:
            raise InvalidArgumentError("data", "valid enum values", data) from exc
        return cls(**kwargs)


_ENUM_FIELDS: dict[str, type[Enum]] = {
    "penalize": PenaltyTarget,
    "noise_vote": NoiseVote,
    "tie_break": TieBreak,
    "cluster_method": ClusterMethod,
    "shape_groups": GroupRule,
}
"""The fields stored as their enum's value in :meth:`MEDSConfig.to_dict`."""
