import importlib
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv  # noqa: E402

from meds_gym.errors import InvalidArgumentError, MissingExtraError  # noqa: E402
from meds_gym.integrations.features import terminal_state_features  # noqa: E402
from meds_gym.integrations.sb3 import MEDSVecEnvWrapper  # noqa: E402
from meds_gym.meds import MEDSConfig, MEDSShaper, Trajectory, meds_penalty  # noqa: E402
from meds_gym.meds.wrappers import DEFAULT_PROBLEM_ID  # noqa: E402

SUCCESS, MODE_A, MODE_B = 0, 1, 2


class OutcomeEnv(gym.Env):
    """The last action of an episode of ``length`` steps picks its outcome.

    Action 0 succeeds (reward 1), 1 and 2 are two failure modes (reward 0). The observation is
    ``[t, last action one-hot]``, so the terminal observation tells the modes apart.
    """

    metadata = {"render_modes": []}

    def __init__(self, length=1, report_success=True, problem="p"):
        self.length = length
        self.report_success = report_success
        self.problem = problem
        self.observation_space = spaces.Box(0.0, 100.0, (4,), np.float32)
        self.action_space = spaces.Discrete(3)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0, 0, 0, 0], np.float32), {"problem_id": self.problem}

    def step(self, action):
        self._t += 1
        obs = np.zeros(4, np.float32)
        obs[0] = self._t
        obs[1 + int(action)] = 1.0
        info = {"problem_id": self.problem}
        done = self._t >= self.length
        reward = 0.0
        if done:
            reward = 1.0 if action == SUCCESS else 0.0
            if self.report_success:
                info["is_success"] = bool(action == SUCCESS)
        return obs, reward, done, False, info


def terminal_mode(trajectory):
    """Fingerprint: the one-hot of the last action (from the terminal observation)."""
    return np.asarray(trajectory.observations[-1][1:], dtype=np.float64)


def make(n_envs=4, length=1, config=None, **kwargs):
    env_kwargs = kwargs.pop("env_kwargs", {})
    venv = DummyVecEnv([lambda: OutcomeEnv(length=length, **env_kwargs)] * n_envs)
    wrapper = MEDSVecEnvWrapper(
        venv, kwargs.pop("feature_fn", terminal_mode), config or MEDSConfig(), **kwargs
    )
    wrapper.reset()
    return wrapper


def step(wrapper, actions):
    return wrapper.step(np.asarray(actions))


def test_penalty_only_on_failed_terminal_steps():
    wrapper = make(n_envs=2, length=3)
    for _ in range(6):  # six episodes per sub-env; sub-env 0 fails in mode A, 1 succeeds
        for t in range(3):
            _, rewards, dones, infos = step(wrapper, [MODE_A, SUCCESS])
            if t < 2:
                assert not dones.any() and rewards.tolist() == [0.0, 0.0]
                assert all("meds" not in info for info in infos)
            else:
                assert dones.all()
                assert infos[1]["meds"]["penalty"] == 0.0 and rewards[1] == 1.0
                meds = infos[0]["meds"]
                assert rewards[0] == pytest.approx(-meds["penalty"])
                assert meds["penalty"] == pytest.approx(
                    float(meds_penalty(np.array([meds["cluster_size"]]), 0.1, 0.2)[0])
                )
    # the last failure fell into a cluster of five stored mode-A episodes
    assert infos[0]["meds"]["penalty"] == pytest.approx(min(0.1 * np.log(6), 0.2))
    assert infos[0]["meds"]["raw_reward"] == 0.0


