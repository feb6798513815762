"""The comparison command: argument errors, and an end-to-end run on a barely trained model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tyro")
pytest.importorskip("matplotlib")

from agents.compare import CompareArgs, compare, default_train_args  # noqa: E402
from agents.ppo import Args  # noqa: E402
from agents.tiny_model import TinyModelConfig  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)


def test_bad_arguments_are_rejected():
    with pytest.raises(InvalidArgumentError, match="`seeds`"):
        CompareArgs(seeds=0)
    with pytest.raises(InvalidArgumentError, match="`arms`"):
        CompareArgs(arms=())
    with pytest.raises(InvalidArgumentError, match="`arms`"):
        CompareArgs(arms=("meds", "meds"))
    with pytest.raises(InvalidArgumentError, match="`workers`"):
        CompareArgs(workers=0)
    with pytest.raises(InvalidArgumentError, match="`train.eval_n`"):
        CompareArgs(train=Args(eval_n=0))
    with pytest.raises(InvalidArgumentError, match="`eval_n`"):
        Args(eval_n=-1)


def test_cli_defaults_and_nested_overrides():
    import tyro

    args = tyro.cli(CompareArgs, args=["--seeds", "3", "--train.iterations", "5"])
    assert args.seeds == 3 and args.train.iterations == 5 and args.arms == ("meds", "dapo")
    assert args.train.tiny == default_train_args().tiny  # the compact default model is kept
    # The default is the reproduction's regime: 8 layers, a warm-up on fresh problems only,
    # compact prompts, held-out evaluation and seeds enough for an interval.
    tiny = args.train.tiny
    assert tiny.num_layers >= 8 and tiny.fresh_problems > 0 and tiny.exclude_seed == 0
    assert tiny.prompt_format == args.train.prompt_format == "compact"
    assert args.train.eval_split == "test" and tyro.cli(CompareArgs, args=[]).seeds >= 3


def test_workers_default_to_one_per_core_and_never_exceed_the_runs(monkeypatch):
    from agents import workers as module

    monkeypatch.setattr(module.os, "cpu_count", lambda: 4)
    assert module.worker_count(None, 6) == 4 and module.worker_count(None, 3) == 3
    assert module.worker_count(2, 6) == 2 and module.worker_count(8, 1) == 1
    assert module.threads_per_worker(4) == 1 and module.threads_per_worker(2) == 2


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_compare_end_to_end(tmp_path, workers):
    tiny = TinyModelConfig(hidden_size=32, num_layers=2, steps=20, batch_size=8)
    train = Args(
        num_problems=2,
        tiny=tiny,
        cache_dir=str(tmp_path / "cache"),
        iterations=2,
        prompts_per_iteration=2,
        group_size=4,
        max_new_tokens=16,
        eval_n=4,
        tensorboard=False,
        device="cpu",
        threads=1,
    )
    out, arms = compare(
        CompareArgs(train=train, seeds=1, workers=workers, output_dir=str(tmp_path / "runs"))
    )
    assert out.parent == tmp_path / "runs" and out.name.startswith("compare-")
    assert list(arms) == ["initial", "meds", "dapo"]
    for label, runs in arms.items():
        assert len(runs) == 1, label
        assert 0.0 <= runs[0]["pass@1"] <= runs[0]["pass@2"] <= runs[0]["pass@4"] <= 1.0
        assert runs[0]["problems"] == 2 and runs[0]["n"] == 4
    report = (out / "report.md").read_text()
    rows = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]
    assert rows == ["policy", "initial", "meds", "dapo"]
    assert "Single seed, not significant" in report and "```" in report
    assert "evaluated on its held-out test problems" in report
    assert "none of them was seen in the warm-up or in RL" in report
    assert (out / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"
    # Each training run left its own report and the evaluation the table was made from.
    for algorithm, label in (("meds", "dapo+meds"), ("dapo", "dapo")):
        run_dir = out / f"Arithmetic-v0__{label}__0"
        assert (run_dir / "report.md").is_file() and (run_dir / "pass_at_k.png").is_file()
        saved = json.loads((run_dir / "eval.json").read_text())
        assert saved["pass@1"] == arms[algorithm][0]["pass@1"]
        # Runs trained in worker processes leave what they printed in a log of their own.
        log = run_dir / "train.log"
        assert log.is_file() == (workers > 1)
        if workers > 1:
            assert "iteration" in log.read_text() or "it/s" in log.read_text()
    settings = json.loads(report.split("```json")[1].split("```")[0])
    assert settings["compare"] == {"arms": ["meds", "dapo"], "seeds": [0]}
    assert settings["train"]["iterations"] == 2
