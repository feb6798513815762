"""Smoke test of examples/simulated_policy.py: both arms run and the table is printed."""

import importlib.util
import sys
from pathlib import Path

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
    assert 0.0 <= metrics["dominant mode share"] <= 1.0


def test_same_seed_same_result():
    example = load_example()
    args = example.Args(num_problems=3, group_size=4, iterations=3, seeds=1)
    assert example.run(args, 1, use_meds=True) == example.run(args, 1, use_meds=True)
