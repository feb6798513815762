"""The tiny model and run arguments that the end-to-end training tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.ppo import Args
from agents.tiny_model import TinyModelConfig


def learnable_tiny(steps: int = 400, **overrides: Any) -> TinyModelConfig:
    """A 2-layer, 64-wide tiny model, warmed up until it is sometimes right on its problems.

    400 steps leave a policy right about a third of the time on one or a few problems: groups
    are mixed, so there is something for RL to learn and for MEDS to penalise.
    """
    return TinyModelConfig(
        hidden_size=64,
        num_layers=2,
        steps=steps,
        batch_size=16,
        learning_rate=3e-3,
        solutions_per_problem=40,
        **overrides,
    )


def cpu_run(tmp_path: Path, **overrides: Any) -> Args:
    """Arguments of a short test run: one CPU thread, no TensorBoard, files under ``tmp_path``."""
    settings: dict[str, Any] = {
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "runs"),
        "device": "cpu",
        "threads": 1,
        "tensorboard": False,
        **overrides,
    }
    return Args(**settings)