def test_episodes_ending_in_one_vector_step_are_one_batch_like_the_shaper():
    wrapper = make(n_envs=4)
    oracle = MEDSShaper(MEDSConfig())
    script = [
        [MODE_A, MODE_A, MODE_A, MODE_A],  # first visit: nobody is penalised in this batch
        [MODE_A, MODE_B, SUCCESS, MODE_B],
        [MODE_B, MODE_B, MODE_A, SUCCESS],
        [MODE_A, MODE_A, MODE_B, MODE_B],
    ]
    for k, actions in enumerate(script):
        _, rewards, _, infos = step(wrapper, actions)
        correct = np.array([a == SUCCESS for a in actions])
        feats = np.eye(3)[actions]
        expected = oracle.shape([DEFAULT_PROBLEM_ID] * 4, correct, correct.astype(float), feats)
        np.testing.assert_allclose(rewards, expected.shaped_rewards, rtol=0, atol=1e-6)
        got = [info["meds"]["cluster_size"] for info in infos]
        assert got == expected.cluster_sizes.tolist()
        if k == 0:
            assert rewards.tolist() == [0.0] * 4
    # batches of one would have penalised the 3rd and 4th failures of the first step
    single = MEDSShaper(MEDSConfig())
    sizes = [single.shape(["p"], [False], [0.0], [[0.0, 1.0, 0.0]]).penalties[0] for _ in range(4)]
    assert sizes[2] > 0


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_one_memory_is_shared_by_all_sub_envs(vec_cls):
    kwargs = {"start_method": "fork"} if vec_cls is SubprocVecEnv else {}
    venv = vec_cls([lambda: OutcomeEnv()] * 3, **kwargs)
    try:
        wrapper = MEDSVecEnvWrapper(venv, terminal_mode)
        wrapper.reset()
        for _ in range(4):  # only sub-env 0 fails
            step(wrapper, [MODE_A, SUCCESS, SUCCESS])
        _, rewards, _, infos = step(wrapper, [SUCCESS, SUCCESS, MODE_A])
        # sub-env 2 never failed before, yet its failure joins sub-env 0's four
        assert infos[2]["meds"]["cluster_size"] == 4
        assert rewards[2] == pytest.approx(-min(0.1 * np.log(5), 0.2))
        assert wrapper.shaper.memory.bucket(DEFAULT_PROBLEM_ID, False).rows.shape[0] == 5
    finally:
        venv.close()


def test_trajectory_ends_with_the_terminal_observation_not_the_reset_one():
    seen = []

    def record(trajectory):
        seen.append(trajectory)
        return terminal_mode(trajectory)

    wrapper = make(n_envs=2, length=2, feature_fn=record)
    step(wrapper, [MODE_A, MODE_B])
    obs, _, dones, infos = step(wrapper, [MODE_B, SUCCESS])
    assert dones.all() and len(seen) == 2
    first = seen[0]
    assert isinstance(first, Trajectory) and len(first) == 2
    np.testing.assert_array_equal(first.observations[-1], infos[0]["terminal_observation"])
    np.testing.assert_array_equal(first.observations[-1], [2, 0, 0, 1])
    np.testing.assert_array_equal(obs[0], [0, 0, 0, 0])  # SB3 already reset the sub-env
    assert [int(a) for a in first.actions] == [MODE_A, MODE_B]
    assert first.rewards == [0.0, 0.0] and first.reset_info == {"problem_id": "p"}
    # the next episode starts from the reset observation
    step(wrapper, [MODE_A, MODE_A])
    step(wrapper, [MODE_A, MODE_A])
    np.testing.assert_array_equal(seen[2].observations[0], [0, 0, 0, 0])
    assert len(seen[2].observations) == 3


def test_meds_info_matches_the_gym_wrapper_keys():
    wrapper = make(n_envs=1)
    _, rewards, _, infos = step(wrapper, [MODE_A])
    assert set(infos[0]["meds"]) == {
        "raw_reward",
        "penalty",
        "cluster",
        "cluster_size",
        "shaped_reward",
    }
    assert infos[0]["meds"]["shaped_reward"] == rewards[0]


def test_problem_id_fn_picks_the_bucket():
    venv = DummyVecEnv([lambda: OutcomeEnv(problem="x"), lambda: OutcomeEnv(problem="y")])
    wrapper = MEDSVecEnvWrapper(venv, terminal_mode, problem_id_fn=lambda info: info["problem_id"])
    wrapper.reset()
    for _ in range(3):
        step(wrapper, [MODE_A, MODE_A])
    assert len(wrapper.shaper.memory.bucket("x", False)) == 3
    assert len(wrapper.shaper.memory.bucket("y", False)) == 3
    bad = MEDSVecEnvWrapper(
        DummyVecEnv([lambda: OutcomeEnv()]), terminal_mode, problem_id_fn=lambda info: 3
    )
    bad.reset()
    with pytest.raises(InvalidArgumentError, match="problem_id_fn"):
        step(bad, [MODE_A])


def test_frozen_memory_penalises_but_does_not_learn():
    wrapper = make(n_envs=2)
    for _ in range(3):
        step(wrapper, [MODE_A, MODE_B])
    rows = wrapper.shaper.memory.n_rows
    wrapper.training = False
    for _ in range(3):
        _, rewards, _, infos = step(wrapper, [MODE_A, MODE_A])
        assert infos[0]["meds"]["cluster_size"] == 3  # the stored size never grows
        assert rewards[0] < 0
    assert wrapper.shaper.memory.n_rows == rows
    wrapper.training = True
    step(wrapper, [MODE_A, MODE_A])
    assert wrapper.shaper.memory.n_rows == rows + 2
    with pytest.raises(InvalidArgumentError, match="training"):
        wrapper.training = "no"


