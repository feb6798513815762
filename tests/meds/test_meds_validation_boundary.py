"""One validation boundary: every adapter rejects a bad fingerprint with the shaper's own check.

``validate_features`` (``meds/batch.py``) is the fingerprint check of ``validate_batch``. The
Gymnasium wrappers run it before the wrapped env steps, the episode wrappers (Gymnasium and SB3)
before the shaper is called, and the shaper does not run it again on what they pass on.
"""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv

import meds_gym  # noqa: F401  (registers the env ids)
import meds_gym.meds.batch as batch_module
from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import (
    Fingerprints,
    MEDSEpisodeRewardWrapper,
    MEDSRewardWrapper,
    MEDSShaper,
    MEDSVectorRewardWrapper,
    validate_batch,
    validate_features,
)

GOOD = [1.0, 0.0]
"""The fingerprint stored first, so that every memory below holds length 2."""

BAD = {
    "nan": [np.nan, 1.0],
    "inf": [np.inf, 1.0],
    "float32 overflow": [1e39, 1.0],
    "zero": [0.0, 0.0],
    "2-D": [[1.0, 0.0], [0.0, 1.0]],
    "text": "ab",
    "other length": [1.0, 0.0, 0.0],
}


class CountSteps(gym.Wrapper):
    """Counts the steps that reach the wrapped env."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


class OneStep(gym.Env):
    """Each episode is one step; action 0 fails. ``feature_fn`` reads ``fingerprints[episode]``."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.ones(2, np.float32), float(action), True, False, {"is_success": bool(action)}


def text_env():
    return CountSteps(gym.make("meds_gym/Arithmetic-v0", num_problems=1))


def feature_fn_of(values):
    """A feature_fn returning the next of ``values`` for each finished episode."""
    pending = list(values)
    return lambda trajectory: pending.pop(0)


def shaper_error(value):
    """What ``MEDSShaper.shape`` raises for ``value`` after storing :data:`GOOD`."""
    shaper = MEDSShaper()
    shaper.shape(["p"], [False], [0.0], [GOOD])
    with pytest.raises(InvalidArgumentError) as caught:
        shaper.shape(["p"], [False], [0.0], [value])
    return caught.value


def through_text_wrapper(value):
    env = MEDSRewardWrapper(text_env())
    env.reset(seed=0)
    env.step({"text": "x", "features": GOOD})
    with pytest.raises(InvalidArgumentError) as caught:
        env.step({"text": "x", "features": value})
    return caught.value, env.shaper, env.env.steps == 1


def through_vector_wrapper(value):
    venv = SyncVectorEnv([text_env, text_env])
    env = MEDSVectorRewardWrapper(venv)
    env.reset(seed=0)
    env.step([{"text": "x", "features": GOOD}, "x"])
    env.reset(seed=0)
    with pytest.raises(InvalidArgumentError) as caught:
        env.step(["x", {"text": "x", "features": value}])
    return caught.value, env.shaper, [sub.steps for sub in venv.envs] == [1, 1]


def through_episode_wrapper(value):
    env = MEDSEpisodeRewardWrapper(OneStep(), feature_fn_of([GOOD, value]))
    env.reset(seed=0)
    env.step(0)
    env.reset(seed=0)
    with pytest.raises(InvalidArgumentError) as caught:
        env.step(0)
    return caught.value, env.shaper, True  # the env steps before its episode has a fingerprint


def through_sb3(value):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv

    from meds_gym.integrations.sb3 import MEDSVecEnvWrapper

    venv = MEDSVecEnvWrapper(DummyVecEnv([OneStep]), feature_fn_of([GOOD, value]))
    venv.reset()
    venv.step(np.array([0]))
    with pytest.raises(InvalidArgumentError) as caught:
        venv.step(np.array([0]))
    return caught.value, venv.shaper, True


