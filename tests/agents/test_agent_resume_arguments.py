"""A run records the task it really trained on, and ``--resume`` refuses changed arguments
(issue 13, point 10)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tyro")

from agents.ppo import Args, main  # noqa: E402
from agents.report import write_report  # noqa: E402
from agents.tiny_model import TinyModelConfig  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402


def test_settings_record_the_task_of_the_env():
    args = Args(env_id="meds_gym/AddSub-v0", num_problems=5, difficulty=2)
    settings = dataclasses.asdict(args)
    assert settings["tiny"]["task"] == "addsub"
    assert (settings["tiny"]["num_problems"], settings["tiny"]["difficulty"]) == (5, 2)
    # Copies made with dataclasses.replace (the compare command's per-arm runs) follow too.
    moved = dataclasses.replace(args, env_id="meds_gym/Arithmetic-v0")
    assert moved.tiny.task == "arithmetic"


def test_report_of_an_addsub_run_names_addsub(tmp_path):
    pytest.importorskip("matplotlib")
    args = Args(env_id="meds_gym/AddSub-v0")
    arm = {"problems": 1, "n": 1, "pass@1": 0.5}
    path = write_report(tmp_path, "t", "cmd", dataclasses.asdict(args), {"meds": [arm]})
    settings = json.loads(path.read_text().split("```json\n")[1].split("```")[0])
    assert settings["env_id"] == "meds_gym/AddSub-v0"
    assert settings["tiny"]["task"] == "addsub"


def _args(tmp_path, **kw):
    tiny = TinyModelConfig(
        num_problems=2, solutions_per_problem=2, hidden_size=32, num_layers=2, steps=2, batch_size=2
    )
    base = dict(
        num_problems=2,
        tiny=tiny,
        cache_dir=str(tmp_path / "cache"),
        prompts_per_iteration=1,
        group_size=2,
        max_new_tokens=8,
        output_dir=str(tmp_path / "runs"),
        device="cpu",
        threads=1,
        tensorboard=False,
        eval_n=0,
        iterations=1,
        checkpoint_every=1,
        learning_rate=1e-4,
    )
    return Args(**{**base, **kw})


def test_resume_refuses_changed_arguments_and_allows_safe_ones(tmp_path):
    main(_args(tmp_path))
    with pytest.raises(InvalidArgumentError, match=r"learning_rate: 0\.0001 -> 0\.001"):
        main(_args(tmp_path, resume=True, iterations=2, learning_rate=1e-3))
    with pytest.raises(InvalidArgumentError, match=r"tiny\.steps: 2 -> 3"):
        tiny = dataclasses.replace(_args(tmp_path).tiny, steps=3)
        main(_args(tmp_path, resume=True, iterations=2, tiny=tiny))
    # More iterations, another checkpoint interval: the same run, continued.
    history = main(_args(tmp_path, resume=True, iterations=2, checkpoint_every=2))
    assert [row["iteration"] for row in history] == [1]


@pytest.fixture
def torch_determinism(monkeypatch):
    """Leaves torch's deterministic-algorithms mode and ``CUBLAS_WORKSPACE_CONFIG`` as found."""
    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    yield torch
    torch.use_deterministic_algorithms(before)


def test_deterministic_resumes_a_run_saved_before_the_flag_existed(tmp_path, torch_determinism):
    # Pins: --deterministic turns torch's deterministic algorithms on with cuBLAS's workspace
    # set, trains, and may be switched on when resuming (it is a hardware setting, like
    # --device), also for a checkpoint whose args.json predates the flag.
    main(_args(tmp_path))
    run_dir = tmp_path / "runs" / _args(tmp_path).run_name
    for path in (run_dir / "args.json", run_dir / "checkpoint-0" / "args.json"):
        saved = json.loads(path.read_text())
        del saved["deterministic"]
        path.write_text(json.dumps(saved))
    history = main(_args(tmp_path, resume=True, iterations=2, deterministic=True))
    assert [row["iteration"] for row in history] == [1]
    assert torch_determinism.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_deterministic_refuses_a_nondeterministic_cublas_workspace(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with pytest.raises(InvalidArgumentError, match="CUBLAS_WORKSPACE_CONFIG"):
        Args(deterministic=True)
    Args()  # the variable is the flag's business only
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    Args(deterministic=True)
