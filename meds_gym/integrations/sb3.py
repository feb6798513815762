"""MEDS for stable-baselines3: a ``VecEnvWrapper`` with one shared error memory, and a logger.

:class:`MEDSVecEnvWrapper` sits on any SB3 ``VecEnv`` (``DummyVecEnv``, ``SubprocVecEnv``, ...).
It lives in the main process, so all sub-environments share one error memory even when they run
in worker processes: a per-process wrapper would only see its own fraction of the history.
:class:`MEDSLoggerCallback` writes the memory's figures to SB3's logger under ``meds/``.

Needs the ``sb3`` extra (``pip install 'meds-gym[sb3]'``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError, MissingExtraError, invalid_type

try:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, unwrap_vec_wrapper
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
except ImportError as exc:  # pragma: no cover - exercised by simulating a missing package
    raise MissingExtraError(
        "meds_gym.integrations.sb3", extra="sb3", package="stable-baselines3"
    ) from exc

from meds_gym.meds.adapter import (
    DEFAULT_PROBLEM_ID,
    FEATURE_FN_NAME,
    HoldsShaper,
    check_adapter_arguments,
    check_answer,
    meds_info,
    meds_info_at,
    read_outcome,
    reads_answers,
    shape_rollouts,
)
from meds_gym.meds.batch import validate_features
from meds_gym.meds.config import MEDSConfig
from meds_gym.meds.shaper import MEDSShaper
from meds_gym.meds.wrappers import Trajectory

logger = logging.getLogger(__name__)


def _obs_at(obs: Any, i: int) -> Any:
    """Sub-env ``i``'s observation from a batched SB3 observation (array, dict or tuple)."""
    if isinstance(obs, dict):
        return {key: np.array(value[i]) for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(np.array(value[i]) for value in obs)
    return np.array(obs[i])


class MEDSVecEnvWrapper(HoldsShaper, VecEnvWrapper):
    """MEDS reward shaping for a stable-baselines3 ``VecEnv``: repeated failure modes earn less.

    The wrapper records every sub-env's episode as a :class:`~meds_gym.meds.Trajectory`
    (observations ``o_0 .. o_T``, actions, raw rewards, infos). When an episode ends (SB3 resets
    the sub-env at once and puts the last observation in ``info["terminal_observation"]``, which
    is what the trajectory ends with), ``feature_fn(trajectory)`` fingerprints it,
    ``is_correct(reward, info)`` says whether it succeeded (default ``info["is_success"]``, else
    ``info["correct"]``) and ``problem_id_fn(info)`` names its bucket (default one constant
    bucket). All episodes that end in one vector step form one :meth:`MEDSShaper.shape` batch:
    each is voted into a cluster of
    past episodes of its bucket, a failed one loses ``min(alpha * log(n + 1), beta)`` from its
    terminal reward, and only then is the memory refitted. Other steps' rewards pass unchanged.
    Rewards are returned as float32 whatever the env's reward type (an env with integer rewards
    would otherwise truncate every penalty to 0).

    The terminal step's info gets ``info["meds"]`` (``raw_reward``, ``penalty``, ``cluster``,
    ``cluster_size``, ``shaped_reward``), as in :class:`~meds_gym.meds.MEDSEpisodeRewardWrapper`,
    its one-env counterpart. Set :attr:`training` to ``False`` to evaluate with a frozen memory.

    With ``VecNormalize``, put it outside this wrapper (``VecNormalize(MEDSVecEnvWrapper(venv,
    ...))``): the shaped reward is then normalised like any other, and MEDS sees the env's raw
    observations, rewards and infos.

    Args:
        venv: The vectorised env.
        feature_fn: ``feature_fn(trajectory) -> (L,) float vector`` (or ``None``: no fingerprint,
            never penalised); see :mod:`meds_gym.integrations.features`. With
            ``ClusterMethod.ANSWER`` it returns the episode's answer instead (a str, or ``None``).
        config: The MEDS configuration.
        is_correct: ``is_correct(reward, info) -> bool`` on the terminal step; default reads
            ``info["is_success"]``.
        problem_id_fn: ``problem_id_fn(info) -> str`` on the terminal step; default
            :data:`~meds_gym.meds.wrappers.DEFAULT_PROBLEM_ID` for every episode.
        training: Whether the memory learns.

    Example:
        >>> from stable_baselines3.common.env_util import make_vec_env
        >>> from meds_gym.envs.trap_grid import TrapGridEnv
        >>> from meds_gym.integrations.features import terminal_state_features
        >>> venv = make_vec_env(lambda: TrapGridEnv(num_layouts=4), n_envs=2, seed=0)
        >>> venv = MEDSVecEnvWrapper(venv, terminal_state_features(venv.observation_space))
        >>> obs = venv.reset()
    """

    def __init__(
        self,
        venv: VecEnv,
        feature_fn: Callable[[Trajectory], Any],
        config: MEDSConfig = MEDSConfig(),  # noqa: B008 - frozen, so sharing it is safe
        *,
        is_correct: Callable[[float, Mapping[str, Any]], bool] | None = None,
        problem_id_fn: Callable[[Mapping[str, Any]], str] | None = None,
        training: bool = True,
    ) -> None:
        if not isinstance(venv, VecEnv):
            raise invalid_type("venv", "a stable_baselines3 VecEnv", venv)
        if not callable(feature_fn):
            raise invalid_type(
                "feature_fn", "a callable trajectory -> 1-D float vector", feature_fn
            )
        check_adapter_arguments(config, is_correct)
        if problem_id_fn is not None and not callable(problem_id_fn):
            raise invalid_type("problem_id_fn", "a callable info -> str, or None", problem_id_fn)
        super().__init__(venv)
        self.shaper = MEDSShaper(config)
        self.shaper.training = training
        self.feature_fn = feature_fn
        self.is_correct = is_correct
        self.problem_id_fn = problem_id_fn
        self._trajectories: list[Trajectory | None] = [None] * self.num_envs
        self._actions: Any = None
        self._feature_dim: int | None = None
        self._episode_penalties: list[float] = []
        self._episode_failed: list[bool] = []

    # ------------------------------------------------------------------ state
    def pop_episode_stats(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Penalties and failure flags of the episodes finished since the last call, then clear.

        Returns:
            ``(penalties, failed)``: (E,) float64 penalty of each finished episode (0 for
            successes) and (E,) bool whether it failed.
        """
        penalties = np.asarray(self._episode_penalties, dtype=np.float64)
        failed = np.asarray(self._episode_failed, dtype=bool)
        self._episode_penalties = []
        self._episode_failed = []
        return penalties, failed

    # ------------------------------------------------------------------ VecEnv API
    def _reset_info(self, i: int) -> dict[str, Any]:
        infos = getattr(self.venv.unwrapped, "reset_infos", None)
        if infos is None or i >= len(infos):
            return {}
        return dict(infos[i])

    def reset(self) -> VecEnvObs:
        """Reset every sub-env and start recording new episodes (unfinished ones are dropped)."""
        obs = self.venv.reset()
        for i in range(self.num_envs):
            self._trajectories[i] = Trajectory(
                observations=[_obs_at(obs, i)], reset_info=self._reset_info(i)
            )
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions to the sub-envs (recorded with their step)."""
        self._actions = actions
        self.venv.step_async(actions)

    def _outcome(self, i: int, reward: float, info: Mapping[str, Any]) -> tuple[str, bool]:
        if self.problem_id_fn is None:
            pid = DEFAULT_PROBLEM_ID
        else:
            pid = self.problem_id_fn(info)
            if not isinstance(pid, str):
                raise InvalidArgumentError(f"problem_id_fn(infos[{i}])", "a str problem id", pid)
        return pid, read_outcome(reward, info, self.is_correct, f"infos[{i}]")

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-env, shape the terminal rewards of failed episodes as one batch."""
        obs, rewards, dones, infos = self.venv.step_wait()
        actions = self._actions
        infos = [dict(info) for info in infos]
        raw = np.asarray(rewards, dtype=np.float64)
        finished: list[int] = []
        trajectories: list[Trajectory] = []
        for i in range(self.num_envs):
            trajectory = self._trajectories[i]
            if trajectory is None:
                raise RuntimeError("Call reset() on MEDSVecEnvWrapper before stepping it.")
            last = infos[i].get("terminal_observation") if dones[i] else None
            trajectory.observations.append(_obs_at(obs, i) if last is None else last)
            trajectory.actions.append(None if actions is None else np.array(actions[i]))
            trajectory.rewards.append(float(raw[i]))
            trajectory.infos.append(infos[i])
            if dones[i]:
                finished.append(i)
                trajectories.append(trajectory)
                # SB3 has already reset this sub-env: its next episode starts from obs[i].
                self._trajectories[i] = Trajectory(
                    observations=[_obs_at(obs, i)], reset_info=self._reset_info(i)
                )

        if finished:
            # Everything is validated before the shaper is called, so a bad feature_fn or info
            # leaves the memory exactly as it was.
            outcomes = [self._outcome(i, float(raw[i]), infos[i]) for i in finished]
            pids = [pid for pid, _ in outcomes]
            flags = [flag for _, flag in outcomes]
            found = [self.feature_fn(trajectory) for trajectory in trajectories]
            features = answers = None
            if reads_answers(self.shaper):  # feature_fn gives each episode's answer
                answers = [check_answer(value, FEATURE_FN_NAME) for value in found]
            else:
                # Held to the length of every earlier episode's fingerprint, stored or not.
                dim = self._feature_dim if self._feature_dim is not None else self.shaper.memory.dim
                names = [f"{FEATURE_FN_NAME} of sub-env {i}" for i in finished]
                features = validate_features(found, len(found), dim, names=names)
            correct = np.array(flags, dtype=bool)
            result = shape_rollouts(self.shaper, pids, correct, raw[finished], features, answers)
            if features is not None and features.dim is not None:
                self._feature_dim = features.dim
            table = meds_info(raw, result, finished)
            for j, i in enumerate(finished):
                infos[i]["meds"] = meds_info_at(table, i)
                self._episode_penalties.append(float(result.penalties[j]))
                self._episode_failed.append(not flags[j])
            shaped_rewards = table["shaped_reward"].astype(np.float32)
        else:
            shaped_rewards = raw.astype(np.float32)
        return obs, shaped_rewards, dones, infos

    # ------------------------------------------------------------------ persistence
    @classmethod
    def load(  # type: ignore[override]  # like VecNormalize.load: a new wrapper from a file
        cls,
        path: str | os.PathLike[str],
        venv: VecEnv,
        feature_fn: Callable[[Trajectory], Any],
        **kwargs: Any,
    ) -> MEDSVecEnvWrapper:
        """Wrap ``venv`` with the MEDS state saved by :meth:`save` (like ``VecNormalize.load``).

        Args:
            path: A file written by :meth:`save`.
            venv: The env to wrap.
            feature_fn: The fingerprint function (functions are not saved).
            **kwargs: ``is_correct``, ``problem_id_fn``, ``training``; the configuration comes
                from the file.

        Returns:
            The wrapper, whose memory continues bit-exactly from the saved one.
        """
        if "config" in kwargs:
            raise InvalidArgumentError(
                "config", "absent (the configuration is read from the saved file)", kwargs["config"]
            )
        shaper = MEDSShaper.load(path)
        wrapper = cls(venv, feature_fn, shaper.config, **kwargs)
        shaper.training = wrapper.training
        wrapper.shaper = shaper
        wrapper._feature_dim = shaper.memory.dim
        return wrapper


class MEDSLoggerCallback(BaseCallback):
    """Record the MEDS figures of the training env in SB3's logger, at the end of each rollout.

    Scalars: ``meds/penalty_mean`` (mean penalty over the episodes that ended during the rollout,
    successes counting 0), ``meds/share_penalised`` (share of those episodes with a penalty > 0),
    ``meds/clusters`` (clusters over all buckets of the memory) and ``meds/memory_rows`` (stored
    fingerprints). Rollouts in which no episode ended record only the last two.

    Args:
        verbose: SB3 verbosity.

    Example:
        >>> callback = MEDSLoggerCallback()  # model.learn(..., callback=callback)
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._wrapper: MEDSVecEnvWrapper | None = None

    def _init_callback(self) -> None:
        env = self.training_env
        wrapper = unwrap_vec_wrapper(env, MEDSVecEnvWrapper) if env is not None else None
        if wrapper is None:
            raise InvalidArgumentError(
                "model.env",
                "a VecEnv wrapped in MEDSVecEnvWrapper",
                env,
                "Wrap the training env: model = PPO(policy, MEDSVecEnvWrapper(venv, feature_fn)).",
            )
        self._wrapper = wrapper
        wrapper.pop_episode_stats()  # start counting from the first rollout

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        wrapper = self._wrapper
        if wrapper is None:
            return
        penalties, _ = wrapper.pop_episode_stats()
        if penalties.size:
            self.logger.record("meds/penalty_mean", float(penalties.mean()))
            self.logger.record("meds/share_penalised", float((penalties > 0).mean()))
        # Counted here rather than with memory.stats(), which also computes an eigendecomposition
        # per bucket: too costly to run after every rollout.
        memory = wrapper.shaper.memory
        self.logger.record("meds/clusters", memory.n_clusters)
        self.logger.record("meds/memory_rows", memory.n_rows)