def test_save_load_round_trip_continues_bit_exactly(tmp_path):
    config = MEDSConfig(alpha=0.05, beta=0.3)
    rng = np.random.default_rng(0)
    wrapper = make(n_envs=3, config=config)
    for _ in range(5):
        step(wrapper, rng.integers(3, size=3))
    path = tmp_path / "meds.npz"
    wrapper.save(path)
    loaded = MEDSVecEnvWrapper.load(
        path, DummyVecEnv([lambda: OutcomeEnv()] * 3), terminal_mode, training=True
    )
    loaded.reset()
    assert loaded.config == config
    for _ in range(5):
        actions = rng.integers(3, size=3)
        _, a, _, _ = step(wrapper, actions)
        _, b, _, _ = step(loaded, actions)
        np.testing.assert_array_equal(a, b)
    assert wrapper.shaper.memory.n_rows == loaded.shaper.memory.n_rows
    frozen = MEDSVecEnvWrapper.load(
        path, DummyVecEnv([lambda: OutcomeEnv()]), terminal_mode, training=False
    )
    assert frozen.training is False
    with pytest.raises(InvalidArgumentError, match="config"):
        MEDSVecEnvWrapper.load(path, DummyVecEnv([OutcomeEnv]), terminal_mode, config=config)


def test_is_correct_defaults_to_is_success_and_missing_key_is_a_clear_error():
    wrapper = make(n_envs=1, env_kwargs={"report_success": False})
    with pytest.raises(InvalidArgumentError, match=r"is_success.*is_correct"):
        step(wrapper, [MODE_A])
    assert wrapper.shaper.memory.n_rows == 0
    custom = make(
        n_envs=1,
        env_kwargs={"report_success": False},
        is_correct=lambda reward, info: reward > 0.5,
    )
    for _ in range(3):
        _, rewards, _, infos = step(custom, [SUCCESS])
        assert rewards[0] == 1.0
    assert len(custom.shaper.memory.bucket(DEFAULT_PROBLEM_ID, True)) == 3
    wrong_type = make(n_envs=1, is_correct=lambda reward, info: 1)
    with pytest.raises(InvalidArgumentError, match="is_correct"):
        step(wrong_type, [MODE_A])


def test_feature_fn_dimension_change_is_rejected_and_memory_untouched():
    calls = []

    def growing(trajectory):
        calls.append(1)
        return np.ones(2 + len(calls))

    wrapper = make(n_envs=1, feature_fn=growing)
    step(wrapper, [MODE_A])
    with pytest.raises(InvalidArgumentError, match=r"feature_fn.*dimension 3"):
        step(wrapper, [MODE_A])
    assert wrapper.shaper.memory.n_rows == 1
    # within one batch too
    batch = make(n_envs=2, feature_fn=lambda t: np.ones(int(t.observations[-1][1:].argmax()) + 1))
    with pytest.raises(InvalidArgumentError, match="feature_fn"):
        step(batch, [MODE_A, MODE_B])
    assert batch.shaper.memory.n_rows == 0


def test_a_rejected_fingerprint_does_not_corrupt_the_next_trajectory():
    seen = []
    fail = [True]

    def flaky(trajectory):
        seen.append(trajectory)
        if fail[0]:
            return np.array([np.nan, 1.0, 0.0])
        return terminal_mode(trajectory)

    wrapper = make(n_envs=1, length=2, feature_fn=flaky)
    step(wrapper, [MODE_A])
    with pytest.raises(InvalidArgumentError, match="feature_fn"):
        step(wrapper, [MODE_A])
    fail[0] = False
    step(wrapper, [MODE_B])
    step(wrapper, [MODE_B])
    assert len(seen[-1]) == 2
    np.testing.assert_array_equal(seen[-1].observations[0], [0, 0, 0, 0])
    assert wrapper.shaper.memory.n_rows == 1


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([1.0, np.nan]), "feature_fn.*finite"),
        (np.array([np.inf, 1.0]), "feature_fn.*finite"),
        (np.ones((2, 2)), "feature_fn.*1-D"),
        (np.zeros(3), "feature_fn.*non-zero"),
        ("abc", "feature_fn"),
    ],
)
def test_bad_feature_values_are_rejected(value, match):
    wrapper = make(n_envs=1, feature_fn=lambda t: value)
    with pytest.raises(InvalidArgumentError, match=match):
        step(wrapper, [MODE_A])
    assert wrapper.shaper.memory.n_rows == 0


