"""Smoke test of examples/simulated_policy.py: both arms run and the table is printed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simulated_policy.py"


def load_example():
    spec = importlib.util.spec_from_file_location("simulated_policy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_simulated_policy_runs_both_arms(capsys):
    example = load_example()
    args = example.Args(num_problems=3, group_size=4, iterations=3, seeds=1)
    example.main(args)
    out = capsys.readouterr().out
    assert "| GRPO |" in out and "| GRPO+MEDS |" in out
    metrics = example.run(args, seed=0, use_meds=True)
    assert 0.0 <= metrics["pass@1"] <= 1.0
    assert 0.0 <= metrics["largest mode share"] <= 1.0
    assert 1.0 <= metrics["effective wrong modes"]
    assert "MEDS shapes mixed groups" in out


def test_variant_flag_and_slips_never_take_a_modes_answer():
    example = load_example()
    args = example.Args(num_problems=3, group_size=4, iterations=3, seeds=1, shape_all_wrong=True)
    assert example.run(args, 0, use_meds=True)["pass@1"] >= 0.0
    rng = np.random.default_rng(0)
    taken = {10, 11, 12}
    assert all(int(example.slip_answer(10, taken, rng)) not in taken for _ in range(500))
    # The largest mode is whichever is largest now, and slips are not a mode.
    share, modes = example.wrong_mode_metrics(np.array([0.1, 0.1, 0.5, 0.3]))
    assert share == pytest.approx(5 / 6) and 1.0 < modes < 2.0


def test_same_seed_same_result():
    example = load_example()
    args = example.Args(num_problems=3, group_size=4, iterations=3, seeds=1)
    assert example.run(args, 1, use_meds=True) == example.run(args, 1, use_meds=True)
