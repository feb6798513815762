"""What every MEDS adapter shares: its shaper, reading outcomes, and reporting what MEDS did.

The Gymnasium wrappers and the stable-baselines3 and TRL integrations differ only in how they get
rollouts out of their world. They hold a :class:`~meds_gym.meds.MEDSShaper` through
:class:`HoldsShaper` (configuration, ``training`` switch, save and load), read success and problem
ids with :func:`read_outcome` and :func:`read_problem_id`, and describe the result with
:func:`meds_info`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.meds.config import ClusterMethod, MEDSConfig
from meds_gym.meds.memory import NOT_ASSIGNED
from meds_gym.meds.shaper import MEDSShaper, ShapeResult

SUCCESS_KEYS = ("is_success", "correct")
"""Info keys read, in this order, for whether an episode succeeded: Gymnasium's convention first,
then the text envs' ``correct`` (they set both)."""

DEFAULT_PROBLEM_ID = "__env__"
"""Bucket id used when an env's info carries no ``problem_id``: every episode of the env then
shares one pair of buckets (successes, failures)."""

IsCorrectFn = Callable[[float, Mapping[str, Any]], bool]
"""``is_correct(reward, info) -> bool``: whether a (terminal) step was a success."""

FEATURE_FN_NAME = "feature_fn(trajectory)"
"""How errors name what an episode's ``feature_fn`` returned."""

MEDS_INFO_KEYS = ("raw_reward", "penalty", "cluster", "cluster_size", "shaped_reward")
"""The entries of ``info["meds"]``."""


def check_adapter_arguments(config: Any, is_correct: Any) -> None:
    """The arguments every adapter takes: a :class:`MEDSConfig` and an optional success rule.

    Raises:
        InvalidArgumentError: If ``config`` is not a MEDSConfig.
        TypeError: If ``is_correct`` is neither None nor callable.
    """
    if not isinstance(config, MEDSConfig):
        raise InvalidArgumentError("config", "a MEDSConfig", config)
    if is_correct is not None and not callable(is_correct):
        raise invalid_type("is_correct", "a callable (reward, info) -> bool, or None", is_correct)


def read_outcome(
    reward: float, info: Mapping[str, Any], is_correct: IsCorrectFn | None, name: str = "info"
) -> bool:
    """Whether a terminal step succeeded: ``is_correct(reward, info)`` or the info's flag.

    Args:
        reward: The step's raw reward.
        info: The step's info.
        is_correct: The user's rule, or ``None`` to read :data:`SUCCESS_KEYS`.
        name: How errors name ``info`` (for example ``infos[3]``).

    Raises:
        InvalidArgumentError: If neither gives a bool.
    """
    if is_correct is not None:
        value = is_correct(reward, info)
        where = f"is_correct(reward, {name})"
    else:
        for key in SUCCESS_KEYS:
            if key in info:
                value, where = info[key], f'{name}["{key}"]'
                break
        else:
            raise InvalidArgumentError(
                name,
                "an env info dict with a boolean "
                + " or ".join(repr(k) for k in SUCCESS_KEYS)
                + " entry",
                sorted(info),
                "Pass is_correct=lambda reward, info: ... to the MEDS wrapper to decide success "
                "yourself.",
            )
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(where, "a bool", value)
    return bool(value)


def read_problem_id(
    info: Mapping[str, Any], default: str | None, name: str = 'info["problem_id"]'
) -> str:
    """``info["problem_id"]``, or ``default`` when the info has none.

    Raises:
        InvalidArgumentError: If it is not a str, or is missing and there is no default.
    """
    pid = info.get("problem_id", default)
    if pid is None:
        raise InvalidArgumentError(name, "a str problem id in the env's step or reset info", None)
    if not isinstance(pid, str):
        raise InvalidArgumentError(name, "a str problem id", pid)
    return pid


def reads_answers(shaper: MEDSShaper) -> bool:
    """Whether the shaper's memory clusters by final answer (``ClusterMethod.ANSWER``)."""
    return shaper.config.cluster_method is ClusterMethod.ANSWER


def check_answer(value: Any, name: str) -> str | None:
    """An episode's answer for the answer-string memory: a str, or ``None`` for none."""
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(
            name, "the episode's answer (a str, or None) with ClusterMethod.ANSWER", value
        )
    return value


def shape_rollouts(
    shaper: MEDSShaper,
    problem_ids: list[str],
    correct: Any,
    rewards: npt.ArrayLike,
    features: Any,
    answers: list[str | None] | None,
    *,
    kept: npt.NDArray[np.bool_] | None = None,
) -> ShapeResult:
    """``shaper.shape`` given what the memory reads: ``answers`` or the fingerprints."""
    if reads_answers(shaper):
        return shaper.shape(problem_ids, correct, rewards, None, kept=kept, answers=answers)
    return shaper.shape(problem_ids, correct, rewards, features, kept=kept)


def meds_info(raw: npt.ArrayLike, result: ShapeResult, rows: npt.ArrayLike) -> dict[str, Any]:
    """``info["meds"]`` for a batch: (B,) arrays, rollouts outside ``rows`` left unshaped.

    Args:
        raw: (B,) raw rewards of every rollout (sub-env) of the step.
        result: The shaper's result for the rollouts ``rows``.
        rows: (M,) indices into the B rollouts of the rollouts that were shaped.

    Returns:
        Dict of :data:`MEDS_INFO_KEYS` -> (B,) arrays; unshaped rollouts have penalty 0, cluster
        ``NOT_ASSIGNED`` (-2), cluster size 0 and their raw reward.
    """
    rewards = np.asarray(raw, dtype=np.float64)
    chosen = np.asarray(rows, dtype=np.int64)
    n = rewards.shape[0]
    info = {
        "raw_reward": rewards.copy(),
        "penalty": np.zeros(n),
        "cluster": np.full(n, NOT_ASSIGNED, dtype=np.int64),
        "cluster_size": np.zeros(n, dtype=np.int64),
        "shaped_reward": rewards.copy(),
    }
    info["penalty"][chosen] = result.penalties
    info["cluster"][chosen] = result.clusters
    info["cluster_size"][chosen] = result.cluster_sizes
    info["shaped_reward"][chosen] = result.shaped_rewards
    return info


def meds_info_at(info: Mapping[str, npt.NDArray[Any]], i: int) -> dict[str, float | int]:
    """Rollout ``i``'s entry of a batch's :func:`meds_info`, as Python scalars."""
    return {key: info[key][i].item() for key in MEDS_INFO_KEYS}


class HoldsShaper:
    """Mixin for adapters that own a :class:`~meds_gym.meds.MEDSShaper` in ``self.shaper``."""

    shaper: MEDSShaper

    @property
    def config(self) -> MEDSConfig:
        """The MEDS configuration."""
        return self.shaper.config

    @property
    def training(self) -> bool:
        """Whether the memory learns; ``False`` assigns and penalises but never stores."""
        return self.shaper.training

    @training.setter
    def training(self, value: bool) -> None:
        self.shaper.training = value

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the MEDS state (configuration and memory) to one file, without the env."""
        self.shaper.save(path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the MEDS state with one saved by :meth:`save`; :attr:`training` is kept."""
        shaper = MEDSShaper.load(path)
        shaper.training = self.shaper.training
        self.shaper = shaper
