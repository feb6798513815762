"""DAPO's mixed-group filter groups rollouts by *sampled group* (veRL's uid), not by problem id.

A problem drawn twice in one batch (or in two dynamic-sampling rounds) is two groups, each judged
on its own; the error memory is still keyed by problem id.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv

from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import (
    NOT_ASSIGNED,
    GroupRule,
    MEDSConfig,
    MEDSShaper,
    MEDSVectorRewardWrapper,
    mixed_groups,
    shaped_groups,
)

# One problem, sampled in two groups of two: group 0 all wrong, group 1 mixed.
PIDS = ["a", "a", "a", "a"]
CORRECT = [False, False, True, False]
GROUPS = [0, 0, 1, 1]


def deg(a):
    return np.array([math.cos(math.radians(a)), math.sin(math.radians(a))], dtype=np.float32)


# ---------------------------------------------------------------- mixed_groups
def test_mixed_groups_judges_each_sampled_group_on_its_own():
    assert mixed_groups(PIDS, CORRECT, group_ids=GROUPS).tolist() == [False, False, True, True]
    assert mixed_groups(PIDS, CORRECT, GROUPS).tolist() == [False, False, True, True]
    # Any hashable ids (veRL's uid strings, numpy ints); groups need not be contiguous.
    uids = ["u1", "u2", "u1", "u2"]
    assert mixed_groups(PIDS, [True, False, False, False], uids).tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert mixed_groups(PIDS, CORRECT, np.array(GROUPS)).tolist() == [False, False, True, True]
    # Two problems in one group are still one group (the caller decides what a group is).
    assert mixed_groups(["a", "b"], [True, False], group_ids=[7, 7]).tolist() == [True, True]


def test_mixed_groups_without_group_ids_groups_by_problem_id_as_before():
    assert mixed_groups(PIDS, CORRECT).tolist() == [True, True, True, True]
    assert mixed_groups(PIDS, CORRECT, group_ids=None).tolist() == [True, True, True, True]
    assert mixed_groups(["a", "a", "b", "b"], [True, False, False, False]).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert mixed_groups([], np.zeros(0, dtype=bool), group_ids=[]).tolist() == []


def test_mixed_groups_rejects_bad_group_ids():
    with pytest.raises(InvalidArgumentError, match=r"`group_ids` must be 4 group ids.*3 group"):
        mixed_groups(PIDS, CORRECT, group_ids=[0, 0, 1])
    with pytest.raises(InvalidArgumentError, match=r"`group_ids\[1\]`.*hashable"):
        mixed_groups(PIDS, CORRECT, group_ids=[0, [1], 0, 0])
    with pytest.raises(InvalidArgumentError, match="`group_ids`"):
        mixed_groups(PIDS, CORRECT, group_ids="0011")
    with pytest.raises(InvalidArgumentError, match="`group_ids`"):
        mixed_groups(PIDS, CORRECT, group_ids=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="`group_ids`"):
        mixed_groups(PIDS, CORRECT, group_ids=np.zeros((4, 1)))


def test_shaper_with_the_group_mask_shapes_and_stores_only_the_mixed_group():
    features = np.stack([deg(0), deg(1), deg(45), deg(2)])
    per_group = MEDSShaper(MEDSConfig())
    out = per_group.shape(PIDS, CORRECT, [0.0, 0.0, 1.0, 0.0], features,
                          kept=mixed_groups(PIDS, CORRECT, GROUPS))  # fmt: skip
    assert len(per_group.memory.bucket("a", False)) == 1  # only the mixed group's wrong rollout
    assert (out.clusters[:2] == NOT_ASSIGNED).all()  # the all-wrong group is not clustered
    by_problem = MEDSShaper(MEDSConfig())
    by_problem.shape(PIDS, CORRECT, [0.0, 0.0, 1.0, 0.0], features,
                     kept=mixed_groups(PIDS, CORRECT))  # fmt: skip
    assert len(by_problem.memory.bucket("a", False)) == 3


# ---------------------------------------------------------------- MEDSVectorRewardWrapper
CHARSET = "abcdefghijklmnopqrstuvwxyz0123456789 {}\\"


class OneProblemEnv(gym.Env[str, str]):
    """Every sub-env draws problem ``p0`` (answer ``"0"``): one problem, several sampled groups."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Text(max_length=64, charset=CHARSET)
        self.action_space = spaces.Text(max_length=64, charset=CHARSET)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "what is 0", {"problem_id": "p0"}

    def step(self, action):
        correct = action.strip() == "0"
        info = {"problem_id": "p0", "correct": correct, "is_success": correct}
        return "done", float(correct), True, False, info


# Sub-envs 0-1 (group 0) both wrong; sub-envs 2-3 (group 1) one right, one wrong.
TEXTS = ["9", "8", "0", "7"]


def _actions(step):
    return [{"text": t, "features": deg(10 * i + step)} for i, t in enumerate(TEXTS)]