def test_feature_fn_may_return_none_for_no_fingerprint():
    wrapper = make(n_envs=1, feature_fn=lambda t: None)
    for _ in range(4):
        _, rewards, _, infos = step(wrapper, [MODE_A])
        assert rewards[0] == 0.0 and infos[0]["meds"]["cluster"] == -2
    assert wrapper.shaper.memory.n_rows == 0


def test_rejects_bad_constructor_arguments():
    venv = DummyVecEnv([OutcomeEnv])
    with pytest.raises(TypeError, match="venv"):
        MEDSVecEnvWrapper(OutcomeEnv(), terminal_mode)
    with pytest.raises(TypeError, match="feature_fn"):
        MEDSVecEnvWrapper(venv, "terminal")
    with pytest.raises(InvalidArgumentError, match="config"):
        MEDSVecEnvWrapper(venv, terminal_mode, {"alpha": 0.1})
    with pytest.raises(TypeError, match="is_correct"):
        MEDSVecEnvWrapper(venv, terminal_mode, is_correct=True)
    with pytest.raises(TypeError, match="problem_id_fn"):
        MEDSVecEnvWrapper(venv, terminal_mode, problem_id_fn="x")


def test_works_with_the_terminal_state_feature_on_trap_grid():
    from meds_gym.envs.trap_grid import TrapGridEnv

    venv = DummyVecEnv([lambda: TrapGridEnv(num_layouts=2)] * 4)
    venv.seed(0)
    wrapper = MEDSVecEnvWrapper(
        venv,
        terminal_state_features(venv.observation_space),
        problem_id_fn=lambda info: info["problem_id"],
    )
    wrapper.reset()
    rng = np.random.default_rng(0)
    penalised = 0
    for _ in range(200):
        _, rewards, dones, infos = wrapper.step(rng.integers(4, size=4))
        for i in np.flatnonzero(dones):
            meds = infos[i]["meds"]
            assert rewards[i] == pytest.approx(meds["raw_reward"] - meds["penalty"], abs=1e-6)
            penalised += meds["penalty"] > 0
            assert (meds["penalty"] > 0) <= (not infos[i]["is_success"])
    assert penalised > 0
    assert {pid for pid, _ in wrapper.shaper.memory.keys()} == {"layout-0", "layout-1"}


def test_missing_stable_baselines3_raises_missing_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "stable_baselines3" or name.startswith("stable_baselines3."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.delitem(sys.modules, "meds_gym.integrations.sb3", raising=False)
    with pytest.raises(MissingExtraError, match=r"meds-gym\[sb3\]"):
        importlib.import_module("meds_gym.integrations.sb3")
    monkeypatch.delitem(sys.modules, "meds_gym.integrations.sb3", raising=False)
    import meds_gym.integrations as integrations

    with pytest.raises(MissingExtraError, match="sb3"):
        integrations.MEDSVecEnvWrapper  # noqa: B018 - the lazy attribute triggers the import


def test_importing_the_package_does_not_import_sb3_or_torch():
    code = (
        "import sys, meds_gym, meds_gym.integrations, meds_gym.envs.trap_grid; "
        "bad = [m for m in ('stable_baselines3', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- integer rewards (FrozenLake)
@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_frozen_lake_int_rewards_keep_their_penalties(vec_cls):
    """FrozenLake returns Python int rewards, so the stacked reward array is an integer array;
    writing the shaped rewards into it used to truncate every penalty to 0."""

    def make():
        return gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=6)

    kwargs = {"start_method": "fork"} if vec_cls is SubprocVecEnv else {}
    venv = vec_cls([make, make], **kwargs)
    try:
        wrapper = MEDSVecEnvWrapper(
            venv,
            lambda t: [1.0 + len(t), float(t.observations[-1])],
            MEDSConfig(alpha=0.1, beta=0.2),
            is_correct=lambda reward, info: reward > 0,
        )
        wrapper.reset()
        rng = np.random.default_rng(0)
        penalised = []
        for _ in range(300):
            _, rewards, dones, infos = wrapper.step(rng.integers(4, size=2))
            assert rewards.dtype == np.float32
            for i in np.flatnonzero(dones):
                meds = infos[i]["meds"]
                assert rewards[i] == np.float32(meds["shaped_reward"])
                if meds["penalty"] > 0:
                    penalised.append((rewards[i], meds["penalty"]))
        assert penalised, "no failed episode was penalised"
        for reward, penalty in penalised:
            assert reward == np.float32(-penalty) < 0
    finally:
        wrapper.close()
