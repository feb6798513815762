import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from meds_gym.envs.trap_grid import (
    ACTIONS,
    CHANNELS,
    FAILURE_MODES,
    OUTCOMES,
    TrapGridEnv,
    failure_mode_counts,
    generate_layout,
)
from meds_gym.errors import InvalidArgumentError

ENV_KWARGS = [
    {},
    {"num_layouts": 4},
    {"num_layouts": 1, "observation": "position"},
    {"size": 9, "num_layouts": 2, "num_pits": 0},
]


def actions_along(start, path):
    """Actions that walk a path of adjacent cells."""
    out, cell = [], start
    for nxt in path:
        move = (nxt[0] - cell[0], nxt[1] - cell[1])
        out.append(ACTIONS.index(move))
        cell = nxt
    return out


def play(env, actions):
    info = {}
    for k, action in enumerate(actions):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            assert k == len(actions) - 1, "episode ended before the script did"
            return reward, terminated, truncated, info
    raise AssertionError("the script did not end the episode")


@pytest.mark.parametrize("kwargs", ENV_KWARGS)
def test_passes_gymnasium_check_env(kwargs):
    check_env(TrapGridEnv(**kwargs), skip_render_check=True)


@pytest.mark.parametrize("kwargs", ENV_KWARGS)
def test_passes_sb3_check_env(kwargs):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(TrapGridEnv(**kwargs), warn=True)


@pytest.mark.parametrize("kwargs", [{}, {"num_layouts": 5}])
def test_same_seed_same_episode_different_seed_different_layouts(kwargs):
    def rollout(seed):
        env = TrapGridEnv(**kwargs)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [obs.copy()]
        for _ in range(10):
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            trace.append(obs.copy())
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(obs.copy())
        return np.stack(trace), info["problem_id"], env.layout

    a, pid_a, layout_a = rollout(3)
    b, pid_b, layout_b = rollout(3)
    np.testing.assert_array_equal(a, b)
    assert pid_a == pid_b and layout_a == layout_b
    layouts = {rollout(seed)[2] for seed in range(12)}
    assert len(layouts) > 1


def test_layout_pool_depends_only_on_layout_seed():
    a = TrapGridEnv(num_layouts=3, layout_seed=7).layouts
    b = TrapGridEnv(num_layouts=3, layout_seed=7).layouts
    c = TrapGridEnv(num_layouts=3, layout_seed=8).layouts
    assert a == b and a != c
    env = TrapGridEnv(num_layouts=3, layout_seed=7)
    _, info = env.reset(seed=0, options={"layout": 2})
    assert info["problem_id"] == "layout-2" and env.layout == a[2]


def test_grid_observation_encodes_the_layout():
    env = TrapGridEnv(num_layouts=1)
    obs, _ = env.reset(seed=0)
    grid = obs.reshape(len(CHANNELS), env.size, env.size)
    layout = env.layout
    assert grid[0][layout.start] == 1 and grid[0].sum() == 1
    assert grid[1][layout.goal] == 1 and grid[1].sum() == 1
    assert {tuple(c) for c in np.argwhere(grid[2])} == set(layout.lava)
    assert {tuple(c) for c in np.argwhere(grid[3])} == set(layout.pits)
    assert grid[4][layout.wrong_exit] == 1


@pytest.mark.parametrize("layout_index", range(3))
@pytest.mark.parametrize("outcome", ["success", "lava", "pit", "wrong_exit"])
def test_each_outcome_reachable_by_a_scripted_path(outcome, layout_index):
    env = TrapGridEnv(num_layouts=3, layout_seed=11)
    env.reset(seed=0, options={"layout": layout_index})
    layout = env.layout
    if outcome == "success":
        targets = [layout.goal]
    elif outcome == "wrong_exit":
        targets = [layout.wrong_exit]
    else:
        targets = sorted(layout.lava if outcome == "lava" else layout.pits)
    paths = [p for p in (layout.shortest_path(t) for t in targets) if p is not None]
    assert paths, f"generated layout has no safe path to any {outcome} cell"
    path = min(paths, key=len)
    reward, terminated, truncated, info = play(env, actions_along(layout.start, path))
    assert terminated and not truncated
    assert info["failure_mode"] == outcome
    assert info["is_success"] is (outcome == "success")
    assert env.agent == path[-1]
    expected = {
        "success": env.goal_reward,
        "wrong_exit": env.wrong_exit_reward,
        "lava": env.trap_reward,
        "pit": env.trap_reward,
    }[outcome]
    assert reward == expected


