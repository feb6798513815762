import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.logger import KVWriter, Logger  # noqa: E402

from meds_gym.envs.trap_grid import TrapGridEnv  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402
from meds_gym.integrations.features import terminal_state_features  # noqa: E402
from meds_gym.integrations.sb3 import MEDSLoggerCallback, MEDSVecEnvWrapper  # noqa: E402
from meds_gym.meds import MEDSConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = ("meds/penalty_mean", "meds/share_penalised", "meds/clusters", "meds/memory_rows")


class RecordingWriter(KVWriter):
    """Keeps every dump of the logger."""

    def __init__(self):
        self.dumps = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append(dict(key_values))

    def close(self):
        pass


class EpisodeRecorder(sb3.common.callbacks.BaseCallback):
    """Oracle: the penalties of the episodes that end in each rollout, read from the infos."""

    def __init__(self):
        super().__init__()
        self.rollouts = [[]]

    def _on_step(self):
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.rollouts[-1].append(info["meds"]["penalty"])
        return True

    def _on_rollout_end(self):
        self.rollouts.append([])


def test_callback_writes_the_meds_scalars():
    venv = make_vec_env(lambda: TrapGridEnv(num_layouts=2), n_envs=2, seed=0)
    wrapper = MEDSVecEnvWrapper(
        venv,
        terminal_state_features(venv.observation_space),
        MEDSConfig(),
        problem_id_fn=lambda info: info["problem_id"],
    )
    model = sb3.PPO("MlpPolicy", wrapper, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    writer = RecordingWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    recorder = EpisodeRecorder()
    model.learn(32 * 2 * 4, callback=[recorder, MEDSLoggerCallback()])
    dumps = [d for d in writer.dumps if any(k.startswith("meds/") for k in d)]
    assert len(dumps) == 4  # one per rollout
    rows = [d["meds/memory_rows"] for d in dumps]
    assert rows == sorted(rows) and rows[-1] == wrapper.shaper.memory.n_rows
    # every finished episode is stored, so rows count the episodes ended so far
    assert rows[-1] == sum(len(r) for r in recorder.rollouts)
    labels = [wrapper.shaper.memory.bucket(*key).labels for key in wrapper.shaper.memory.keys()]
    assert dumps[-1]["meds/clusters"] == sum(np.unique(lab[lab >= 0]).size for lab in labels)
    for dump, penalties in zip(dumps, recorder.rollouts, strict=False):
        assert set(KEYS) <= set(dump)
        assert dump["meds/penalty_mean"] == pytest.approx(np.mean(penalties))
        assert dump["meds/share_penalised"] == pytest.approx(np.mean(np.array(penalties) > 0))
    assert dumps[-1]["meds/share_penalised"] > 0


def test_callback_needs_a_meds_wrapped_env():
    venv = make_vec_env(lambda: TrapGridEnv(num_layouts=1), n_envs=1, seed=0)
    model = sb3.PPO("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0)
    with pytest.raises(InvalidArgumentError, match="MEDSVecEnvWrapper"):
        model.learn(16, callback=MEDSLoggerCallback())


@pytest.mark.slow
def test_example_runs_with_tiny_budgets():
    command = [
        sys.executable,
        str(REPO_ROOT / "examples" / "sb3_meds.py"),
        "--seeds",
        "0",
        "1",
        "--total-timesteps",
        "256",
        "--n-envs",
        "2",
        "--n-steps",
        "64",
        "--batch-size",
        "64",
        "--eval-episodes",
        "5",
    ]
    for features in ("terminal", "policy"):
        out = subprocess.run(
            [*command, "--features", features],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        assert "success rate" in out and "failure-mode entropy (bits)" in out
        assert "PPO+MEDS" in out and f"features={features}" in out
    out = subprocess.run(
        [*command, "--env", "frozenlake"], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert "FrozenLake-v1 4x4" in out and "PPO+MEDS" in out
    # success, the four holes of the 4x4 map, timeout
    for mode in ("hole_5", "hole_7", "hole_11", "hole_12", "timeout"):
        assert f"share of failures: {mode}" in out
