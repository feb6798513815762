"""MEDS inside TRL's GRPOTrainer on CPU: penalties applied, and 1- vs 2-process parity.

The completions come from a ``rollout_func`` that writes, for generation g of a problem's group,
a fixed answer (right, the dominant wrong mode twice, another wrong mode), so the error memory has
recurrent modes to cluster and the global batch is the same whatever the number of processes.
The fingerprints are computed by the real (tiny, random, training) policy model.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 test_trl_grpo.py OUT``)
this file is the worker of the parity test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("accelerate")
pytest.importorskip("datasets")

from two_processes import end_ranks, run_two_processes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GENERATIONS = 4
GLOBAL_BATCH = 8  # two problems per step
STEPS = 6  # three passes over the four problems


def _tiny_setup(seed: int = 0) -> tuple[Any, Any, Any, dict[str, Any]]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Qwen2Config

    sys.path.insert(0, str(REPO))
    from agents.tiny_model import build_char_tokenizer
    from meds_gym.tasks import ArithmeticTask

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    task = ArithmeticTask(num_problems=4, seed=0)
    problems = {p.question: p for p in task}
    dataset = Dataset.from_list(
        [{"prompt": p.question, "answer": p.answer, "problem_id": p.problem_id} for p in task]
    )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,  # fingerprint: the last 3 layers
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model, tokenizer, dataset, problems


def forced_text(problem: Any, g: int) -> str:
    """Generation g of a group: right, dominant wrong mode (twice), a second wrong mode."""
    modes = sorted(problem.error_modes)
    answers = [problem.answer, problem.error_modes[modes[0]], problem.error_modes[modes[0]]]
    answers.append(problem.error_modes[modes[1]])
    return f"Work {g % 2}. Answer: \\boxed{{{answers[g]}}}"


def run_grpo(output_dir: str, learning_rate: float = 1e-3) -> Any:
    """A few GRPO steps with MEDS; returns the reward function (with its history)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from meds_gym.integrations.trl import MEDSRewardFunction
    from meds_gym.meds import MEDSConfig

    model, tokenizer, dataset, problems = _tiny_setup()
    eos = tokenizer.eos_token_id

    def rollout(prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        # The rollout sees this process's slice of the global batch, in global order.
        offset = trainer.accelerator.process_index * len(prompts)
        prompt_ids, completion_ids, logprobs = [], [], []
        for i, prompt in enumerate(prompts):
            text = forced_text(problems[prompt], (offset + i) % GENERATIONS)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            prompt_ids.append(tokenizer(text=prompt)["input_ids"])
            completion_ids.append(ids)
            logprobs.append([0.0] * len(ids))
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    world = int(os.environ.get("WORLD_SIZE", "1"))
    meds = MEDSRewardFunction(MEDSConfig(), fingerprint_batch_size=1, record_history=True)
    args = GRPOConfig(
        output_dir=output_dir,
        use_cpu=True,
        report_to=[],
        max_completion_length=32,
        num_generations=GENERATIONS,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=STEPS,
        learning_rate=learning_rate,
        bf16=False,
        save_strategy="no",
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[meds],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout,
    )
    meds.bind(trainer)
    trainer.train()
    meds.log_history = trainer.state.log_history  # type: ignore[attr-defined]
    return meds


def history_arrays(meds: Any) -> dict[str, np.ndarray]:
    steps = meds.history
    return {
        "problem_ids": np.array([pid for s in steps for pid in s.problem_ids]),
        "completions": np.array([c for s in steps for c in s.completions]),
        "correct": np.concatenate([s.correct for s in steps]),
        "features": np.concatenate([s.features for s in steps]),
        "penalties": np.concatenate([s.result.penalties for s in steps]),
        "clusters": np.concatenate([s.result.clusters for s in steps]),
        "cluster_sizes": np.concatenate([s.result.cluster_sizes for s in steps]),
        "shaped": np.concatenate([s.result.shaped_rewards for s in steps]),
    }


@pytest.mark.slow
def test_grpo_applies_meds_penalties(tmp_path: Path) -> None:
    from meds_gym.meds import MEDSConfig, MEDSShaper

    meds = run_grpo(str(tmp_path / "run"))
    assert len(meds.history) == STEPS
    arrays = history_arrays(meds)
    correct = arrays["correct"]
    # The forced completions: one right answer per group of four, verified by the verifier.
    assert correct.reshape(-1, GENERATIONS).sum(axis=1).tolist() == [1] * (STEPS * 2)
    assert not np.isnan(arrays["features"]).any()  # every completion has a \boxed{ answer
    # First visit of each problem: nothing stored, no penalty. Steps 0-1 cover all four problems.
    first = np.zeros(len(correct), dtype=bool)
    seen: set[str] = set()
    step_of_row = np.repeat(np.arange(STEPS), GLOBAL_BATCH)
    for step in range(STEPS):
        rows = np.flatnonzero(step_of_row == step)
        for r in rows:
            first[r] = arrays["problem_ids"][r] not in seen
        seen.update(arrays["problem_ids"][rows])
    assert (arrays["penalties"][first] == 0).all()
    assert (arrays["penalties"][correct] == 0).all()  # right answers are never penalised
    revisited_wrong = ~first & ~correct
    assert revisited_wrong.any()
    assert (arrays["penalties"][revisited_wrong] > 0).all()
    np.testing.assert_array_equal(
        arrays["shaped"], np.where(correct, 1.0, -1.0) - arrays["penalties"]
    )
    # Oracle: the framework-free shaper fed the same global batches gives the same penalties.
    oracle = MEDSShaper(MEDSConfig())
    for step in meds.history:
        out = oracle.shape(list(step.problem_ids), step.correct, step.rewards, step.features)
        np.testing.assert_array_equal(out.penalties, step.result.penalties)
        np.testing.assert_array_equal(out.cluster_sizes, step.result.cluster_sizes)
    # TRL logged exactly the shaped rewards' mean as its reward.
    logged = [
        entry["rewards/meds/mean"] for entry in meds.log_history if "rewards/meds/mean" in entry
    ]
    expected = arrays["shaped"].reshape(STEPS, -1).mean(axis=1)
    np.testing.assert_allclose(logged, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_two_processes_give_the_same_penalties_as_one(tmp_path: Path) -> None:
    run_two_processes(__file__, tmp_path, TRL_EXPERIMENTAL_SILENCE="1")
    two = dict(np.load(tmp_path / "rank0.npz"))
    two_rank1 = dict(np.load(tmp_path / "rank1.npz"))
    one = history_arrays(run_grpo(str(tmp_path / "single")))
    # Both ranks of the 2-process run saw the same global batches and made the same decisions.
    for key in ("problem_ids", "completions", "penalties", "cluster_sizes", "shaped"):
        np.testing.assert_array_equal(two[key], two_rank1[key])
    # Same global batches as the 1-process run, and the same penalties, clusters, shaped rewards.
    for key in ("problem_ids", "completions", "correct", "penalties", "clusters", "cluster_sizes"):
        np.testing.assert_array_equal(two[key], one[key], err_msg=key)
    np.testing.assert_array_equal(two["shaped"], one["shaped"])
    assert (one["penalties"] > 0).sum() >= 8  # the comparison covers real penalties
    # The fingerprints come from models trained with 1 or 2 processes (DDP averages the
    # gradients in another order), so they agree to float32 rounding, not bit for bit.
    np.testing.assert_allclose(two["features"], one["features"], rtol=1e-4, atol=1e-4)
    stats = json.loads((tmp_path / "rank0.json").read_text())
    assert stats["world_size"] == 2


def _worker(out_dir: str) -> None:
    import torch.distributed as dist

    meds = run_grpo(os.path.join(out_dir, "run"))
    rank = dist.get_rank() if dist.is_initialized() else 0
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **history_arrays(meds))
    world = dist.get_world_size() if dist.is_initialized() else 1
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"world_size": world}))
    end_ranks()


if __name__ == "__main__":
    _worker(sys.argv[1])