def test_vector_wrapper_group_size_judges_each_block_of_sub_envs_on_its_own():
    venv = SyncVectorEnv([OneProblemEnv for _ in range(4)])
    env = MEDSVectorRewardWrapper(venv, MEDSConfig(), skip_uniform_groups=True, group_size=2)
    assert env.group_size == 2
    oracle = MEDSShaper(MEDSConfig())
    correct = np.array([t == "0" for t in TEXTS])
    kept = np.array([False, False, True, True])
    penalised = 0
    for step in range(4):
        env.reset(seed=step)
        _, rewards, _, _, info = env.step(_actions(step))
        feats = [a["features"] for a in _actions(step)]
        want = oracle.shape(["p0"] * 4, correct, correct.astype(float), feats, kept=kept)
        np.testing.assert_array_equal(info["_meds"], kept)
        np.testing.assert_array_equal(rewards, want.shaped_rewards)
        np.testing.assert_array_equal(info["meds"]["penalty"], want.penalties)
        assert rewards[:2].tolist() == [0.0, 0.0]  # the all-wrong group passes unchanged
        penalised += int((want.penalties > 0).sum())
    assert penalised > 0
    # Only the mixed group's wrong rollout (sub-env 3) is stored, one per step.
    assert len(env.shaper.memory.bucket("p0", False)) == 4
    env.close()


def test_vector_wrapper_without_group_size_groups_by_problem_id_as_before():
    venv = SyncVectorEnv([OneProblemEnv for _ in range(4)])
    env = MEDSVectorRewardWrapper(venv, MEDSConfig(), skip_uniform_groups=True)
    assert env.group_size is None
    env.reset(seed=0)
    _, _, _, _, info = env.step(_actions(0))
    assert info["_meds"].all()  # one problem: one mixed group of four
    assert len(env.shaper.memory.bucket("p0", False)) == 3
    env.close()


def test_vector_wrapper_group_size_validation():
    venv = SyncVectorEnv([OneProblemEnv for _ in range(4)])
    with pytest.raises(InvalidArgumentError, match=r"`group_size`.*divisor of num_envs=4"):
        MEDSVectorRewardWrapper(venv, skip_uniform_groups=True, group_size=3)
    for bad in (0, -2, True, 2.0, "2"):
        with pytest.raises(InvalidArgumentError, match=r"`group_size` must be an int >= 1"):
            MEDSVectorRewardWrapper(venv, skip_uniform_groups=True, group_size=bad)
    with pytest.raises(InvalidArgumentError, match="skip_uniform_groups=True"):
        MEDSVectorRewardWrapper(venv, group_size=2)
    assert MEDSVectorRewardWrapper(venv, skip_uniform_groups=True, group_size=4).group_size == 4
    venv.close()


# ---------------------------------------------------------------- GroupRule (a variant)
def test_shaped_groups_rules():
    ids = ["a"] * 6
    correct = [True, True, False, False, True, False]
    groups = [0, 0, 1, 1, 2, 2]  # all right, all wrong, mixed
    assert (
        shaped_groups(ids, correct, groups).tolist() == mixed_groups(ids, correct, groups).tolist()
    )
    assert shaped_groups(ids, correct, groups, GroupRule.MIXED).tolist() == [False] * 4 + [True] * 2
    wide = shaped_groups(ids, correct, groups, GroupRule.MIXED_AND_ALL_WRONG)
    assert wide.tolist() == [False, False, True, True, True, True]  # all-right never shaped
    with pytest.raises(InvalidArgumentError, match="`rule` must be a GroupRule"):
        shaped_groups(ids, correct, groups, "mixed")


def test_group_rule_config_round_trip_and_validation():
    cfg = MEDSConfig(shape_groups=GroupRule.MIXED_AND_ALL_WRONG)
    assert cfg.to_dict()["shape_groups"] == "mixed_and_all_wrong"
    assert MEDSConfig.from_dict(cfg.to_dict()) == cfg
    assert MEDSConfig().shape_groups is GroupRule.MIXED  # the reference rule by default
    old = MEDSConfig().to_dict()
    del old["shape_groups"]  # a file written before the field existed
    assert MEDSConfig.from_dict(old) == MEDSConfig()
    with pytest.raises(InvalidArgumentError, match="`shape_groups`"):
        MEDSConfig(shape_groups="mixed")


def test_vector_wrapper_shapes_all_wrong_groups_under_the_variant():
    venv = SyncVectorEnv([OneProblemEnv for _ in range(4)])
    cfg = MEDSConfig(shape_groups=GroupRule.MIXED_AND_ALL_WRONG)
    env = MEDSVectorRewardWrapper(venv, cfg, skip_uniform_groups=True, group_size=2)
    oracle = MEDSShaper(cfg)
    correct = np.array([t == "0" for t in TEXTS])
    penalised_all_wrong = 0
    for step in range(4):
        env.reset(seed=step)
        _, rewards, _, _, info = env.step(_actions(step))
        feats = [a["features"] for a in _actions(step)]
        want = oracle.shape(["p0"] * 4, correct, correct.astype(float), feats)
        assert info["_meds"].all()  # the all-wrong group is shaped too
        np.testing.assert_array_equal(rewards, want.shaped_rewards)
        penalised_all_wrong += int((info["meds"]["penalty"][:2] > 0).sum())
    assert penalised_all_wrong > 0  # its penalties are its only signal
    assert len(env.shaper.memory.bucket("p0", False)) == 12  # 3 wrong rollouts a step
    env.close()
