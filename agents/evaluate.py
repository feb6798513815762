"""Evaluate a policy on a meds-gym env: pass@k, answer diversity and the error modes it falls into.

Samples ``n`` responses to each problem, scores them with the env and prints one line per metric.
With no ``--model-path`` it evaluates the tiny model (built and cached on first use) on the toy
task it was warmed up on. Run ``python -m agents.evaluate --help``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cli import above, at_least, check_numbers, run, validator
from .evaluation import (
    distinct_answers,
    dominant_mode_share,
    effective_mode_count,
    error_mode_labels,
    pass_at_k_curve,
)
from .policy import load_policy
from .run_setup import EnvSpec, ProblemSamples, resolve_model_path, sample_every_problem
from .tiny_model import TinyModelConfig


@dataclass
class EvalArgs:
    """Command-line arguments (``tyro``)."""

    env_id: str = "meds_gym/Arithmetic-v0"
    """A registered meds-gym env id."""
    num_problems: int = 32
    """Problems of a toy task (toy env ids only)."""
    difficulty: int = 1
    """Difficulty of a toy task."""
    task_seed: int = 0
    """Seed of the toy task's problem set."""
    data_path: str | None = None
    """Local data file of a benchmark env id."""
    model_path: str | None = None
    """A model directory; None: the tiny model warmed up on this toy task."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """The tiny model's architecture and warm-up (its task fields follow the env's)."""
    cache_dir: str | None = None
    """Cache of tiny models."""
    n: int = 16
    """Responses sampled per problem (pass@k is reported for k = 1, 2, 4, ... <= n)."""
    max_new_tokens: int = 64
    """Maximum response length in tokens."""
    temperature: float = 1.0
    """Sampling temperature."""
    seed: int = 0
    """Sampling seed."""
    json_out: str | None = None
    """Also write the metrics to this JSON file."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(
            self,
            {"num_problems": at_least(1), "difficulty": at_least(1), "n": at_least(1),
             "max_new_tokens": at_least(1), "temperature": above(0)},
        )  # fmt: skip


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    env: Any,
    n: int,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    prompt_format: str = "chat",
) -> dict[str, Any]:
    """Sample ``n`` responses to every problem of ``env``, score them with it and summarise.

    Args:
        model: The causal LM (put in eval mode here).
        tokenizer: Its tokenizer, padding on the left.
        env: A :class:`~meds_gym.envs.ProblemEnv` (or a wrapper of one).
        n: Responses per problem; pass@k is reported for k = 1, 2, 4, ... <= n.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.
        seed: Seed of the sampling (torch's global generator is reseeded).
        prompt_format: How observations become prompts (:data:`agents.policy.PROMPT_FORMATS`).

    Returns:
        :func:`summarise_samples` of the samples.
    """
    samples = sample_every_problem(
        model, tokenizer, env, n, max_new_tokens, temperature, seed, prompt_format
    )
    return summarise_samples(samples)


def summarise_samples(samples: ProblemSamples) -> dict[str, Any]:
    """pass@k, answer diversity and error modes of a policy's samples.

    Returns:
        ``problems``, ``n``, ``pass@k`` for each k, ``distinct_answers_per_problem`` and, when some
        answer was wrong, ``wrong_share``, ``error_modes`` (mode -> count, by
        :func:`agents.evaluation.error_mode_label`) and ``dominant_error_share``.
    """
    n, ids = samples.n, samples.problem_ids
    metrics: dict[str, Any] = {"problems": len(samples.problems), "n": n}
    metrics.update(pass_at_k_curve(samples.correct_counts, n))
    metrics["distinct_answers_per_problem"] = float(
        np.mean(list(distinct_answers(ids, samples.answers).values()))
    )
    wrong = [i for i, ok in enumerate(samples.correct) if not ok]
    if wrong:
        problems = samples.response_problems
        modes = error_mode_labels([samples.answers[i] for i in wrong], [problems[i] for i in wrong])
        wrong_ids = [ids[i] for i in wrong]
        metrics["wrong_share"] = len(wrong) / len(ids)
        metrics["error_modes"] = dict(Counter(modes).most_common())
        share = dominant_mode_share(wrong_ids, modes)
        if np.isfinite(share):  # unexplained answers are not a mode (benchmarks have none)
            metrics["dominant_error_share"] = share
            metrics["effective_error_modes"] = effective_mode_count(wrong_ids, modes)
    return metrics


def evaluate(args: EvalArgs) -> dict[str, Any]:
    """Build the env, load the policy (the tiny model by default), and :func:`evaluate_policy`."""
    spec = EnvSpec.of(args)
    model_path = resolve_model_path(spec, args.model_path, args.tiny, cache_dir=args.cache_dir)
    env = spec.make()
    model, tokenizer = load_policy(model_path)
    metrics = evaluate_policy(
        model,
        tokenizer,
        env,
        args.n,
        args.max_new_tokens,
        args.temperature,
        args.seed,
        args.tiny.prompt_format,
    )
    env.close()
    return {"model_path": model_path, **metrics}


def _main(eval_args: EvalArgs) -> None:
    result = evaluate(eval_args)
    for name, value in result.items():
        print(f"{name}: {value}")
    if eval_args.json_out:
        with open(eval_args.json_out, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run(EvalArgs, _main)
