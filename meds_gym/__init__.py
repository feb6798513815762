"""meds-gym: text Gymnasium environments with verifiable rewards, and MEDS reward shaping.

Importing the package registers the ``meds_gym/<Name>-v0`` environment ids with Gymnasium. It does
not import torch, transformers or datasets.
"""

from importlib.metadata import PackageNotFoundError, version

from meds_gym.envs import ReasoningEnv, register_envs

try:
    __version__ = version("meds-gym")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

register_envs()

__all__ = ["ReasoningEnv", "__version__", "register_envs"]
