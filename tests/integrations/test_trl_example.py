"""Smoke test of examples/trl_meds.py with a tiny budget on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("tyro")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_trl_example_runs_saves_the_memory_and_resumes(tmp_path: Path) -> None:
    from meds_gym.integrations.trl import MEMORY_FILE
    from meds_gym.meds import MEDSShaper

    memory = tmp_path / "memory.npz"
    command = [
        sys.executable,
        str(REPO / "examples" / "trl_meds.py"),
        "--use-cpu",
        "--random-init",
        "--num-problems", "2",
        "--num-generations", "4",
        "--per-device-train-batch-size", "4",
        "--max-completion-length", "8",
        "--save-steps", "1",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command, *extra], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    done = run("--max-steps", "1", "--memory-path", str(memory))
    assert "steps=1 " in done.stdout
    assert "MEDS penalised nothing" in done.stdout  # a random model: said, with the reason
    MEDSShaper.load(memory)  # a valid memory file
    MEDSShaper.load(tmp_path / "run" / "checkpoint-1" / MEMORY_FILE)  # and one per checkpoint
    # --resume continues from checkpoint-1 (with its memory) up to the new --max-steps.
    assert "steps=2 " in run("--max-steps", "2", "--resume").stdout
    assert (tmp_path / "run" / "checkpoint-2" / MEMORY_FILE).is_file()


@pytest.mark.slow
def test_trl_example_with_its_defaults_penalises_repeated_errors(tmp_path: Path) -> None:
    """As printed in the README (only fewer steps): the warmed-up tiny model makes recurring
    wrong answers, and MEDS penalises some of them."""
    command = [
        sys.executable,
        str(REPO / "examples" / "trl_meds.py"),
        "--use-cpu",
        "--max-steps", "8",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=1800, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = next(line for line in done.stdout.splitlines() if line.startswith("steps=8 "))
    fields = dict(item.split("=") for item in summary.split())
    assert float(fields["penalised_fraction"]) > 0.0, summary
    assert int(fields["memory_rows"]) > 0 and "MEDS penalised nothing" not in done.stdout
