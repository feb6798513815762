"""Gymnasium wrappers that put MEDS reward shaping in front of any env (docs/design.md, 1 and 4)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.meds.adapter import (
    DEFAULT_PROBLEM_ID,
    FEATURE_FN_NAME,
    HoldsShaper,
    IsCorrectFn,
    check_adapter_arguments,
    check_answer,
    meds_info,
    meds_info_at,
    read_outcome,
    read_problem_id,
    reads_answers,
    shape_rollouts,
)
from meds_gym.meds.batch import Fingerprints, shaped_groups, validate_features
from meds_gym.meds.config import MEDSConfig
from meds_gym.meds.shaper import MEDSShaper

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROBLEM_ID",
    "MEDSEpisodeRewardWrapper",
    "MEDSRewardWrapper",
    "MEDSVectorRewardWrapper",
    "Trajectory",
]


@dataclass
class Trajectory:
    """One episode, as :class:`MEDSEpisodeRewardWrapper` hands it to ``feature_fn``.

    Attributes:
        observations: ``o_0 .. o_T``: the reset observation, then one per step.
        actions: ``a_0 .. a_{T-1}``.
        rewards: The env's raw rewards, one per step.
        infos: The env's step infos, one per step.
        reset_info: The info returned by ``reset``.
    """

    observations: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    reset_info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)


def _split_text_action(action: Any, name: str) -> tuple[str, Any]:
    """``{"text": str, "features": vector | None}`` or a plain ``str`` -> (text, features)."""
    if isinstance(action, str):
        return action, None
    if isinstance(action, Mapping):
        if "text" not in action:
            raise InvalidArgumentError(
                name, 'a dict with a "text" entry (and optionally "features")', sorted(action)
            )
        text = action["text"]
        if not isinstance(text, str):
            raise InvalidArgumentError(f'{name}["text"]', "a str response", text)
        unknown = set(action) - {"text", "features"}
        if unknown:
            raise InvalidArgumentError(
                name, 'a dict with keys "text" and "features"', sorted(action)
            )
        return text, action.get("features")
    raise invalid_type(name, 'a str or a dict {"text": str, "features": vector | None}', action)


def _answer_of(info: Mapping[str, Any], text: str) -> str | None:
    """The final answer the answer-string memory reads: the env's parsed answer, else the text."""
    if "parsed_answer" in info:
        parsed = info["parsed_answer"]
        return parsed if isinstance(parsed, str) else None
    return text


def _check_fingerprints(
    shaper: MEDSShaper, features: list[Any], names: list[str]
) -> Fingerprints | None:
    """The rollouts' fingerprints checked against the memory; ``None`` if it reads answers."""
    if reads_answers(shaper):
        return None
    return validate_features(features, len(features), shaper.memory.dim, names=names)


