r"""GRPO with MEDS reward shaping in TRL's ``GRPOTrainer``, on a meds-gym toy task.

The dataset holds problems of :class:`meds_gym.tasks.ArithmeticTask` (integer expressions with an
operator-precedence trap) as conversational prompts, with ``answer`` and ``problem_id`` columns.
The only reward function is :class:`meds_gym.integrations.trl.MEDSRewardFunction`: 1 for a right
answer (meds-gym's verifier), ``-min(alpha * log(n + 1), beta)`` for a wrong one that falls into a
cluster of n past wrong answers of the same problem (docs/design.md section 2). TRL then
normalises the rewards within each group of ``num_generations`` completions.

Everything TRL offers for scale works unchanged, because MEDS lives in a reward function: run it
with ``accelerate launch`` on several GPUs (one error memory shared by all processes), DeepSpeed,
or vLLM generation (``--use-vllm``).

Deviations from the paper's recipe (docs/design.md section 2): the defaults are sized for a laptop
(few steps, short completions, 4 generations instead of 16) and use TRL's GRPO loss, not DAPO's
dynamic sampling. The fingerprint is computed by one extra no-grad forward of the policy (TRL's
reward functions do not see its log-prob pass).

Model: ``--model-path`` loads any local causal LM. Without it the script uses the project's
warmed-up tiny model (agents/tiny_model.py: built in code, warmed up on the toy tasks and cached
on first use, which takes a few minutes on a CPU; nothing is downloaded), whose answers follow
recurrent buggy procedures, so MEDS has wrong answers to cluster and penalise from the second
visit of a problem on. ``--random-init`` takes a random tiny model instead: it rarely writes
``\boxed{}``, so its rewards are 0 and MEDS has nothing to shape (the script says so at the end).

Checkpoints: every ``--save-steps`` steps the trainer writes ``--output-dir/checkpoint-<step>``
(weights, optimizer, data order) and ``MEDSRewardFunction.bind`` adds a callback that writes the
MEDS memory into the same folder (``meds_memory.npz``, by the main process). ``--resume``
continues from the last checkpoint there (same arguments): every process loads that checkpoint's
memory before the first reward, so the penalties go on from the memory the run had at that step. A
checkpoint without the memory file is an error, never a fresh memory.

Served env: ``--env-url http://127.0.0.1:8000`` trains on the problems of a meds-gym env served
over OpenEnv (``python -m meds_gym.integrations.openenv serve meds_gym/Arithmetic-v0``, needs the
``openenv`` extra) and lets the served env grade every completion: the correctness function
resets it on the completion's problem and steps it with the completion (``answer_column`` is then
the problem id). MEDS still runs here, where the policy is.

Run (CPU, tiny):      python examples/trl_meds.py --use-cpu
Served env:           python examples/trl_meds.py --use-cpu --env-url http://127.0.0.1:8000
Resume it:            python examples/trl_meds.py --use-cpu --resume
Run (multi-GPU):      accelerate launch --config_file examples/accelerate_config.yaml \
                          examples/trl_meds.py --model-path /path/to/Qwen2.5-Math-1.5B
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config
from trl import GRPOConfig, GRPOTrainer

from meds_gym.envs import SYSTEM_INSTRUCTION
from meds_gym.integrations.trl import MEDSRewardFunction
from meds_gym.meds import MEDSConfig, MEDSShaper
from meds_gym.tasks import ArithmeticTask

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    """Command-line arguments."""

    model_path: str | None = None
    """Local directory of a causal LM (and its tokenizer); default: a tiny model built in code."""
    random_init: bool = False
    """Without --model-path: a random tiny model instead of the warmed-up one (nothing to shape)."""
    num_problems: int = 8
    """Problems of the arithmetic task in the training set."""
    difficulty: int = 1
    """Difficulty of the task (1-5)."""
    max_steps: int = 20
    """GRPO optimiser steps."""
    num_generations: int = 4
    """Completions per prompt (a GRPO group)."""
    per_device_train_batch_size: int = 8
    """Completions per process per step (a multiple of num_generations across processes)."""
    max_completion_length: int = 96
    """Tokens per completion."""
    learning_rate: float = 1e-5
    """AdamW learning rate."""
    temperature: float = 1.0
    """Sampling temperature."""
    alpha: float = 0.1
    """MEDS penalty slope: penalty = min(alpha * log(n + 1), beta)."""
    beta: float = 0.2
    """MEDS penalty cap."""
    fingerprint_batch_size: int = 8
    """Completions per fingerprint forward."""
    memory_path: str | None = None
    """Start the MEDS memory from this .npz if it exists (an earlier run's), and save it there at
    the end (--resume takes the checkpoint's memory instead)."""
    output_dir: str = "runs/trl_meds"
    """TRL output directory (logs and checkpoints)."""
    save_steps: int = 10
    """Save a checkpoint (weights, optimizer, MEDS memory) every this many steps; 0: none."""
    resume: bool = False
    """Continue from the last checkpoint in --output-dir, MEDS memory included."""
    use_cpu: bool = False
    """Train on the CPU."""
    bf16: bool = False
    """bfloat16 mixed precision (GPU)."""
    use_vllm: bool = False
    """Generate with vLLM (TRL's vllm_mode='colocate'); needs vllm installed."""
    seed: int = 0
    """Seed of the tiny model's weights, the data order and the sampling."""
    env_url: str | None = None
    """An OpenEnv server of a meds-gym env: train on its problems, graded by it (--num-problems
    and --difficulty then do not apply)."""


def load_policy(args: Args) -> tuple[Any, Any]:
    """The model at --model-path, or a tiny causal LM and character tokenizer built in code."""
    if args.model_path is not None:
        tokenizer = AutoTokenizer.from_pretrained(args.model_path)
        model = AutoModelForCausalLM.from_pretrained(args.model_path)
        return model, tokenizer
    sys.path.insert(0, str(REPO))  # the agent package lives beside the library in a clone
    from agents.tiny_model import SMALL_TINY, build_char_tokenizer, load_tokenizer, tiny_model_path

    if not args.random_init:
        path = tiny_model_path(SMALL_TINY)  # the README's TRL example's model: one cache entry
        return AutoModelForCausalLM.from_pretrained(path), load_tokenizer(path)
    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(args.seed)
    return AutoModelForCausalLM.from_config(config), tokenizer


def arithmetic_dataset(args: Args) -> Dataset:
    """Conversational prompts with the gold answer and the stable problem id as columns."""
    task = ArithmeticTask(num_problems=args.num_problems, difficulty=args.difficulty, seed=0)
    rows = [
        {
            "prompt": [
                {"role": "system", "content": SYSTEM_INSTRUCTION},
                {"role": "user", "content": problem.question},
            ],
            "answer": problem.answer,
            "problem_id": problem.problem_id,
        }
        for problem in task
    ]
    return Dataset.from_list(rows)


def served_env_reward(url: str, shaper: MEDSShaper, batch_size: int) -> tuple[Dataset, Any]:
    """The served env's problems as a dataset, and a MEDS reward function graded by the env."""
    from meds_gym.integrations.openenv import OpenEnvTextEnv

    env = OpenEnvTextEnv(url)
    anchor = env.answer_anchor
    rows = [
        {
            "prompt": [
                {"role": "system", "content": anchor.instruction},
                {"role": "user", "content": problem.question},
            ],
            "problem_id": problem.problem_id,
        }
        for problem in env.source
    ]

    def served_verdict(completion: str, problem_id: str) -> bool:
        env.reset(options={"problem_id": problem_id})
        return bool(env.step(completion)[4]["correct"])

    meds = MEDSRewardFunction(
        shaper=shaper,
        fingerprint_batch_size=batch_size,
        answer_column="problem_id",  # the served env knows the gold answer of each problem
        correctness_fn=served_verdict,
        answer_anchor=anchor,
    )
    return Dataset.from_list(rows), meds


def main(args: Args) -> None:
    torch.set_num_threads(min(torch.get_num_threads(), 4) if args.use_cpu else 1)
    model, tokenizer = load_policy(args)

    config = MEDSConfig(alpha=args.alpha, beta=args.beta)
    if args.memory_path is not None and os.path.exists(args.memory_path):
        shaper = MEDSShaper.load(args.memory_path)  # continue the memory of an earlier run
    else:
        shaper = MEDSShaper(config)
    if args.env_url is not None:
        dataset, meds = served_env_reward(args.env_url, shaper, args.fingerprint_batch_size)
    else:
        dataset = arithmetic_dataset(args)
        meds = MEDSRewardFunction(shaper=shaper, fingerprint_batch_size=args.fingerprint_batch_size)

    training_args = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        num_generations=args.num_generations,
        per_device_train_batch_size=args.per_device_train_batch_size,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        use_cpu=args.use_cpu,
        bf16=args.bf16,
        use_vllm=args.use_vllm,
        vllm_mode="colocate",
        seed=args.seed,
        logging_steps=1,
        save_strategy="steps" if args.save_steps > 0 else "no",
        save_steps=max(args.save_steps, 1),  # read only with save_strategy="steps"
        report_to=[],
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[meds],
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    meds.bind(trainer)  # the fingerprint uses the policy being trained; checkpoints hold the memory
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    if args.memory_path is not None:
        meds.save(args.memory_path)  # written by the main process only
    if trainer.accelerator.is_main_process:
        stats = meds.shaper.stats()
        logs = [e for e in trainer.state.log_history if "meds/penalised_fraction" in e]
        penalised = np.mean([e["meds/penalised_fraction"] for e in logs]) if logs else 0.0
        reward = np.mean([e["reward"] for e in logs]) if logs else float("nan")
        print(
            f"steps={trainer.state.global_step} mean_reward={reward:.4f} "
            f"penalised_fraction={penalised:.4f} memory_rows={stats.rows} "
            f"buckets={stats.buckets} clusters={stats.clusters}"
        )
        if penalised == 0.0:
            print(
                "MEDS penalised nothing: it needs wrong answers with a \\boxed{} (a fingerprint) "
                "in groups that also hold a right answer, on a problem visited before. A random "
                "model rarely writes \\boxed{}; use the warmed-up model (drop --random-init), "
                "more steps, or fewer problems (--num-problems)."
            )


if __name__ == "__main__":
    main(tyro.cli(Args))
