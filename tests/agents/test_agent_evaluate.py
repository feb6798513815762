"""The evaluation script on a barely trained tiny model: its figures obey pass@k's invariants."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tyro")

from agents.evaluate import EvalArgs, evaluate  # noqa: E402
from agents.tiny_model import TinyModelConfig  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)


def test_evaluate_tiny_model(tmp_path):
    tiny = TinyModelConfig(hidden_size=32, num_layers=2, steps=20, batch_size=8)
    args = EvalArgs(num_problems=2, tiny=tiny, cache_dir=str(tmp_path), n=4, max_new_tokens=16)
    metrics = evaluate(args)
    assert metrics["problems"] == 2 and metrics["n"] == 4
    assert 0.0 <= metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] <= 1.0
    # pass@1 is the mean share of correct samples, so it complements the share of wrong ones.
    assert metrics.get("wrong_share", 0.0) == pytest.approx(1.0 - metrics["pass@1"])
    if "error_modes" in metrics:
        assert sum(metrics["error_modes"].values()) == round(metrics["wrong_share"] * 8)
    json.dumps(metrics)  # serialisable for --json-out


def test_evaluate_rejects():
    with pytest.raises(InvalidArgumentError, match="`n`"):
        EvalArgs(n=0)
    with pytest.raises(InvalidArgumentError, match="model_path"):
        evaluate(EvalArgs(env_id="meds_gym/GSM8K-v0", data_path="missing.jsonl"))
