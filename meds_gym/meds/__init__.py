"""MEDS: Memory-Enhanced Dynamic reward Shaping (arXiv 2604.11297), docs/design.md section 2.

How the package fits together, from the outside in:

* :class:`MEDSShaper` is the one public state object: ``shape`` (one training step), ``training``,
  ``save`` and ``load``. Behind it, :mod:`meds_gym.meds.memory` holds the buckets of stored
  fingerprints and their clusters (internal); :class:`AnswerMemory` replaces it for the
  answer-string baseline (``ClusterMethod.ANSWER``).
* :func:`validate_batch` (in :mod:`meds_gym.meds.batch`) is the one validation boundary: every
  entry point turns user input into a trusted :class:`Batch` there, and nothing behind it checks
  again. Its fingerprint check, :func:`validate_features`, is also what an adapter runs to reject
  a fingerprint early (the wrappers, before the wrapped env steps); the :class:`Fingerprints` it
  returns are not checked again.
* Adapters put the shaper in front of a world: :class:`MEDSRewardWrapper` (text envs),
  :class:`MEDSEpisodeRewardWrapper` (any env, fingerprinted per episode) and
  :class:`MEDSVectorRewardWrapper` (Gymnasium), ``meds_gym.integrations.sb3`` and
  ``meds_gym.integrations.trl``. They share :mod:`meds_gym.meds.adapter`: the ``training`` switch
  and save/load, the outcome reader and the ``info["meds"]`` builder.
"""

from meds_gym.meds.adapter import DEFAULT_PROBLEM_ID, MEDS_INFO_KEYS
from meds_gym.meds.answer_memory import AnswerMemory, answer_key
from meds_gym.meds.batch import (
    Batch,
    Fingerprints,
    mixed_groups,
    shaped_groups,
    validate_batch,
    validate_features,
)
from meds_gym.meds.config import (
    ClusterMethod,
    GroupRule,
    MEDSConfig,
    NoiseVote,
    PenaltyTarget,
    TieBreak,
)
from meds_gym.meds.memory import NOT_ASSIGNED, Bucket, MemoryStats
from meds_gym.meds.penalty import meds_penalty
from meds_gym.meds.shaper import MEDSShaper, ShapeResult
from meds_gym.meds.wrappers import (
    MEDSEpisodeRewardWrapper,
    MEDSRewardWrapper,
    MEDSVectorRewardWrapper,
    Trajectory,
)

__all__ = [
    "DEFAULT_PROBLEM_ID",
    "MEDS_INFO_KEYS",
    "AnswerMemory",
    "NOT_ASSIGNED",
    "Batch",
    "Bucket",
    "ClusterMethod",
    "Fingerprints",
    "GroupRule",
    "MEDSConfig",
    "MEDSEpisodeRewardWrapper",
    "MEDSRewardWrapper",
    "MEDSShaper",
    "MEDSVectorRewardWrapper",
    "MemoryStats",
    "NoiseVote",
    "PenaltyTarget",
    "ShapeResult",
    "TieBreak",
    "Trajectory",
    "answer_key",
    "meds_penalty",
    "mixed_groups",
    "shaped_groups",
    "validate_batch",
    "validate_features",
]
