"""Evaluate a policy on a meds-gym env: pass@k, answer diversity and the error modes it falls into.

Samples ``n`` responses to each problem, scores them with the env and prints one line per metric.
With no ``--model-path`` it evaluates the tiny model (built and cached on first use) on the toy
task it was warmed up on. Run ``python -m agents.evaluate --help``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.envs import TOY_ENV_IDS
from meds_gym.errors import InvalidArgumentError

from .evaluation import (
    distinct_answers,
    dominant_mode_share,
    error_mode_labels,
    mean_pass_at_k,
)
from .policy import load_policy, prompt_text, sample_responses, score_responses
from .tiny_model import TinyModelConfig, tiny_model_path


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

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InvalidArgumentError("n", "an int >= 1", self.n)


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
        env: A meds-gym text env (``env.unwrapped.source`` lists its problems).
        n: Responses per problem; pass@k is reported for k = 1, 2, 4, ... <= n.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.
        seed: Seed of the sampling (torch's global generator is reseeded).
        prompt_format: How observations become prompts (:data:`agents.policy.PROMPT_FORMATS`).

    Returns:
        ``problems``, ``n``, ``pass@k`` for each k, ``distinct_answers_per_problem`` and, when some
        answer was wrong, ``wrong_share``, ``error_modes`` (mode -> count) and
        ``dominant_error_share``.
    """
    if n < 1:
        raise InvalidArgumentError("n", "an int >= 1", n)
    torch.manual_seed(seed)
    source: Any = env.unwrapped.source
    model.eval()
    correct_counts, ids, answers, wrong_ids, wrong_answers = [], [], [], [], []
    for index in range(len(source)):
        obs, info = env.reset(options={"index": index})
        pid = info["problem_id"]
        batch = sample_responses(
            model,
            tokenizer,
            [prompt_text(tokenizer, obs, info, prompt_format)],
            n,
            max_new_tokens,
            temperature,
        )
        _, correct, parsed = score_responses(env, [pid] * n, batch.texts)
        correct_counts.append(sum(correct))
        ids += [pid] * n
        answers += parsed
        wrong_ids += [pid for ok in correct if not ok]
        wrong_answers += [a for a, ok in zip(parsed, correct, strict=True) if not ok]
    metrics: dict[str, Any] = {"problems": len(source), "n": n}
    k = 1
    while k <= n:
        metrics[f"pass@{k}"] = mean_pass_at_k(correct_counts, n, k)
        k *= 2
    metrics["distinct_answers_per_problem"] = float(
        np.mean(list(distinct_answers(ids, answers).values()))
    )
    if wrong_ids:
        modes = error_mode_labels(wrong_answers, [source.get(p).error_modes for p in wrong_ids])
        metrics["wrong_share"] = len(wrong_ids) / len(ids)
        metrics["error_modes"] = dict(Counter(modes).most_common())
        metrics["dominant_error_share"] = dominant_mode_share(wrong_ids, modes)
    return metrics


def evaluate(args: EvalArgs) -> dict[str, Any]:
    """Build the env, load the policy (the tiny model by default), and :func:`evaluate_policy`."""
    toy = args.env_id in TOY_ENV_IDS
    if args.model_path is None and not toy:
        raise InvalidArgumentError(
            "model_path",
            f"a model directory (the tiny model is built for the toy envs {sorted(TOY_ENV_IDS)})",
            None,
        )
    env_kwargs: dict[str, Any] = (
        {"num_problems": args.num_problems, "difficulty": args.difficulty, "seed": args.task_seed}
        if toy
        else {"data_path": args.data_path}
    )
    env = gym.make(args.env_id, **env_kwargs)
    model_path = args.model_path
    if model_path is None:
        tiny = dataclasses.replace(
            args.tiny,
            task=TOY_ENV_IDS[args.env_id],
            num_problems=args.num_problems,
            difficulty=args.difficulty,
            task_seed=args.task_seed,
        )
        model_path = str(tiny_model_path(tiny, args.cache_dir))
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


if __name__ == "__main__":
    import tyro

    logging.basicConfig(level=logging.INFO)
    eval_args = tyro.cli(EvalArgs)
    result = evaluate(eval_args)
    for name, value in result.items():
        print(f"{name}: {value}")
    if eval_args.json_out:
        with open(eval_args.json_out, "w") as handle:
            json.dump(result, handle, indent=1)
