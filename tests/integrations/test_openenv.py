"""OpenEnv both ways, with real parts: a served meds-gym env on a free local port, real clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("openenv")

import meds_gym  # noqa: E402,F401
from meds_gym.envs import ProblemEnv, problem_env  # noqa: E402
from meds_gym.errors import RemoteEnvError  # noqa: E402
from meds_gym.integrations.openenv import OpenEnvTextEnv  # noqa: E402
from meds_gym.meds import MEDSConfig, MEDSRewardWrapper  # noqa: E402
from meds_gym.meds.config import ClusterMethod  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m meds_gym.integrations.openenv serve ...`` in a subprocess."""

    def __init__(self, env_id: str, env_kwargs: dict[str, object]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "meds_gym.integrations.openenv", "serve", env_id,
            "--port", str(self.port), "--env-kwargs", json.dumps(env_kwargs),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server("meds_gym/Arithmetic-v0", {"num_problems": 6, "incorrect_reward": -1.0})
    yield running
    running.stop()


def test_served_env_matches_the_local_env_and_meets_the_problem_env_contract(server):
    local = gym.make("meds_gym/Arithmetic-v0", num_problems=6, incorrect_reward=-1.0)
    remote = OpenEnvTextEnv(server.url)
    try:
        assert isinstance(remote, ProblemEnv) and problem_env(remote) is remote
        fields = ("problem_id", "question", "answer", "error_modes")  # metadata: its JSON form
        assert [[getattr(p, f) for f in fields] for p in remote.source] == [
            [getattr(p, f) for f in fields] for p in local.unwrapped.source
        ]
        assert remote.answer_anchor == local.unwrapped.answer_anchor
        for options in ({"index": 4}, {"problem_id": remote.source[2].problem_id}):
            assert remote.reset(options=options) == local.reset(options=options)
            problem = remote.source.get(remote.reset(options=options)[1]["problem_id"])
            local.reset(options=options)
            for response in (f"so \\boxed{{{problem.answer}}}", "\\boxed{-12345}", "no answer"):
                remote.reset(options=options)
                local.reset(options=options)
                assert remote.step(response) == local.step(response)
        # A seeded reset draws the same problem as the local env with the same seed.
        assert remote.reset(seed=3)[1]["problem_id"] == local.reset(seed=3)[1]["problem_id"]
    finally:
        remote.close()


def test_concurrent_clients_are_isolated(server):
    """Two clients interleave their episodes; each scores its own problem."""
    first, second = OpenEnvTextEnv(server.url), OpenEnvTextEnv(server.url)
    try:
        problems = first.source
        _, info_a = first.reset(options={"index": 0})
        _, info_b = second.reset(options={"index": 1})
        results: dict[str, tuple] = {}

        def answer(name: str, env: OpenEnvTextEnv, index: int) -> None:
            results[name] = env.step(f"\\boxed{{{problems[index].answer}}}")

        threads = [
            threading.Thread(target=answer, args=("a", first, 0)),
            threading.Thread(target=answer, args=("b", second, 1)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, index in (("a", 0), ("b", 1)):
            _, reward, terminated, _, info = results[name]
            assert info["problem_id"] == problems[index].problem_id
            assert (reward, terminated, info["correct"]) == (1.0, True, True)
        assert (info_a["problem_id"], info_b["problem_id"]) == (
            problems[0].problem_id,
            problems[1].problem_id,
        )
    finally:
        first.close()
        second.close()


def test_meds_wrapper_penalises_a_repeated_wrong_answer_of_a_served_env(server):
    env = MEDSRewardWrapper(
        OpenEnvTextEnv(server.url), MEDSConfig(cluster_method=ClusterMethod.ANSWER)
    )
    try:
        penalties = []
        for _ in range(3):
            env.reset(options={"index": 0})
            _, reward, _, _, info = env.step("\\boxed{-12345}")
            penalties.append(info["meds"]["penalty"])
            assert reward == pytest.approx(-1.0 - info["meds"]["penalty"])
        assert penalties[0] == 0.0 and penalties[-1] > 0.0
    finally:
        env.close()


def test_bad_reset_options_and_unknown_problem_are_clear_errors(server):
    env = OpenEnvTextEnv(server.url, reset_retries=0)
    try:
        with pytest.raises(ValueError, match="options"):
            env.reset(options={"problem": "x"})
        with pytest.raises(RemoteEnvError, match="reported an error.*nope"):
            env.reset(options={"problem_id": "nope"})
        with pytest.raises(RuntimeError, match="call reset"):
            env.step("\\boxed{1}")
    finally:
        env.close()


def test_server_gone_is_a_clear_error_never_a_reward():
    server = Server("meds_gym/AddSub-v0", {"num_problems": 2})
    env = OpenEnvTextEnv(server.url, timeout_s=5, connect_timeout_s=2, reset_retries=1)
    try:
        env.reset(options={"index": 0})
        server.stop()
        with pytest.raises(RemoteEnvError, match="step on the OpenEnv server .* failed"):
            env.step("\\boxed{1}")
        with pytest.raises(RemoteEnvError, match="reset on the OpenEnv server .*could not connect"):
            env.reset()
    finally:
        server.stop()
        env.close()
    with pytest.raises(RemoteEnvError, match="could not connect"):
        OpenEnvTextEnv(server.url, connect_timeout_s=2).source  # noqa: B018


def test_readme_snippet_runs_against_a_served_env(server, capsys):
    from tests.test_readme import python_snippets

    (snippet,) = python_snippets()["OpenEnv: serve meds-gym envs, train against served envs"]
    assert "http://127.0.0.1:8000" in snippet
    exec(compile(snippet.replace("http://127.0.0.1:8000", server.url), "README", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" False -1.0" in line for line in lines[:1])
    assert float(lines[-1].split()[-1]) > 0.0  # the third identical wrong answer is penalised


def test_serve_rejects_an_env_without_a_problem_list():
    from meds_gym.integrations.openenv import make_app

    with pytest.raises(TypeError, match="ProblemEnv"):
        make_app("meds_gym/TrapGrid-v0")


@pytest.mark.slow
def test_agent_trains_with_meds_against_the_served_env(tmp_path, capsys):
    """DAPO+MEDS for a few iterations against a served Arithmetic-v0: MEDS penalises."""
    pytest.importorskip("torch")
    from agents.ppo import main
    from tests.tiny import cpu_run, learnable_tiny

    served = Server("meds_gym/Arithmetic-v0", {"num_problems": 1, "incorrect_reward": -1.0})
    try:
        args = cpu_run(
            tmp_path,
            algorithm="meds",
            env_url=served.url,
            num_problems=1,
            tiny=learnable_tiny(),
            iterations=4,
            prompts_per_iteration=4,
            group_size=16,
            max_new_tokens=64,
            learning_rate=5e-4,
            seed=0,
            eval_n=2,
        )
        history = main(args)
    finally:
        served.stop()
    lines = (tmp_path / "runs" / args.run_name / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len(history) == 4
    summary = [
        (row["iteration"], row["charts/reward_mean"], row.get("meds/penalised_share", 0.0))
        for row in rows
    ]
    with capsys.disabled():
        print("\nserved Arithmetic-v0, dapo+meds: (iteration, reward_mean, penalised_share)")
        for item in summary:
            print(f"  {item[0]:.0f}  {item[1]:.3f}  {item[2]:.3f}")
    assert all(np.isfinite(reward) for _, reward, _ in summary)
    assert max(share for _, _, share in summary) > 0.0, summary
    report = json.loads((tmp_path / "runs" / args.run_name / "eval.json").read_text())
    assert report["evaluated_on"] == "served problems"


@pytest.mark.slow
def test_trl_example_trains_against_the_served_env(tmp_path):
    """examples/trl_meds.py --env-url: TRL's GRPO on the served problems, graded by the server."""
    pytest.importorskip("trl")
    served = Server("meds_gym/Arithmetic-v0", {"num_problems": 2})
    try:
        command = [
            sys.executable, str(REPO / "examples" / "trl_meds.py"),
            "--use-cpu", "--random-init", "--env-url", served.url,
            "--num-generations", "4", "--per-device-train-batch-size", "4",
            "--max-completion-length", "8", "--max-steps", "1", "--save-steps", "0",
            "--output-dir", str(tmp_path / "run"),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path
        )
    finally:
        served.stop()
    assert done.returncode == 0, done.stderr[-4000:]
    assert "steps=1 " in done.stdout
