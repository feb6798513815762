"""MEDS inside TRL's GRPOTrainer on CPU: penalties applied, 1- vs 2-process parity, and the
memory carried through the trainer's checkpoints into a resumed run.

The completions come from a ``rollout_func`` that writes, for generation g of a problem's group,
a fixed answer (right, the dominant wrong mode twice, another wrong mode), so the error memory has
recurrent modes to cluster and the global batch is the same whatever the number of processes.
The fingerprints are computed by the real (tiny, random, training) policy model.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 test_trl_grpo.py OUT``)
this file is the worker of the 2-process tests (``MEDS_WORKER=resume``: of the resume test).
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


def memory_arrays(shaper: Any) -> dict[str, np.ndarray]:
    """A fingerprint memory as arrays: bucket keys, bucket sizes, stored rows."""
    keys, sizes, rows = shaper.memory.state()
    return {"keys": np.array([f"{pid}/{flag}" for pid, flag in keys]), "sizes": sizes, "rows": rows}


def run_grpo(
    output_dir: str,
    learning_rate: float = 1e-3,
    *,
    max_steps: int = STEPS,
    save_steps: int = 0,
    resume_from_checkpoint: str | None = None,
) -> Any:
    """A few GRPO steps with MEDS; returns the reward function (with its history).

    ``save_steps > 0`` saves a checkpoint every that many steps. The function also gets
    ``memory_at_begin``: its memory as the first reward call finds it (after a resume).
    """
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import TrainerCallback
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
        max_steps=max_steps,
        learning_rate=learning_rate,
        bf16=False,
        save_strategy="steps" if save_steps else "no",
        save_steps=max(save_steps, 1),
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

    class MemoryAtBegin(TrainerCallback):  # runs after the callback that bind added
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            meds.memory_at_begin = memory_arrays(meds.shaper)  # type: ignore[attr-defined]

    trainer.add_callback(MemoryAtBegin())
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
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


def assert_same_memory(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for key in ("keys", "sizes", "rows"):
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def _checkpointed_then_resumed(output_dir: str) -> tuple[Any, Any]:
    """4 steps with checkpoints at steps 2 and 4, then a fresh run resumed from step 2."""
    full = run_grpo(output_dir, max_steps=4, save_steps=2)
    checkpoint = os.path.join(output_dir, "checkpoint-2")
    resumed = run_grpo(output_dir, max_steps=4, save_steps=2, resume_from_checkpoint=checkpoint)
    return full, resumed


@pytest.mark.slow
def test_resumed_run_starts_from_the_checkpoints_memory(tmp_path: Path) -> None:
    """A fresh trainer and reward function resumed from checkpoint-2 hold the memory of step 2
    before their first reward, and go on from it."""
    from meds_gym.integrations.trl import MEMORY_FILE
    from meds_gym.meds import MEDSConfig, MEDSShaper

    full, resumed = _checkpointed_then_resumed(str(tmp_path / "run"))
    assert [len(full.history), len(resumed.history)] == [4, 2]
    # The memory of step 2: the shaper fed the uninterrupted run's first two global batches.
    at_step_2 = MEDSShaper(MEDSConfig())
    for step in full.history[:2]:
        at_step_2.shape(list(step.problem_ids), step.correct, step.rewards, step.features)
    expected = memory_arrays(at_step_2)
    assert expected["sizes"].sum() == 2 * GLOBAL_BATCH  # every problem stored: not trivial
    assert_same_memory(resumed.memory_at_begin, expected)
    saved = MEDSShaper.load(tmp_path / "run" / "checkpoint-2" / MEMORY_FILE)
    assert_same_memory(memory_arrays(saved), expected)
    # Steps 3-4 revisit every problem: each wrong answer is penalised from the restored memory,
    # exactly as the shaper loaded from the checkpoint penalises the same batches.
    for step in resumed.history:
        out = saved.shape(list(step.problem_ids), step.correct, step.rewards, step.features)
        np.testing.assert_array_equal(out.penalties, step.result.penalties)
        np.testing.assert_array_equal(out.cluster_sizes, step.result.cluster_sizes)
    again = history_arrays(resumed)
    assert (again["penalties"][~again["correct"]] > 0).all()


@pytest.mark.slow
def test_resuming_from_a_checkpoint_without_the_memory_raises(tmp_path: Path) -> None:
    from meds_gym.integrations.trl import MEMORY_FILE

    run_grpo(str(tmp_path / "run"), max_steps=1, save_steps=1)
    memory = tmp_path / "run" / "checkpoint-1" / MEMORY_FILE
    memory.unlink()  # a checkpoint saved without the callback
    with pytest.raises(FileNotFoundError, match=f"no MEDS memory at '{memory}'"):
        run_grpo(
            str(tmp_path / "run"),
            max_steps=2,
            resume_from_checkpoint=str(memory.parent),
        )


@pytest.mark.slow
def test_every_process_resumes_with_the_checkpoints_memory(tmp_path: Path) -> None:
    from meds_gym.integrations.trl import MEMORY_FILE
    from meds_gym.meds import MEDSShaper

    run_two_processes(__file__, tmp_path, TRL_EXPERIMENTAL_SILENCE="1", MEDS_WORKER="resume")
    saved = memory_arrays(MEDSShaper.load(tmp_path / "run" / "checkpoint-2" / MEMORY_FILE))
    assert saved["sizes"].sum() == 2 * GLOBAL_BATCH
    ranks = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in (0, 1)]
    for arrays in ranks:  # both ranks loaded the file before their first reward...
        assert_same_memory({key: arrays[f"begin_{key}"] for key in saved}, saved)
    # ...and went on in step: the same penalties, the same memory at the end.
    for key in ("penalties", "cluster_sizes", "end_sizes", "end_rows"):
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    assert (ranks[0]["penalties"][~ranks[0]["correct"]] > 0).all()


def _worker(out_dir: str) -> None:
    import torch.distributed as dist

    if os.environ.get("MEDS_WORKER") == "resume":
        _, meds = _checkpointed_then_resumed(os.path.join(out_dir, "run"))
        begin = {f"begin_{key}": value for key, value in meds.memory_at_begin.items()}
        end = memory_arrays(meds.shaper)
        arrays = {
            **history_arrays(meds),
            **begin,
            "end_sizes": end["sizes"],
            "end_rows": end["rows"],
        }
    else:
        meds = run_grpo(os.path.join(out_dir, "run"))
        arrays = history_arrays(meds)
    rank = dist.get_rank() if dist.is_initialized() else 0
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **arrays)
    world = dist.get_world_size() if dist.is_initialized() else 1
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"world_size": world}))
    end_ranks()


if __name__ == "__main__":
    _worker(sys.argv[1])
