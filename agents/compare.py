"""DAPO+MEDS against DAPO on a toy task, same model, seeds and budget: the project's main job.

``python -m agents.compare`` builds (or reuses from the cache) the warmed-up tiny model, evaluates
it, trains it once per arm and seed with ``agents.ppo.main`` (each run ends with its own
evaluation and ``report.md``), and writes one comparison into ``<output_dir>/compare-<time>/``:
``report.md`` (the table, the command, the settings) and ``pass_at_k.png``. The table is also
printed. Every arm starts from the same weights and is evaluated on the same held-out problems
with the same sampling seed; only the algorithm differs.

The default is a small version of the held-out reproduction (docs/results/second_edition): an
8-layer tiny model (the fingerprint keeps 4 layers) warmed up on freshly generated problems only,
RL on training problems, evaluation on held-out ones, 3 seeds reported as mean and 95% interval.
It takes a few minutes on a 2-core CPU, the warm-up included: the runs train in parallel
processes, one per core. Run ``python -m agents.compare --help``.
"""

from __future__ import annotations

import contextlib
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
from .workers import map_in_processes, output_to, threads_per_worker, worker_count

logger = logging.getLogger(f"{__package__ or 'agents'}.compare")  # not "__main__" under -m

COMPARE_TINY = dataclasses.replace(
    SMALL_TINY, num_layers=8, steps=300, fresh_problems=512, prompt_format="compact"
)
"""The compare command's tiny model: the reproduction's recipe, with a shorter warm-up.

8 layers of 128 (the MEDS fingerprint keeps the last 4), compact prompts (the question alone),
warmed up for 300 steps on 512 freshly generated problems, none of them a training or held-out
problem of the run (the reproduction: 2,048 problems, 800 steps). Its held-out AddSub pass@1 is
about 0.13, inside the low-accuracy region where the regime map says the reward change can act.
"""


def default_train_args() -> Args:
    """Training arguments of each arm (``algorithm`` and ``seed`` are set per run).

    AddSub, 32 training problems, 12 iterations of 8 prompts x 8 responses: every training problem
    is met about 3 times, so the MEDS memory of a problem holds earlier wrong answers when it
    comes back. Rewards +1 / -1 with the paper's alpha 0.1 and beta 0.2, learning rate 1e-4 and 2
    update epochs, as in the reproduction. The evaluation samples 16 responses to each of the 32
    held-out problems.
    """
    return Args(
        env_id="meds_gym/AddSub-v0",
        num_problems=32,
        iterations=12,
        prompts_per_iteration=8,
        learning_rate=1e-4,
        tiny=COMPARE_TINY,
        prompt_format="compact",
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
    seeds: int = 3
    """Runs per arm, with seeds ``train.seed``, ``train.seed + 1``, ...; > 1 gives each mean with
    its 95% Student-t interval over seeds."""
    workers: int | None = None
    """Runs trained at once, each in its own process with ``cpu_count // workers`` torch threads
    (its log goes to ``train.log`` in its run directory). None: one per CPU core, at most one
    per run; 1: one after the other in this process, with their progress bars."""
    output_dir: str = "runs"
    """The comparison goes to ``<output_dir>/compare-<UTC time>/``."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(self, {"seeds": at_least(1), "workers": at_least(1)})
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
    runs = [
        dataclasses.replace(train, algorithm=algorithm, seed=seed)
        for algorithm in args.arms
        for seed in seeds
    ]
    results = train_all(runs, args.workers)
    run_seconds: dict[str, list[float]] = {}
    for one, (metrics, seconds) in zip(runs, results, strict=True):
        arms.setdefault(one.algorithm, []).append(metrics)
        run_seconds.setdefault(one.algorithm, []).append(seconds)

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
        "Single seed, not significant: rerun with --seeds 3 or more for 95% intervals."
        if args.seeds == 1
        else f"Mean [95% Student-t interval] over {args.seeds} seeds ({seeds}) of problem order "
        "and sampling; every seed starts from the same warmed-up model, and the initial policy's "
        "seeds differ only in the evaluation's sampling. Arms whose intervals overlap are not "
        "told apart by this run.",
        "Cluster ARI: agreement between MEDS clusters and the true error modes of wrong "
        "training rollouts (mean over iterations; only the meds arm clusters).",
        f"Wall time {total:.0f} s: model {warm_seconds:.0f} s (warm-up, or 0 on a cache hit); "
        "training and evaluation per run: "
        + ", ".join(f"{a} {sum(s) / len(s):.0f} s" for a, s in run_seconds.items())
        + f" ({workers_label(args.workers, len(runs))}).",
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


def workers_label(workers: int | None, runs: int) -> str:
    """How the runs were trained, for the report."""
    count = worker_count(workers, runs)
    if count == 1:
        return f"one run at a time on {torch.get_num_threads()} torch thread(s)"
    return f"{count} runs at a time, {threads_per_worker(count)} torch thread(s) each"


def train_and_evaluate(run: Args, log: str | None = None) -> tuple[dict[str, Any], float]:
    """Train one run with :func:`agents.ppo.main`; returns its final evaluation and seconds.

    Args:
        run: The run's arguments.
        log: A file for everything the run prints (its progress bar, per-iteration lines and
            log records); None: the terminal.
    """
    started = time.perf_counter()
    with contextlib.nullcontext() if log is None else output_to(log):
        main(run)
    metrics = json.loads((Path(run.output_dir) / run.run_name / "eval.json").read_text())
    return metrics, time.perf_counter() - started


def train_all(runs: list[Args], workers: int | None) -> list[tuple[dict[str, Any], float]]:
    """Train and evaluate every run (in parallel processes when ``workers`` allows it).

    Returns:
        Each run's final evaluation and seconds, in the order of ``runs``.
    """
    count = worker_count(workers, len(runs))
    if count == 1:
        out = []
        for one in runs:
            logger.info("Training %s, seed %d, then evaluating it", one.algorithm, one.seed)
            out.append(train_and_evaluate(one))
        return out
    threads = threads_per_worker(count)
    logger.info(
        "Training %d runs, %d at a time (%d torch thread(s) each; logs: <run>/train.log)",
        len(runs), count, threads,
    )  # fmt: skip
    logs = [str(Path(one.output_dir) / one.run_name / "train.log") for one in runs]
    calls = [
        (dataclasses.replace(one, threads=threads), log)
        for one, log in zip(runs, logs, strict=True)
    ]

    def describe(i: int, result: tuple[dict[str, Any], float]) -> str:
        return (
            f"{runs[i].algorithm} seed {runs[i].seed}: held-out pass@1 "
            f"{result[0]['pass@1']:.3f} ({result[1]:.0f} s)"
        )

    return map_in_processes(train_and_evaluate, calls, count, describe, logs, "compare")


def _main(compare_args: CompareArgs) -> None:
    directory, _ = compare(compare_args)
    print((directory / "report.md").read_text().split("\nSettings:")[0])
    print(f"report: {directory / 'report.md'}  plot: {directory / 'pass_at_k.png'}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(__package__).setLevel(logging.INFO)  # progress of the warm-up and the runs
    run(CompareArgs, _main)
