"""Episode fingerprints for non-text envs: ``feature_fn(trajectory) -> 1-D float vector``.

MEDS clusters the fingerprints of failed episodes (docs/design.md section 2). For a language model
the fingerprint is read from its hidden states; for any other env these functions turn a finished
episode (a :class:`~meds_gym.meds.Trajectory`: observations ``o_0 .. o_T``, actions, rewards, infos)
into a vector, so that episodes that failed the same way land close together:

- :func:`terminal_state_features`: where the episode ended (the flattened terminal observation),
- :func:`visitation_histogram`: which states it went through (discrete observation spaces),
- :func:`policy_action_features`: what the policy itself wanted to do along the way.

Each is a factory that returns the ``feature_fn`` taken by
:class:`~meds_gym.meds.MEDSEpisodeRewardWrapper` (one Gymnasium env) and
:class:`~meds_gym.integrations.sb3.MEDSVecEnvWrapper` (an SB3 ``VecEnv``). None of them imports
stable-baselines3 or torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.meds.wrappers import Trajectory

FeatureFn = Callable[[Trajectory], npt.NDArray[np.float64]]
"""``feature_fn(trajectory) -> (L,) float64`` fingerprint of a finished episode."""


def _check_trajectory(trajectory: Any, name: str) -> None:
    if not isinstance(trajectory, Trajectory):
        raise invalid_type(name, "a meds_gym.meds.Trajectory", trajectory)
    if not trajectory.observations:
        raise InvalidArgumentError(
            f"{name}.observations", "at least one observation (o_0 .. o_T)", []
        )


def terminal_state_features(
    observation_space: spaces.Space[Any] | None = None,
) -> FeatureFn:
    """Fingerprint an episode by its terminal observation, flattened.

    With ``observation_space`` the observation is flattened by
    :func:`gymnasium.spaces.utils.flatten` (a ``Discrete`` state becomes a one-hot vector, so no
    state is the zero vector that cosine distance cannot handle); without it the observation is
    read as a numeric array and raveled. Cost: O(size of one observation) per episode.

    Args:
        observation_space: The env's observation space, or ``None``.

    Returns:
        ``feature_fn(trajectory) -> (D,) float64``.

    Example:
        >>> from meds_gym.meds import Trajectory
        >>> fn = terminal_state_features(spaces.Discrete(3))
        >>> fn(Trajectory(observations=[0, 2], actions=[1])).tolist()
        [0.0, 0.0, 1.0]
    """
    if observation_space is not None and not isinstance(observation_space, spaces.Space):
        raise invalid_type(
            "observation_space", "a gymnasium.spaces.Space or None", observation_space
        )

    def feature_fn(trajectory: Trajectory) -> npt.NDArray[np.float64]:
        _check_trajectory(trajectory, "trajectory")
        last = trajectory.observations[-1]
        if observation_space is not None:
            flat = spaces.utils.flatten(observation_space, last)
        else:
            flat = np.asarray(last)
            if flat.dtype.kind not in "biuf":
                raise InvalidArgumentError(
                    "trajectory.observations[-1]",
                    "a numeric observation (or pass observation_space to flatten it)",
                    last,
                )
        return np.asarray(flat, dtype=np.float64).reshape(-1)

    return feature_fn


def visitation_histogram(observation_space: spaces.Discrete) -> FeatureFn:
    """Fingerprint an episode by the states it visited: normalised counts over a ``Discrete`` space.

    Entry ``s - start`` is the share of the episode's observations ``o_0 .. o_T`` (reset and
    terminal observation included) that were state ``s``; the entries sum to 1. Cost: O(T + n).

    Args:
        observation_space: The env's ``Discrete(n)`` observation space.

    Returns:
        ``feature_fn(trajectory) -> (n,) float64``.

    Example:
        >>> from meds_gym.meds import Trajectory
        >>> fn = visitation_histogram(spaces.Discrete(3))
        >>> fn(Trajectory(observations=[0, 1, 1, 0], actions=[1, 1, 0])).tolist()
        [0.5, 0.5, 0.0]
    """
    if not isinstance(observation_space, spaces.Discrete):
        raise invalid_type(
            "observation_space",
            "a gymnasium.spaces.Discrete (use terminal_state_features for other spaces)",
            observation_space,
        )
    n = int(observation_space.n)
    start = int(observation_space.start)

    def feature_fn(trajectory: Trajectory) -> npt.NDArray[np.float64]:
        _check_trajectory(trajectory, "trajectory")
        states = np.asarray(trajectory.observations).reshape(-1)
        if states.dtype.kind not in "iu" or states.shape[0] != len(trajectory.observations):
            raise InvalidArgumentError(
                "trajectory.observations", f"integer states of Discrete({n})", states
            )
        index = states.astype(np.int64) - start
        outside = (index < 0) | (index >= n)
        if outside.any():
            bad = int(states[np.flatnonzero(outside)[0]])
            raise InvalidArgumentError(
                "trajectory.observations",
                f"states in [{start}, {start + n}) of the observation space",
                bad,
            )
        counts = np.bincount(index, minlength=n).astype(np.float64)
        return counts / counts.sum()

    return feature_fn


def policy_action_features(model: Any, kind: str = "probs") -> FeatureFn:
    """Fingerprint an episode by the policy's own action distribution along it.

    The policy of ``model`` (a stable-baselines3 algorithm, e.g. ``PPO``) is evaluated on the
    observations at which actions were taken, ``o_0 .. o_{T-1}``, and the fingerprint is the mean
    over the episode followed by the value at its last step. For a ``Discrete(A)`` action space
    the values are the action probabilities (``kind="probs"``) or log-probabilities
    (``kind="logits"``), giving a (2A,) vector; for a ``Box`` action space they are the mean of
    the action distribution (``kind`` is then ignored), giving (2D,).

    Cost: one extra batched forward pass of the policy network over the T observations of every
    finished episode, under ``torch.no_grad`` and on the policy's device: about as much policy
    inference again as the rollout itself did for those steps. Observations are fed as the MEDS
    wrapper recorded them, i.e. as the env returned them: with ``VecNormalize(obs=True)`` around
    the MEDS wrapper the policy was trained on normalised inputs, so normalise the trajectory's
    observations (``VecNormalize.normalize_obs``) in your own ``feature_fn`` before calling this
    one, or use :func:`terminal_state_features`.

    Args:
        model: A stable-baselines3 model with a ``policy`` (``model.policy.get_distribution``).
        kind: ``"probs"`` or ``"logits"`` (discrete action spaces).

    Returns:
        ``feature_fn(trajectory) -> (2A,) float64``.
    """
    policy = getattr(model, "policy", None)
    if policy is None or not callable(getattr(policy, "get_distribution", None)):
        raise invalid_type(
            "model", "a stable-baselines3 model whose policy has get_distribution", model
        )
    if kind not in ("probs", "logits"):
        raise InvalidArgumentError("kind", "one of 'probs', 'logits'", kind)

    def feature_fn(trajectory: Trajectory) -> npt.NDArray[np.float64]:
        import torch  # deferred: only this feature needs torch

        _check_trajectory(trajectory, "trajectory")
        steps = len(trajectory.actions)
        if steps == 0:
            raise InvalidArgumentError(
                "trajectory.actions", "at least one action (a finished episode)", []
            )
        seen = trajectory.observations[:steps]  # o_0 .. o_{T-1}: where the actions were taken
        first = seen[0]
        if isinstance(first, dict):
            batch: Any = {key: np.stack([np.asarray(o[key]) for o in seen]) for key in first}
        else:
            batch = np.stack([np.asarray(o) for o in seen])
        with torch.no_grad():
            obs_tensor, _ = policy.obs_to_tensor(batch)
            distribution = policy.get_distribution(obs_tensor).distribution
            if isinstance(distribution, torch.distributions.Categorical):
                values = distribution.probs if kind == "probs" else distribution.logits
            else:
                values = distribution.mean
            matrix = values.reshape(steps, -1).double().cpu().numpy()  # (T, A)
        return np.concatenate([matrix.mean(axis=0), matrix[-1]])

    return feature_fn
