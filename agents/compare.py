"""DAPO+MEDS against DAPO on a toy task, same model, seeds and budget: the project's main job.

``python -m agents.compare`` builds (or reuses from the cache) the warmed-up tiny model, evaluates
it, trains it once per arm and seed with ``agents.ppo.main`` (each run ends with its own
evaluation and ``report.md``), and writes one comparison into ``<output_dir>/compare-<time>/``:
``report.md`` (the table, the command, the settings) and ``pass_at_k.png``. The table is also
printed. Every arm starts from the same weights and is evaluated on the same problems with the same
sampling seed; only the algorithm differs.

The default budget is small enough for a laptop CPU (a few minutes, the warm-up included): a
compact tiny model, a short warm-up and a few dozen iterations. One seed is not evidence: the
report says so; ``--seeds 3`` (or more) reports mean ± std over seeds. Run
``python -m agents.compare --help``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from meds_gym.clustering import warm_up
from meds_gym.errors import InvalidArgumentError

from .cli import at_least, check_numbers, run, validator
from .evaluate import evaluate_policy
from .policy import autocast_for, load_policy
from .ppo import Args, main, use_deterministic_algorithms
from .report import current_command, write_report
from .run_setup import EnvSpec, resolve_model_path
from .tiny_model import SMALL_TINY

logger = logging.getLogger(f"{__package__ or 'agents'}.compare")  # not "__main__" under -m

COMPARE_TINY = SMALL_TINY
"""The compare command's tiny model (see :data:`agents.tiny_model.SMALL_TINY`)."""


def default_train_args() -> Args:
    """Training arguments of each arm (``algorithm`` and ``seed`` are set per run).

    16 problems, 4 per iteration, 16 iterations: every problem is visited about 4 times, so the
    MEDS memory of a problem holds earlier wrong answers when it comes back. The learning rate is
    below the training script's default (5e-4): at 5e-4 this 4-layer model's pass@1 fell during
    training in both arms (the policy collapsed onto one answer per problem); at 1e-4 it rises.
    """
    return Args(
        num_problems=16,
        iterations=16,
        prompts_per_iteration=4,
        learning_rate=1e-4,
        tiny=COMPARE_TINY,
        tensorboard=False,
        eval_n=16,
    )


