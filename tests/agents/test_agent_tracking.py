"""Metrics sinks: JSON Lines without NaN, TensorBoard, W&B offline, the summary line."""

from __future__ import annotations

import json
import math
import sys

import pytest

pytest.importorskip("torch")

from agents.tracking import MetricsLogger, WandbConfig, finite_metrics, summary_line  # noqa: E402
from meds_gym.errors import MissingExtraError  # noqa: E402


def test_finite_metrics_leave_out_nan_inf_and_non_numbers():
    row = {"iteration": 3, "a": 1, "b": float("nan"), "c": math.inf, "d": "text", "e": True}
    assert finite_metrics(row) == {"iteration": 3, "a": 1.0}


def test_metrics_logger_writes_jsonl_and_tensorboard(tmp_path):
    logger = MetricsLogger(tmp_path, ['{"iteration": 0, "x": 1.0}'], tensorboard=True)
    written = logger.log({"iteration": 1, "x": 2.0, "losses/policy_loss": float("nan")})
    logger.close()
    assert written == {"iteration": 1, "x": 2.0}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"iteration": 0, "x": 1.0},
        {"iteration": 1, "x": 2.0},
    ]
    assert "NaN" not in (tmp_path / "metrics.jsonl").read_text()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_track_logs_to_wandb_offline_without_a_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = MetricsLogger(
        tmp_path,
        [],
        tensorboard=False,
        wandb=WandbConfig(project="meds-gym-test", mode="offline"),
        run_name="unit",
        config={"algorithm": "ppo"},
    )
    logger.log({"iteration": 0, "charts/reward_mean": 0.5})
    logger.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_track_without_wandb_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(MissingExtraError, match=r"meds-gym\[track\]"):
        MetricsLogger(tmp_path, [], tensorboard=False, wandb=WandbConfig())


def test_summary_line_says_no_update_instead_of_nan():
    line = summary_line(
        {"iteration": 4, "charts/reward_mean": 0.0, "charts/kept_groups": 0.0}, groups=8
    )
    assert "no update" in line and "nan" not in line.split()
    assert "kept 0/8" in line
    trained = summary_line({"iteration": 5, "losses/policy_loss": -0.25}, groups=8)
    assert "loss -0.2500" in trained and "no update" not in trained
