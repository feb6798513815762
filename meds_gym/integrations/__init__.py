"""Integrations with the frameworks users already train with.

:mod:`meds_gym.integrations.features` (episode fingerprints for non-text envs) has no optional
dependency. :mod:`meds_gym.integrations.sb3` needs the ``sb3`` extra and
:mod:`meds_gym.integrations.trl` the ``trl`` extra; their names are importable from here too,
lazily, so that ``import meds_gym.integrations`` never imports stable-baselines3, TRL or torch.
:mod:`meds_gym.integrations.hf` holds the answer fingerprint of a Hugging Face causal LM, shared
by the bundled agent and the TRL reward function (needs torch).
:mod:`meds_gym.integrations.openenv` (the ``openenv`` extra) serves a meds-gym env over OpenEnv
and wraps a served env as a Gymnasium env (:class:`OpenEnvTextEnv`).
"""

from __future__ import annotations

import importlib
from typing import Any

from meds_gym.integrations.features import (
    FeatureFn,
    policy_action_features,
    terminal_state_features,
    visitation_histogram,
)

_SB3_NAMES = ("MEDSLoggerCallback", "MEDSVecEnvWrapper")
_TRL_NAMES = ("MEDSCheckpointCallback", "MEDSRewardFunction", "MEDSStep")
_OPENENV_NAMES = ("OpenEnvTextEnv",)


def __getattr__(name: str) -> Any:
    if name in _SB3_NAMES:
        module = importlib.import_module("meds_gym.integrations.sb3")
        return getattr(module, name)
    if name in _TRL_NAMES:
        module = importlib.import_module("meds_gym.integrations.trl")
        return getattr(module, name)
    if name in _OPENENV_NAMES:
        module = importlib.import_module("meds_gym.integrations.openenv")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FeatureFn",
    "MEDSCheckpointCallback",
    "MEDSLoggerCallback",
    "MEDSRewardFunction",
    "MEDSStep",
    "MEDSVecEnvWrapper",
    "OpenEnvTextEnv",
    "policy_action_features",
    "terminal_state_features",
    "visitation_histogram",
]