ADAPTERS = {
    "MEDSRewardWrapper": (through_text_wrapper, 'action["features"]'),
    "MEDSVectorRewardWrapper": (through_vector_wrapper, 'actions[1]["features"]'),
    "MEDSEpisodeRewardWrapper": (through_episode_wrapper, "feature_fn(trajectory)"),
    "MEDSVecEnvWrapper": (through_sb3, "feature_fn(trajectory) of sub-env 0"),
}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("bad", BAD)
def test_every_adapter_rejects_a_bad_fingerprint_as_the_shaper_does(adapter, bad):
    through, name = ADAPTERS[adapter]
    want = shaper_error(BAD[bad])
    got, shaper, env_not_stepped = through(BAD[bad])
    assert type(got) is type(want) and got.expected == want.expected
    assert got.name == name  # named as the adapter's user wrote it
    assert env_not_stepped
    assert shaper.memory.n_rows == 1  # only GOOD was stored


@pytest.mark.parametrize("adapter", ["MEDSRewardWrapper", "MEDSVectorRewardWrapper"])
def test_the_wrappers_check_a_steps_fingerprints_once(adapter, monkeypatch):
    calls = []
    check = batch_module._feature_matrix
    monkeypatch.setattr(
        batch_module, "_feature_matrix", lambda *args: calls.append(1) or check(*args)
    )
    if adapter == "MEDSRewardWrapper":
        env = MEDSRewardWrapper(text_env())
        env.reset(seed=0)
        env.step({"text": "x", "features": GOOD})
    else:
        env = MEDSVectorRewardWrapper(SyncVectorEnv([text_env, text_env]))
        env.reset(seed=0)
        env.step([{"text": "x", "features": GOOD}, "x"])
    assert len(calls) == 1 and env.shaper.memory.n_rows == 1


def test_checked_fingerprints_shape_like_the_raw_ones():
    features = [GOOD, None, [0.0, 2.0]]
    raw, checked = MEDSShaper(), MEDSShaper()
    for _ in range(3):
        want = raw.shape(["p"] * 3, [False] * 3, [0.0] * 3, features)
        got = checked.shape(
            ["p"] * 3, [False] * 3, [0.0] * 3, validate_features(features, 3, checked.memory.dim)
        )
        np.testing.assert_array_equal(got.penalties, want.penalties)
    assert checked.memory.n_rows == raw.memory.n_rows == 6


def test_checked_fingerprints_must_fit_the_batch_and_the_memory():
    checked = validate_features([GOOD, None], 2, None)
    with pytest.raises(InvalidArgumentError, match="fingerprints of 3 rollouts"):
        validate_batch(["p"] * 3, [False] * 3, [0.0] * 3, checked)
    with pytest.raises(InvalidArgumentError, match="`features` must be fingerprints of dim"):
        validate_batch(["p"] * 2, [False] * 2, [0.0] * 2, checked, dim=3)
    with pytest.raises(InvalidArgumentError, match="`names` must be 2 names"):
        validate_features([GOOD, None], 2, None, names=["a"])


def test_a_subset_of_checked_fingerprints_keeps_each_rollouts_row():
    checked = validate_features([GOOD, None, [0.0, 2.0]], 3, None)
    part = checked.subset([2, 1])
    assert isinstance(part, Fingerprints) and part.size == 2 and part.dim == 2
    assert part.present.tolist() == [0] and part.rows.tolist() == [[0.0, 2.0]]
    assert checked.subset([1]).dim is None


def test_answers_are_checked_at_the_boundary_with_the_rest_of_the_batch():
    batch = validate_batch(["p", "p"], [False, True], [0.0, 1.0], None, answers=["5", None])
    assert batch.answers == ["5", None] and batch.present.size == 0
    assert validate_batch(["p"], [False], [0.0], None).answers is None
    for bad, name in (("5", "`answers`"), (["5"], "`answers`"), ([5, "6"], r"`answers\[0\]`")):
        with pytest.raises(InvalidArgumentError, match=name):
            validate_batch(["p", "p"], [False, False], [0.0, 0.0], None, answers=bad)