def test_timeout_by_wandering_between_two_safe_cells():
    env = TrapGridEnv(num_layouts=2, max_steps=12)
    env.reset(seed=0, options={"layout": 1})
    layout = env.layout
    first = layout.shortest_path(layout.goal)[0]  # a safe neighbour of the start
    there, back = actions_along(layout.start, [first, layout.start])
    script = [there, back] * 6
    reward, terminated, truncated, info = play(env, script)
    assert truncated and not terminated
    assert info["failure_mode"] == "timeout" and info["is_success"] is False
    assert reward == 0.0
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_walls_keep_the_agent_inside():
    env = TrapGridEnv(observation="position", num_layouts=1, max_steps=100)
    env.reset(seed=0)
    start = env.agent
    # Pushing into the nearest wall either stops at the wall or ends on a terminal cell.
    for _ in range(env.size + 1):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            break
    assert 0 <= env.agent[0] <= start[0] and env.agent[1] == start[1]


def test_random_policy_has_one_dominant_failure_mode():
    env = TrapGridEnv(num_layouts=4)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    modes = []
    for _ in range(400):
        while True:
            _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
            if terminated or truncated:
                modes.append(info["failure_mode"])
                env.reset()
                break
    counts = failure_mode_counts(modes)
    failures = counts[1:]
    assert failures.argmax() == FAILURE_MODES.index("lava")
    assert failures.max() / failures.sum() > 0.5
    assert (failures > 0).sum() >= 3  # several distinct modes occur


def test_layout_generation_guarantees_every_outcome_is_reachable():
    rng = np.random.default_rng(1)
    for _ in range(50):
        layout = generate_layout(rng, size=6)
        assert layout.shortest_path(layout.goal) is not None
        assert layout.shortest_path(layout.wrong_exit) is not None
        assert any(layout.shortest_path(c) is not None for c in layout.lava)
        assert any(layout.shortest_path(c) is not None for c in layout.pits)
        dist = abs(layout.goal[0] - layout.start[0]) + abs(layout.goal[1] - layout.start[1])
        assert dist >= 5


def test_failure_mode_counts_orders_outcomes():
    counts = failure_mode_counts(["lava", "success", "lava", "timeout"])
    assert counts.tolist() == [1, 2, 0, 0, 1] and len(OUTCOMES) == 5
    with pytest.raises(InvalidArgumentError, match="modes"):
        failure_mode_counts(["fire"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"size": 4}, "size"),
        ({"num_layouts": 0}, "num_layouts"),
        ({"max_steps": 0}, "max_steps"),
        ({"observation": "pixels"}, "observation"),
        ({"goal_reward": float("nan")}, "goal_reward"),
        ({"num_lava": 30}, "num_lava"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(InvalidArgumentError, match=name):
        TrapGridEnv(**kwargs)


def test_rejects_bad_layout_option_and_action():
    env = TrapGridEnv(num_layouts=2)
    with pytest.raises(InvalidArgumentError, match="layout"):
        env.reset(options={"layout": 2})
    with pytest.raises(InvalidArgumentError, match="layout"):
        TrapGridEnv().reset(options={"layout": 0})
    env.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match="action"):
        env.step(4)


def test_ansi_render_marks_every_element():
    env = TrapGridEnv(num_layouts=1, render_mode="ansi")
    env.reset(seed=0)
    picture = env.render()
    assert picture.count("A") == 1 and picture.count("G") == 1 and picture.count("X") == 1
    assert picture.count("~") == env.num_lava and picture.count("O") == env.num_pits