@dataclass
class CompareArgs:
    """Command-line arguments (``tyro``)."""

    train: Args = field(default_factory=default_train_args)
    """Arguments of every training run; ``--train.seed`` is the first seed and
    ``--train.algorithm`` is ignored (``arms`` lists the algorithms)."""
    arms: tuple[Literal["meds", "dapo", "grpo", "grpo_entropy"], ...] = ("meds", "dapo")
    """Algorithms to compare, each trained from the same initial policy."""
    seeds: int = 1
    """Runs per arm, with seeds ``train.seed``, ``train.seed + 1``, ...; > 1 gives mean ± std."""
    output_dir: str = "runs"
    """The comparison goes to ``<output_dir>/compare-<UTC time>/``."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(self, {"seeds": at_least(1)})
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise InvalidArgumentError(
                "arms", "a non-empty tuple of distinct algorithms", self.arms
            )
        if self.train.eval_n < 1:
            raise InvalidArgumentError(
                "train.eval_n",
                "an int >= 1 (the comparison evaluates every policy)",
                self.train.eval_n,
            )


def compare(args: CompareArgs) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """Warm up (or reuse), evaluate the initial policy, train and evaluate every arm and seed.

    Returns:
        The comparison directory and, per arm (``initial`` first), the evaluation of each seed.
    """
    started = time.perf_counter()
    if "meds" in args.arms:  # MEDS's kernels compile while the initial policy is evaluated
        warm_up(background=True)
    if args.train.threads is not None:
        torch.set_num_threads(args.train.threads)
    if args.train.deterministic:  # before the initial policy's evaluation starts cuBLAS
        use_deterministic_algorithms()
    out = Path(args.output_dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    out.mkdir(parents=True, exist_ok=False)
    spec = EnvSpec.of(args.train)
    if args.train.model_path is None:  # build once here, so that no arm pays (or times) it
        logger.info("Tiny model: from the cache, or warmed up now (a few minutes on a CPU core)")
    model_path = resolve_model_path(
        spec, args.train.model_path, args.train.tiny, args.train.prompt_format, args.train.cache_dir
    )
    warm_seconds = time.perf_counter() - started
    train = dataclasses.replace(args.train, model_path=model_path, output_dir=str(out))
    seeds = [train.seed + i for i in range(args.seeds)]

    arms: dict[str, list[dict[str, Any]]] = {"initial": []}
    model, tokenizer = load_policy(model_path, train.device)
    toy = spec.is_toy
    # The same problems as the trained arms' final evaluation: the held-out split by default.
    env = spec.make(split=train.eval_split)
    logger.info("Evaluating the initial policy (%d samples per problem)", train.eval_n)
    for seed in seeds:  # the same sampling seed and precision as the trained arms' evaluation
        with autocast_for(train.precision, train.device):
            arms["initial"].append(
                evaluate_policy(
                    model,
                    tokenizer,
                    env,
                    train.eval_n,
                    train.max_new_tokens,
                    train.temperature,
                    seed,
                    train.prompt_format,
                )
            )
    env.close()
    del model
    run_seconds: dict[str, list[float]] = {}
    for algorithm in args.arms:
        arms[algorithm] = []
        for seed in seeds:
            run = dataclasses.replace(train, algorithm=algorithm, seed=seed)
            logger.info("Training %s, seed %d, then evaluating it", algorithm, seed)
            run_start = time.perf_counter()
            main(run)
            run_seconds.setdefault(algorithm, []).append(time.perf_counter() - run_start)
            arms[algorithm].append(json.loads((out / run.run_name / "eval.json").read_text()))

    total = time.perf_counter() - started
    budget = (
        f"{train.iterations} iterations x {train.prompts_per_iteration} prompts x "
        f"{train.group_size} responses ({train.update_epochs} update epochs) per run"
    )
    notes = [
        f"Budget: {budget}; evaluation: {train.eval_n} samples per problem on all "
        f"{arms['initial'][0]['problems']} problems, temperature {train.temperature}, the same "
        "sampling seed for every policy. "
        + (
            f"The problems are the held-out ({train.eval_split}) split of the task: none of them "
            "was seen in the warm-up or in RL."
            if toy and train.eval_split == "test"
            else "The problems are ones the model was trained on: this measures how RL reshapes "
            "a policy's answers, not generalisation."
        ),
        "Single seed, not significant: rerun with --seeds 3 or more for mean ± std."
        if args.seeds == 1
        else f"Mean ± sample std over {args.seeds} seeds ({seeds}) of problem order and "
        "sampling; every seed starts from the same warmed-up model.",
        "Cluster ARI: agreement between MEDS clusters and the true error modes of wrong "
        "training rollouts (mean over iterations; only the meds arm clusters).",
        f"Wall time {total:.0f} s: model {warm_seconds:.0f} s (warm-up, or 0 on a cache hit), "
        + ", ".join(f"{a} {sum(s):.0f} s" for a, s in run_seconds.items())
        + f", on {torch.get_num_threads()} torch thread(s).",
    ]
    settings = {
        "compare": {"arms": list(args.arms), "seeds": seeds},
        "train": {**dataclasses.asdict(train), "algorithm": "per arm", "seed": "per run"},
    }
    title = " vs ".join(args.arms) + f" on {train.env_id}"
    if toy:
        which = "held-out test" if train.eval_split == "test" else "training"
        title += f", evaluated on its {which} problems"
    write_report(out, title, current_command(), settings, arms, notes)
    return out, arms


def _main(compare_args: CompareArgs) -> None:
    directory, _ = compare(compare_args)
    print((directory / "report.md").read_text().split("\nSettings:")[0])
    print(f"report: {directory / 'report.md'}  plot: {directory / 'pass_at_k.png'}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(__package__).setLevel(logging.INFO)  # progress of the warm-up and the runs
    run(CompareArgs, _main)
