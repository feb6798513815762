"""Integrations with the frameworks users already train with.

:mod:`meds_gym.integrations.features` (episode fingerprints for non-text envs) has no optional
dependency. :mod:`meds_gym.integrations.sb3` needs the ``sb3`` extra and
:mod:`meds_gym.integrations.trl` the ``trl`` extra; their names are importable from here too,
lazily, so that ``import meds_gym.integrations`` never imports stable-baselines3, TRL or torch.
:mod:`meds_gym.integrations.hf` holds the answer fingerprint of a Hugging Face causal LM, shared
by the bundled agent and the TRL reward function (needs torch).
:mod:`meds_gym.integrations.openenv` (the ``openenv`` extra) serves a meds-gym env over OpenEnv
and wraps a served env as a Gymnasium env (:class:`OpenEnvTextEnv`).
:mod:`meds_gym.integrations.verifiers` (the ``verifiers`` extra, Python >= 3.11) makes a
single-turn ``verifiers`` taskset a meds-gym env; its names are lazy here too.
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

_LAZY_MODULES = {
    "sb3": ("MEDSLoggerCallback", "MEDSVecEnvWrapper"),
    "trl": ("MEDSCheckpointCallback", "MEDSRewardFunction", "MEDSStep"),
    "openenv": ("OpenEnvTextEnv",),
    "verifiers": ("VerifiersSource", "verifiers_env"),
}
"""Module of this package (each needing its extra) -> the names it lends to the package."""
_LAZY_NAMES = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        module = importlib.import_module(f"meds_gym.integrations.{_LAZY_NAMES[name]}")
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
    "VerifiersSource",
    "policy_action_features",
    "terminal_state_features",
    "verifiers_env",
    "visitation_histogram",
]
