import numpy as np
import pytest
from gymnasium import spaces

from meds_gym.errors import InvalidArgumentError
from meds_gym.integrations.features import (
    policy_action_features,
    terminal_state_features,
    visitation_histogram,
)
from meds_gym.meds import Trajectory


def traj(observations, actions=None):
    if actions is None:
        actions = [0] * (len(observations) - 1)
    return Trajectory(observations=list(observations), actions=list(actions))


# ---------------------------------------------------------------- terminal state
def test_terminal_state_of_a_box_is_the_flattened_last_observation():
    fn = terminal_state_features()
    last = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = fn(traj([np.zeros((2, 3)), last]))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0, 1, 2, 3, 4, 5])


def test_terminal_state_of_a_discrete_space_is_one_hot():
    fn = terminal_state_features(spaces.Discrete(4, start=1))
    np.testing.assert_array_equal(fn(traj([1, 3])), [0, 0, 1, 0])
    # without the space a state 0 would be the zero vector that cosine distance cannot use
    np.testing.assert_array_equal(terminal_state_features()(traj([2, 0])), [0.0])


def test_terminal_state_of_a_dict_space_flattens_every_part():
    space = spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(0, 1, (2,))})
    fn = terminal_state_features(space)
    out = fn(traj([space.sample(), {"a": 1, "b": np.array([0.25, 0.5], np.float32)}]))
    np.testing.assert_array_equal(out, [0, 1, 0.25, 0.5])


def test_terminal_state_rejects_bad_input():
    with pytest.raises(TypeError, match="observation_space"):
        terminal_state_features("box")
    with pytest.raises(InvalidArgumentError, match="observations"):
        terminal_state_features()(traj(["text", "more text"]))
    with pytest.raises(InvalidArgumentError, match="observations"):
        terminal_state_features()(Trajectory())
    with pytest.raises(TypeError, match="trajectory"):
        terminal_state_features()([1, 2])


# ---------------------------------------------------------------- visitation
def test_visitation_histogram_against_a_naive_count():
    rng = np.random.default_rng(0)
    space = spaces.Discrete(7, start=-2)
    fn = visitation_histogram(space)
    for _ in range(20):
        states = rng.integers(-2, 5, size=int(rng.integers(1, 30)))
        out = fn(traj(states.tolist()))
        naive = np.array([np.sum(states == s) for s in range(-2, 5)]) / len(states)
        np.testing.assert_allclose(out, naive)
        assert out.sum() == pytest.approx(1.0) and out.shape == (7,)


def test_visitation_histogram_counts_reset_and_terminal_observations():
    fn = visitation_histogram(spaces.Discrete(3))
    np.testing.assert_array_equal(fn(traj([0, 1, 1, 2])), [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(fn(traj([np.int64(2)])), [0.0, 0.0, 1.0])


def test_visitation_histogram_rejects_bad_input():
    with pytest.raises(TypeError, match="Discrete"):
        visitation_histogram(spaces.Box(0, 1, (2,)))
    fn = visitation_histogram(spaces.Discrete(3))
    with pytest.raises(InvalidArgumentError, match=r"\[0, 3\)"):
        fn(traj([0, 3]))
    with pytest.raises(InvalidArgumentError, match="integer states"):
        fn(traj([0.5, 1.0]))


def test_visitation_separates_episodes_by_route_on_trap_grid():
    from meds_gym.envs.trap_grid import ACTIONS, TrapGridEnv

    env = TrapGridEnv(num_layouts=1, observation="position")
    fn = visitation_histogram(env.observation_space)
    obs, _ = env.reset(seed=0)
    layout = env.layout
    path = layout.shortest_path(layout.goal)
    observations, cell = [obs], layout.start
    for nxt in path:
        obs, *_ = env.step(ACTIONS.index((nxt[0] - cell[0], nxt[1] - cell[1])))
        observations.append(obs)
        cell = nxt
    out = fn(traj(observations))
    visited = {layout.start, *path}
    expected = np.zeros(env.size**2)
    for r, c in visited:
        expected[r * env.size + c] = 1 / len(visited)
    np.testing.assert_allclose(out, expected)


# ---------------------------------------------------------------- policy logits
@pytest.fixture(scope="module")
def ppo_model():
    sb3 = pytest.importorskip("stable_baselines3")
    from meds_gym.envs.trap_grid import TrapGridEnv

    return sb3.PPO(
        "MlpPolicy", TrapGridEnv(num_layouts=2), n_steps=16, batch_size=16, seed=0, device="cpu"
    )


def one_by_one(model, observations, kind):
    """The slow version: one forward pass per observation."""
    import torch

    rows = []
    with torch.no_grad():
        for obs in observations:
            tensor, _ = model.policy.obs_to_tensor(obs)
            dist = model.policy.get_distribution(tensor).distribution
            value = dist.probs if kind == "probs" else torch.log_softmax(dist.logits, dim=-1)
            rows.append(value.reshape(-1).double().numpy())
    return np.stack(rows)


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_policy_features_are_mean_and_last_of_the_action_distribution(ppo_model, kind):
    env = ppo_model.get_env().envs[0]
    obs, _ = env.reset(seed=0)
    observations, actions = [obs], []
    rng = np.random.default_rng(1)
    for _ in range(5):
        action = int(rng.integers(4))
        obs, _, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        if terminated or truncated:
            break
    fn = policy_action_features(ppo_model, kind=kind)
    out = fn(traj(observations, actions))
    rows = one_by_one(ppo_model, observations[: len(actions)], kind)  # o_0 .. o_{T-1}
    np.testing.assert_allclose(out, np.concatenate([rows.mean(0), rows[-1]]), atol=1e-6)
    assert out.shape == (8,)
    if kind == "probs":
        assert out[:4].sum() == pytest.approx(1.0) and out[4:].sum() == pytest.approx(1.0)


def test_policy_features_of_a_continuous_policy_use_the_action_mean():
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym
    import torch

    model = sb3.PPO(
        "MlpPolicy", gym.make("Pendulum-v1"), n_steps=16, batch_size=16, seed=0, device="cpu"
    )
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    observations = [obs]
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
        observations.append(obs)
    out = policy_action_features(model)(traj(observations))
    with torch.no_grad():
        tensor, _ = model.policy.obs_to_tensor(np.stack(observations[:3]))
        means = model.policy.get_distribution(tensor).distribution.mean.double().numpy()
    np.testing.assert_allclose(out, np.concatenate([means.mean(0), means[-1]]), atol=1e-6)


def test_policy_features_reject_bad_input(ppo_model):
    with pytest.raises(TypeError, match="model"):
        policy_action_features(object())
    with pytest.raises(InvalidArgumentError, match="kind"):
        policy_action_features(ppo_model, kind="values")
    with pytest.raises(InvalidArgumentError, match="actions"):
        policy_action_features(ppo_model)(traj([np.zeros(245, np.float32)]))
