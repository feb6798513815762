"""MEDS: Memory-Enhanced Dynamic reward Shaping (arXiv 2604.11297), DESIGN.md section 2.

The framework-free core is :class:`MEDSShaper`; :class:`MEDSRewardWrapper` and
:class:`MEDSVectorRewardWrapper` put it behind Gymnasium's single and vector env interfaces.
"""

from meds_gym.meds.config import MEDSConfig, NoiseVote, PenaltyTarget
from meds_gym.meds.memory import NOT_ASSIGNED, Bucket, ErrorMemory, MemoryStats
from meds_gym.meds.penalty import meds_penalty
from meds_gym.meds.shaper import MEDSShaper, ShapeResult
from meds_gym.meds.wrappers import MEDSRewardWrapper, MEDSVectorRewardWrapper, Trajectory

__all__ = [
    "NOT_ASSIGNED",
    "Bucket",
    "ErrorMemory",
    "MEDSConfig",
    "MEDSRewardWrapper",
    "MEDSShaper",
    "MEDSVectorRewardWrapper",
    "MemoryStats",
    "NoiseVote",
    "PenaltyTarget",
    "ShapeResult",
    "Trajectory",
    "meds_penalty",
]
