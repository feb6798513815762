"""MEDSRewardFunction in 2 processes (torch.distributed, gloo) against 1 process, same data.

Each step's global batch (fixed completions of four problems, with recurrent wrong answers, a
completion without ``\\boxed{`` and one that ends on the brace) is split between the processes the
way TRL splits it: contiguous slices in rank order. The fingerprints come from a tiny random policy
model (the same weights on every process, no training), so the whole pipeline (fingerprint forward,
gather, shaping, slice) is compared with the 1-process run:

* with fixed fingerprints (``features_fn``), everything agrees bit for bit: the gather, the
  global shaping and the slicing are exact;
* with the policy's fingerprints, the penalties, clusters and shaped rewards agree exactly and the
  fingerprints agree to float32 rounding: CPU GEMM kernels do not promise bit-identical sums from
  one process to the next (memory alignment changes the vectorised reduction order), so the
  fingerprints may differ in the last bit; the clustering does not see such differences.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 test_trl_parity.py OUT``)
this file is the worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("accelerate")

from two_processes import end_ranks, run_two_processes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS = 5
SETTINGS = ("fixed", "model-bs1", "model-bs4")
"""Fingerprints: fixed vectors, or the policy's with fingerprint_batch_size 1 or 4."""


def _completions(problem: Any, step: int) -> list[str]:
    modes = sorted(problem.error_modes)
    dominant, rare = problem.error_modes[modes[0]], problem.error_modes[modes[1]]
    return [
        f"Done. \\boxed{{{problem.answer}}}",
        f"First {step % 2}. \\boxed{{{dominant}}}",
        f"Then {step % 3}. \\boxed{{{dominant}}}",
        f"So \\boxed{{{dominant}}}",
        f"Maybe \\boxed{{{rare}}}",
        "I do not know." if step % 2 else "Ends on the brace \\boxed{",
    ]


def _fixed_features(prompts: Any, texts: list[str], ids: Any) -> np.ndarray:
    """A deterministic fingerprint of the answer text (NaN without a complete ``\\boxed{}``)."""
    rows = []
    for text in texts:
        start = text.rfind("\\boxed{")
        answer = text[start + 7 : -1] if start >= 0 and text.endswith("}") else ""
        if not answer:
            rows.append([np.nan] * 3)
            continue
        value = int(answer)
        rows.append([1.0 + value % 7, 1.0 + value % 5, 1.0 + len(text) % 3])
    return np.array(rows, dtype=np.float32)


def drive(rank: int, world: int, setting: str) -> dict[str, np.ndarray]:
    """Run STEPS reward calls on this process's slice; returns the global history."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    sys.path.insert(0, str(REPO))
    from agents.tiny_model import build_char_tokenizer
    from meds_gym.integrations.trl import MEDSRewardFunction
    from meds_gym.tasks import ArithmeticTask

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
            tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    model.train()  # as in a training step: the memory learns
    meds = MEDSRewardFunction(
        model=model,
        tokenizer=tokenizer,
        features_fn=_fixed_features if setting == "fixed" else None,
        fingerprint_batch_size=4 if setting == "model-bs4" else 1,
        record_history=True,
    )
    task = ArithmeticTask(num_problems=6, seed=0)
    for step in range(STEPS):
        problems = [task[(2 * step + j) % len(task)] for j in range(2)]
        rows = [(p, text) for p in problems for text in _completions(p, step)]  # global batch
        share = len(rows) // world
        mine = rows[rank * share : (rank + 1) * share]
        ids = [
            tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for _, t in mine
        ]
        local = meds(
            prompts=[p.question for p, _ in mine],
            completions=[t for _, t in mine],
            completion_ids=ids,
            answer=[p.answer for p, _ in mine],
            problem_id=[p.problem_id for p, _ in mine],
        )
        step_record = meds.history[-1]
        np.testing.assert_array_equal(  # the returned rewards are this process's slice
            np.array(local), step_record.result.shaped_rewards[rank * share : (rank + 1) * share]
        )
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


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parity")
    run_two_processes(__file__, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("setting", SETTINGS)
def test_two_processes_give_the_penalties_of_one(two_process_results: Path, setting: str) -> None:
    one = drive(rank=0, world=1, setting=setting)
    for rank in (0, 1):
        two = dict(np.load(two_process_results / f"{setting}_rank{rank}.npz"))
        for key in ("problem_ids", "completions", "correct", "clusters", "cluster_sizes"):
            np.testing.assert_array_equal(two[key], one[key], err_msg=key)
        np.testing.assert_array_equal(two["penalties"], one["penalties"])
        np.testing.assert_array_equal(two["shaped"], one["shaped"])
        np.testing.assert_array_equal(np.isnan(two["features"]), np.isnan(one["features"]))
        if setting == "fixed":
            np.testing.assert_array_equal(two["features"], one["features"])
        else:
            np.testing.assert_allclose(two["features"], one["features"], rtol=1e-5, atol=1e-6)
    # The comparison is not vacuous: real penalties (of different sizes with the fixed
    # fingerprints; the random model's fingerprints form one cluster), and rows without one.
    assert (one["penalties"] > 0).sum() >= 8
    if setting == "fixed":
        assert len(np.unique(one["penalties"][one["penalties"] > 0])) >= 2
    assert np.isnan(one["features"]).all(axis=1).sum() == STEPS * 2


def _worker(out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    for setting in SETTINGS:
        arrays = drive(rank, world, setting)
        np.savez(os.path.join(out_dir, f"{setting}_rank{rank}.npz"), **arrays)
    end_ranks()


if __name__ == "__main__":
    _worker(sys.argv[1])