class _SingleEnvWrapper(
    HoldsShaper, gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs
):
    """What the two single-env wrappers share: the shaper, the reset info, shaping one rollout."""

    def __init__(
        self,
        env: gym.Env[Any, Any],
        config: MEDSConfig,
        is_correct: IsCorrectFn | None,
        **recorded: Any,
    ) -> None:
        if not isinstance(env, gym.Env):
            raise invalid_type("env", "a gymnasium.Env", env)
        check_adapter_arguments(config, is_correct)
        # Recorded so that ``env.spec.make()`` (used by gymnasium's env checker) can rebuild the
        # wrapper; the rebuilt one starts with an empty memory.
        gym.utils.RecordConstructorArgs.__init__(
            self, config=config, is_correct=is_correct, **recorded
        )
        gym.Wrapper.__init__(self, env)
        self.shaper = MEDSShaper(config)
        self._is_correct = is_correct
        self._reset_info: dict[str, Any] = {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the wrapped env (its info is read for the episode's ``problem_id``)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_info = dict(info)
        return obs, info

    def _shape_one(
        self,
        info: Mapping[str, Any],
        reward: float,
        features: Fingerprints | None,
        default_pid: str | None,
        answer: str | None = None,
    ) -> tuple[float, dict[str, Any]]:
        pid = read_problem_id({**self._reset_info, **info}, default_pid)
        correct = read_outcome(reward, info, self._is_correct)
        raw = np.array([reward], dtype=np.float64)
        result = shape_rollouts(self.shaper, [pid], [correct], raw, features, [answer])
        return float(result.shaped_rewards[0]), meds_info_at(meds_info(raw, result, [0]), 0)


class MEDSRewardWrapper(_SingleEnvWrapper):
    """Shape a text env's reward with MEDS: repeated kinds of mistakes earn less.

    For the text envs of :mod:`meds_gym.envs` (for any other env, see
    :class:`MEDSEpisodeRewardWrapper`). An action is ``{"text": response, "features":
    fingerprint}`` (a float (L,) vector or ``None``) or a plain string (no fingerprint, so no
    penalty). The fingerprint is checked before the wrapped env steps, so a bad one changes
    nothing; the text goes to the wrapped env. ``problem_id`` and correctness come from the env's
    step info (``info["is_success"]``, else ``info["correct"]``, or ``is_correct(reward, info)``);
    each step is a batch of one, so the memory updates after every step. Unless ``feature_dim``
    is given, the action space stays the wrapped env's ``Text`` space (dict actions are accepted
    but not part of it); with ``feature_dim`` it becomes ``Dict(text=<inner Text>,
    features=Box(L,))``.

    With ``MEDSConfig(cluster_method=ClusterMethod.ANSWER)`` (the answer-string baseline, no
    logits) the answer replaces the fingerprint: the env's ``info["parsed_answer"]`` (the
    meds-gym text envs give it), else the response text; any ``"features"`` are ignored.

    Every step's info gets the breakdown in ``info["meds"]`` (``raw_reward``, ``penalty``,
    ``cluster``, ``cluster_size``, ``shaped_reward``). Set :attr:`training` to ``False`` to
    evaluate with a frozen memory.

    Args:
        env: The text env to wrap.
        config: The MEDS configuration.
        is_correct: ``is_correct(reward, info) -> bool``, overriding the info keys.
        feature_dim: Fingerprint length L, to expose a ``Dict`` action space.

    Example:
        >>> import gymnasium as gym
        >>> import meds_gym
        >>> env = MEDSRewardWrapper(gym.make("meds_gym/Arithmetic-v0"), MEDSConfig(alpha=0.05))
        >>> _ = env.reset(seed=0)
        >>> *_, info = env.step({"text": "7", "features": [1.0, 0.5]})
        >>> sorted(info["meds"])
        ['cluster', 'cluster_size', 'penalty', 'raw_reward', 'shaped_reward']
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        config: MEDSConfig = MEDSConfig(),  # noqa: B008 - frozen, so sharing it is safe
        *,
        is_correct: IsCorrectFn | None = None,
        feature_dim: int | None = None,
    ) -> None:
        if feature_dim is not None and (
            isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1
        ):
            raise InvalidArgumentError("feature_dim", "an integer >= 1 or None", feature_dim)
        super().__init__(env, config, is_correct, feature_dim=feature_dim)
        if feature_dim is not None:
            self.action_space = spaces.Dict(
                {
                    "text": env.action_space,
                    "features": spaces.Box(-np.inf, np.inf, (feature_dim,), np.float32),
                }
            )

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Check the fingerprint, step the wrapped env with the text, shape the reward."""
        text, features = _split_text_action(action, "action")
        checked = _check_fingerprints(self.shaper, [features], ['action["features"]'])
        obs, reward, terminated, truncated, info = self.env.step(text)
        info = dict(info)
        shaped, info["meds"] = self._shape_one(
            info, float(reward), checked, None, _answer_of(info, text)
        )
        return obs, shaped, terminated, truncated, info


class MEDSEpisodeRewardWrapper(_SingleEnvWrapper):
    """Shape the reward of any env whose episodes end in success or failure with MEDS.

    Actions pass through unchanged and the episode is recorded as a :class:`Trajectory`. At its
    last step (terminated or truncated) ``feature_fn(trajectory)`` gives the fingerprint (see
    :mod:`meds_gym.integrations.features`), ``is_correct(reward, info)`` the outcome (default:
    ``info["is_success"]``, else ``info["correct"]``), and the bucket is ``info["problem_id"]``
    (step info, then reset info) or :data:`DEFAULT_PROBLEM_ID`. Only that last step's reward is
    shaped, and its info gets the breakdown in ``info["meds"]`` (``raw_reward``, ``penalty``,
    ``cluster``, ``cluster_size``, ``shaped_reward``). Set :attr:`training` to ``False`` to
    evaluate with a frozen memory. For the text envs of :mod:`meds_gym.envs`, whose actions carry
    their fingerprints, use :class:`MEDSRewardWrapper`; for a stable-baselines3 ``VecEnv``,
    :class:`~meds_gym.integrations.sb3.MEDSVecEnvWrapper`.

    With ``MEDSConfig(cluster_method=ClusterMethod.ANSWER)`` (the answer-string baseline)
    ``feature_fn(trajectory)`` returns the episode's answer (a str, or ``None`` for none) instead
    of a vector.

    Args:
        env: The env to wrap.
        feature_fn: ``feature_fn(trajectory) -> (L,) float vector`` (or ``None``: no fingerprint,
            never penalised).
        config: The MEDS configuration.
        is_correct: ``is_correct(reward, info) -> bool``, overriding the info keys.

    Example:
        >>> import gymnasium as gym
        >>> env = MEDSEpisodeRewardWrapper(
        ...     gym.make("FrozenLake-v1", is_slippery=False), lambda t: [len(t), 1.0],
        ...     is_correct=lambda reward, info: reward > 0)
        >>> _ = env.reset(seed=0)
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        feature_fn: Callable[[Trajectory], Any],
        config: MEDSConfig = MEDSConfig(),  # noqa: B008 - frozen, so sharing it is safe
        *,
        is_correct: IsCorrectFn | None = None,
    ) -> None:
        if not callable(feature_fn):
            raise invalid_type("feature_fn", "a callable trajectory -> vector", feature_fn)
        super().__init__(env, config, is_correct, feature_fn=feature_fn)
        self.feature_fn = feature_fn
        self._trajectory: Trajectory | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the wrapped env and start recording a new episode."""
        obs, info = super().reset(seed=seed, options=options)
        self._trajectory = Trajectory(observations=[obs], reset_info=dict(info))
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env; at the episode's end, fingerprint it and shape the reward."""
        if self._trajectory is None:
            raise gym.error.ResetNeeded("Call reset() before step() (the episode has ended).")
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        value = float(reward)
        trajectory = self._trajectory
        trajectory.observations.append(obs)
        trajectory.actions.append(action)
        trajectory.rewards.append(value)
        trajectory.infos.append(info)
        if not (terminated or truncated):
            return obs, reward, terminated, truncated, info
        self._trajectory = None
        found = self.feature_fn(trajectory)  # with ClusterMethod.ANSWER, the episode's answer
        answer = check_answer(found, FEATURE_FN_NAME) if reads_answers(self.shaper) else None
        checked = _check_fingerprints(self.shaper, [found], [FEATURE_FN_NAME])
        shaped, info["meds"] = self._shape_one(info, value, checked, DEFAULT_PROBLEM_ID, answer)
        return obs, shaped, terminated, truncated, info


class MEDSVectorRewardWrapper(HoldsShaper, VectorWrapper):
    """MEDS for a :class:`gymnasium.vector.VectorEnv` of text envs: one vector step is one batch.

    Actions are a sequence of ``num_envs`` items, each a ``{"text", "features"}`` dict or a plain
    string; the action space stays the wrapped env's. Sub-envs that are being auto-reset on this
    step (``NEXT_STEP`` mode) are left out of the batch; in ``SAME_STEP`` mode the outcome of a
    finished sub-env is read from ``info["final_info"]``. ``info["meds"]`` holds (num_envs,)
    arrays ``raw_reward``, ``penalty``, ``cluster``, ``cluster_size``, ``shaped_reward`` and
    ``info["_meds"]`` marks the sub-envs that were shaped. With ``ClusterMethod.ANSWER`` each
    sub-env's ``info["parsed_answer"]`` (else its response text) replaces the fingerprint.

    With ``skip_uniform_groups=True`` the wrapper applies DAPO's group filter before MEDS, as the
    reference code does: a group whose rollouts on this step are all right or all wrong is neither
    shaped nor stored (its rewards pass unchanged, and it is not marked in ``info["_meds"]``).
    With ``config.shape_groups=GroupRule.MIXED_AND_ALL_WRONG`` (a variant beyond the paper) only
    all-right groups are skipped.
    What a group is depends on ``group_size``:

    * ``group_size=n``: the sub-envs are laid out as consecutive blocks of ``n`` that sample the
      same prompt together (sub-envs ``0..n-1`` are group 0, ``n..2n-1`` group 1, ...), as the
      reference code groups the ``n`` responses of one prompt. Each block is judged on its own,
      even when two blocks hold the same problem. ``num_envs`` must be a multiple of ``n``.
    * ``group_size=None`` (default): the sub-envs of one step that share a problem id form a group.
      Use it when each problem is drawn by at most one block per step.

    Either way, the error memory is keyed by problem id. Sub-envs that are being auto-reset on
    this step are not part of any group.

    Args:
        env: The vector env.
        config: The MEDS configuration.
        is_correct: ``is_correct(reward, info) -> bool`` per sub-env, overriding
            ``info["is_success"]`` / ``info["correct"]``.
        skip_uniform_groups: Shape and store only the groups that ``config.shape_groups`` names
            (by default those holding both right and wrong rollouts).
        group_size: With ``skip_uniform_groups``: the number of consecutive sub-envs that form one
            sampled group; ``None`` groups the sub-envs by problem id. Needs
            ``skip_uniform_groups=True`` (it has no other use).

    Example (2 prompts x 4 responses per step: the caller resets sub-envs 0-3 to one problem and
    4-7 to another):
        >>> import gymnasium as gym
        >>> import meds_gym
        >>> venv = gym.make_vec("meds_gym/Arithmetic-v0", num_envs=8, vectorization_mode="sync")
        >>> env = MEDSVectorRewardWrapper(venv, skip_uniform_groups=True, group_size=4)
    """

    def __init__(
        self,
        env: VectorEnv[Any, Any, Any],
        config: MEDSConfig = MEDSConfig(),  # noqa: B008 - frozen, so sharing it is safe
        *,
        is_correct: IsCorrectFn | None = None,
        skip_uniform_groups: bool = False,
        group_size: int | None = None,
    ) -> None:
        if not isinstance(env, VectorEnv):
            raise invalid_type("env", "a gymnasium.vector.VectorEnv", env)
        check_adapter_arguments(config, is_correct)
        if not isinstance(skip_uniform_groups, bool):
            raise InvalidArgumentError("skip_uniform_groups", "a bool", skip_uniform_groups)
        if group_size is not None:
            if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
                raise InvalidArgumentError("group_size", "an int >= 1 or None", group_size)
            if env.num_envs % group_size != 0:
                raise InvalidArgumentError(
                    "group_size",
                    f"a divisor of num_envs={env.num_envs} (the sub-envs form consecutive "
                    "groups of group_size)",
                    group_size,
                )
            if not skip_uniform_groups:
                raise InvalidArgumentError(
                    "group_size",
                    "None unless skip_uniform_groups=True (groups are used only by that filter)",
                    group_size,
                    "Pass skip_uniform_groups=True, or drop group_size.",
                )
        super().__init__(env)
        self.shaper = MEDSShaper(config)
        self._is_correct = is_correct
        self.skip_uniform_groups = skip_uniform_groups
        self.group_size = group_size
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._autoreset_mode = AutoresetMode(mode) if isinstance(mode, str) else mode
        self._resetting = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._resetting[:] = False
        return obs, info

    @staticmethod
    def _sub_info(info: Mapping[str, Any], i: int) -> dict[str, Any]:
        out = {}
        for key, value in info.items():
            if key.startswith("_"):
                continue
            mask = info.get(f"_{key}")
            if mask is not None and not bool(mask[i]):
                continue
            out[key] = value[i]
        return out

    def step(
        self, actions: Any
    ) -> tuple[Any, Any, npt.NDArray[np.bool_], npt.NDArray[np.bool_], dict[str, Any]]:
        """Step every sub-env and shape the batch of rewards (see the class docstring)."""
        if isinstance(actions, (str, bytes, Mapping)) or not isinstance(
            actions, (Sequence, np.ndarray)
        ):
            raise invalid_type("actions", f"a sequence of {self.num_envs} texts or dicts", actions)
        if len(actions) != self.num_envs:
            raise InvalidArgumentError(
                "actions", f"{self.num_envs} actions (one per sub-env)", f"{len(actions)} actions"
            )
        split = [_split_text_action(a, f"actions[{i}]") for i, a in enumerate(actions)]
        texts = tuple(text for text, _ in split)
        features = [feat for _, feat in split]
        names = [f'actions[{i}]["features"]' for i in range(self.num_envs)]
        checked = _check_fingerprints(self.shaper, features, names)

        obs, rewards, terminated, truncated, infos = self.env.step(texts)
        raw = np.asarray(rewards, dtype=np.float64)
        stepped = ~self._resetting if self._autoreset_mode is AutoresetMode.NEXT_STEP else None
        done = np.logical_or(terminated, truncated)
        if self._autoreset_mode is AutoresetMode.NEXT_STEP:
            self._resetting = done.copy()  # those sub-envs reset (not step) on the next call
        idx: list[int] = []
        pids: list[str] = []
        flags: list[bool] = []
        answers: list[str | None] = []
        for i in range(self.num_envs):
            if stepped is not None and not stepped[i]:
                continue
            source: Mapping[str, Any] = infos
            if (
                self._autoreset_mode is AutoresetMode.SAME_STEP
                and done[i]
                and "final_info" in infos
            ):
                source = infos["final_info"]
            sub = self._sub_info(source, i)
            pids.append(read_problem_id(sub, None, f'info["problem_id"][{i}]'))
            flags.append(read_outcome(float(raw[i]), sub, self._is_correct, f"infos[{i}]"))
            answers.append(_answer_of(sub, texts[i]))
            idx.append(i)

        correct = np.array(flags, dtype=bool)
        kept = None
        if self.skip_uniform_groups:
            groups = None if self.group_size is None else [i // self.group_size for i in idx]
            kept = shaped_groups(pids, correct, groups, self.shaper.config.shape_groups)
        rows = None if checked is None else checked.subset(idx)
        result = shape_rollouts(self.shaper, pids, correct, raw[idx], rows, answers, kept=kept)
        stepped_envs = np.asarray(idx, dtype=np.int64)
        infos = dict(infos)
        # Rollouts outside `kept` come back from the shaper unshaped, as meds_info reports them.
        infos["meds"] = meds_info(raw, result, stepped_envs)
        shaped = stepped_envs if kept is None else stepped_envs[kept]
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[shaped] = True
        infos["_meds"] = mask
        return obs, infos["meds"]["shaped_reward"].copy(), terminated, truncated, infos
