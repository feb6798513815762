"""Checkpoints: a run resumed from one continues exactly as the uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tyro")

from agents.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from agents.ppo import Args, main  # noqa: E402
from agents.tiny_model import TinyModelConfig, build_char_tokenizer, build_model  # noqa: E402
from meds_gym.errors import CorruptFileError, InvalidArgumentError  # noqa: E402
from meds_gym.meds import MEDSShaper  # noqa: E402
from tests.tiny import learnable_tiny  # noqa: E402

torch.set_num_threads(1)


def _args(tmp_path, out, algorithm, **kw):
    return Args(
        algorithm=algorithm,
        num_problems=2,
        tiny=learnable_tiny(steps=150),
        cache_dir=str(tmp_path / "cache"),
        prompts_per_iteration=2,
        group_size=4,
        max_new_tokens=64,
        output_dir=str(tmp_path / out),
        device="cpu",
        threads=1,
        tensorboard=False,
        **kw,
    )


def _rows(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("charts/seconds")
    return rows


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "order"), [("meds", "epochs"), ("grpo", "random")])
def test_resume_is_bit_exact(tmp_path, algorithm, order):
    straight = _args(tmp_path, "straight", algorithm, iterations=4, problem_order=order)
    main(straight)
    first = _args(
        tmp_path, "resumed", algorithm, iterations=2, checkpoint_every=2, problem_order=order
    )
    main(first)
    run_dir = tmp_path / "resumed" / first.run_name
    assert (run_dir / "latest").read_text() == "checkpoint-1"
    # A crash after the checkpoint left a metrics line that the resumed run must replace.
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"iteration": 2, "charts/seconds": 0.0, "stale": True}) + "\n")
        handle.write('{"iteration": 3, "charts/seco')  # and was killed mid-write
    main(_args(tmp_path, "resumed", algorithm, iterations=4, resume=True, problem_order=order))
    expected = _rows(tmp_path / "straight" / straight.run_name / "metrics.jsonl")
    got = _rows(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in got] == [0, 1, 2, 3]
    assert 0.0 < np.mean([r["charts/accuracy"] for r in got]) < 1.0  # something to learn
    # Every loss, reward and MEDS statistic identical (NaN-aware: JSON NaN != NaN).
    assert json.dumps(got) == json.dumps(expected)


def test_resume_keeps_finished_rows_and_drops_a_line_cut_mid_write(tmp_path, caplog):
    from agents.ppo import metrics_kept_on_resume

    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"iteration": i, "loss": 0.5}) for i in range(3)]
    path.write_text("\n".join(rows) + '\n{"iteration": 3, "lo')
    with caplog.at_level("WARNING"):
        assert metrics_kept_on_resume(path, last=1) == rows[:2]
    assert "line 4 is not a complete metrics row" in caplog.text
    path.write_bytes("\n".join([*rows, "[1, 2]", '{"no": "iteration"}']).encode() + b"\n\xff{")
    assert metrics_kept_on_resume(path, last=5) == rows
    assert metrics_kept_on_resume(tmp_path / "missing.jsonl", last=5) == []


def test_checkpoint_round_trip_and_errors(tmp_path):
    tokenizer = build_char_tokenizer()
    model = build_model(TinyModelConfig(hidden_size=32, num_layers=1), tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[5, 6, 7]])).logits.sum().backward()
    optimizer.step()
    shaper = MEDSShaper()
    shaper.shape(["p", "p"], [False, False], [0.0, 0.0], np.array([[1.0, 0.0], [0.9, 0.1]]))
    rng = np.random.default_rng(3)
    rng.random(5)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(tmp_path, model, optimizer, rng)
    save_checkpoint(tmp_path, 7, model, optimizer, shaper, rng)
    save_checkpoint(tmp_path, 8, model, optimizer, shaper, rng)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-8", "latest"]
    expected_draw = np.random.default_rng(3)
    expected_draw.random(5)
    other = build_model(TinyModelConfig(hidden_size=32, num_layers=1, seed=1), tokenizer)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-3)
    fresh_rng = np.random.default_rng(0)
    iteration, restored = load_checkpoint(tmp_path, other, other_opt, fresh_rng)
    assert iteration == 8
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_rng.random() == expected_draw.random()
    assert restored.stats().rows == shaper.stats().rows == 2
    (tmp_path / "checkpoint-8" / "state.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path, other, other_opt, fresh_rng)
    with pytest.raises(InvalidArgumentError, match="checkpoint_every"):
        Args(checkpoint_every=-1)


_KILLED_RUN = """
import sys
from agents.ppo import Args, main
from agents.tiny_model import TinyModelConfig
tiny = TinyModelConfig(hidden_size=64, num_layers=2, steps=150, batch_size=16,
                       learning_rate=3e-3, solutions_per_problem=40)
main(Args(algorithm="meds", num_problems=2, tiny=tiny, cache_dir=sys.argv[1],
          prompts_per_iteration=2, group_size=4, max_new_tokens=64, output_dir=sys.argv[2],
          device="cpu", threads=1, tensorboard=False, iterations=40, checkpoint_every=1))
"""


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_state(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    straight = _args(tmp_path, "straight", "meds", iterations=4)
    main(straight)  # also fills the tiny-model cache the killed run reuses
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(tmp_path / "cache"), str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = tmp_path / "killed" / straight.run_name
    deadline = time.monotonic() + 300
    try:  # kill it as soon as a checkpoint is in force, whatever it is doing then
        while not (run_dir / "latest").exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    main(_args(tmp_path, "killed", "meds", iterations=4, resume=True))
    expected = _rows(tmp_path / "straight" / straight.run_name / "metrics.jsonl")
    got = _rows(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in got] == [0, 1, 2, 3]
    assert json.dumps(got) == json.dumps(expected)
