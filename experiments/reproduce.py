"""Reproduce the MEDS paper's claims at toy scale, on held-out problems (issue 10).

For every toy task family, seed and method, the bundled agent (``agents.ppo.main``) trains the
warmed-up tiny model of that family at one budget shared by all methods (same iterations, prompts
per iteration and group size, same initial weights and same seed); the final policy is then
evaluated on the family's held-out *test* problems and on its training problems, reported apart.
The initial policy is evaluated the same way, per seed, as a row of its own. The tiny model is
warmed up on many more problems (``--warmup-problems``) than RL trains on: one warmed up on the RL
problems alone learns their answers, not the procedures, and never solves a held-out problem.

Methods: GRPO, DAPO, GRPO+Entropy, PPO, DAPO+MEDS, PPO+MEDS, and three ablations of DAPO+MEDS:
all layers in the fingerprint (instead of the last half), a single cluster per problem (a uniform
penalty by count: ``ClusterMethod.SINGLE``), and a random fingerprint (each fingerprint replaced by
Gaussian noise before MEDS sees it, so that clusters carry no information about the answer).

Metrics, each as mean and 95% Student-t interval over seeds (``experiments/metrics.py``):
unbiased pass@k for k = 1, 2, 4, ... <= ``eval_n``; distinct wrong answers per problem; share of
the dominant true error mode among wrong answers (the toy tasks label every wrong answer with the
buggy procedures that produce it), at the end of training and over training; for MEDS runs, the
top-1 eigen ratio of the memory (``MEDSShaper.stats()``) and the agreement of the clusters MEDS
voted wrong rollouts into with their true error modes (ARI, purity, and the paper's pairwise
agreement), averaged over training iterations.

How the runs are observed: ``agents.ppo.main`` is given a :class:`RunRecorder` (an
``agents.ppo.RunObserver``) that keeps the policy it loads (training updates that object in place,
so it is the final policy when ``main`` returns), records each MEDS batch's rollouts and clusters
and, for the random-fingerprint control, replaces the fingerprints by noise before MEDS sees them.
Every wrong answer, in training and in evaluation, is labelled by ``agents.evaluation``'s one
error-mode labeller, the one the training log uses for its dominant error-mode share.

Outputs in ``--output-dir``: ``runs/<family>__<method>__<seed>.json`` (one per finished run; a
rerun skips them, so an interrupted reproduction resumes), ``results.json``, ``report.md`` and
the plots ``pass_at_k_<family>_<split>.png``, ``dominant_error_share.png`` and
``cluster_agreement.png``. The runs train in parallel processes, one per core (``--workers``), each
on ``--threads`` torch threads; a run's results do not depend on how many run at once.

Usage:
    python -m experiments.reproduce --quick                 # 1 seed, DAPO vs DAPO+MEDS, minutes
    python -m experiments.reproduce                         # the pre-registered protocol
    python -m experiments.reproduce --families meds_gym/AddSub-v0   # one family
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from agents import ppo
from agents.evaluation import error_mode_label, pass_at_k_curve
from agents.report import (
    current_command,
    format_interval,
    interval95,
    intervals_disjoint,
    report_heading,
)
from agents.run_setup import EnvSpec, ProblemSamples, sample_every_problem
from agents.tiny_model import SMALL_TINY, TinyModelConfig, tiny_model_path
from agents.workers import map_in_processes, output_to, worker_count
from experiments.figures import pyplot, save
from experiments.metrics import (
    cluster_agreement_scores,
    error_summary,
    finite_or_none,
)
from meds_gym.envs import TOY_ENV_IDS
from meds_gym.errors import InvalidArgumentError

logger = logging.getLogger("experiments.reproduce")

MethodName = Literal[
    "grpo",
    "dapo",
    "grpo_entropy",
    "ppo",
    "dapo_meds",
    "ppo_meds",
    "dapo_meds_all_layers",
    "dapo_meds_single_cluster",
    "dapo_meds_random_fingerprint",
    "dapo_meds_all_wrong",
    "dapo_answer_memory",
]
METHODS: dict[str, dict[str, Any]] = {
    "grpo": {"algorithm": "grpo"},
    "dapo": {"algorithm": "dapo"},
    "grpo_entropy": {"algorithm": "grpo_entropy"},
    "ppo": {"algorithm": "ppo"},
    "dapo_meds": {"algorithm": "dapo", "meds": True},
    "ppo_meds": {"algorithm": "ppo", "meds": True},
    "dapo_meds_all_layers": {"algorithm": "dapo", "meds": True, "fingerprint_layers": "all"},
    "dapo_meds_single_cluster": {"algorithm": "dapo", "meds": True, "meds_cluster": "single"},
    "dapo_meds_random_fingerprint": {"algorithm": "dapo", "meds": True},
    "dapo_meds_all_wrong": {
        "algorithm": "dapo",
        "meds": True,
        "meds_groups": "mixed_and_all_wrong",
    },
    "dapo_answer_memory": {"algorithm": "dapo", "meds": True, "meds_cluster": "answer"},
}
"""Method name -> the ``agents.ppo.Args`` fields that make it (the random control adds noise)."""
LABELS = {
    "initial": "initial policy",
    "grpo": "GRPO",
    "dapo": "DAPO",
    "grpo_entropy": "GRPO+Entropy",
    "ppo": "PPO",
    "dapo_meds": "DAPO+MEDS",
    "ppo_meds": "PPO+MEDS",
    "dapo_meds_all_layers": "DAPO+MEDS, all layers",
    "dapo_meds_single_cluster": "DAPO+MEDS, single cluster",
    "dapo_meds_random_fingerprint": "DAPO+MEDS, random fingerprint",
    "dapo_meds_all_wrong": "DAPO+MEDS, all-wrong groups too",
    "dapo_answer_memory": "DAPO + answer-string memory",
}
MEDS_VARIANTS = ("dapo_meds", "dapo_meds_all_layers", "dapo_meds_single_cluster")
"""The cluster-agreement ordering the paper reports: last half > all layers > single cluster."""
SPLITS = ("test", "train")
QUICK_METHODS: tuple[MethodName, ...] = ("dapo", "dapo_meds", "dapo_meds_all_wrong")
PRIMARY_METHODS: tuple[MethodName, ...] = ("dapo", "dapo_meds", "dapo_meds_all_wrong")
"""The methods of the primary comparison's table: every seed, every family."""
SECONDARY_METHODS: tuple[MethodName, ...] = (
    "dapo_answer_memory",
    "dapo_meds_single_cluster",
    "dapo_meds_random_fingerprint",
    "grpo_entropy",
)
"""Controls and baselines: ``secondary_seeds`` seeds on ``secondary_family``."""


@dataclass
class Args:
    """Command-line arguments (``tyro``); the defaults are the second edition's protocol."""

    output_dir: str = "runs/reproduce"
    """Results, report and plots; finished runs found here are not run again."""
    families: tuple[str, ...] = ("meds_gym/Arithmetic-v0", "meds_gym/AddSub-v0")
    """Toy task env ids (at least 2 for the issue)."""
    methods: tuple[MethodName, ...] = PRIMARY_METHODS
    """Methods trained with every seed on every family (the initial policy is always evaluated)."""
    secondary_methods: tuple[MethodName, ...] = SECONDARY_METHODS
    """Methods trained with ``secondary_seeds`` seeds on ``secondary_family`` only."""
    secondary_family: str = "meds_gym/AddSub-v0"
    """The family of the secondary methods (the cheaper one, so that the two families, run as
    two processes, take about the same time)."""
    seeds: int = 5
    """Seeds of ``methods``: ``first_seed``, ``first_seed + 1``, ..."""
    secondary_seeds: int = 3
    """Seeds of ``secondary_methods`` (the first ones of ``seeds``)."""
    first_seed: int = 0
    """The first seed."""
    primary_method: MethodName = "dapo_meds_all_wrong"
    """The pre-registered primary comparison: this method against ``primary_baseline``..."""
    primary_baseline: MethodName = "dapo"
    """...on ``primary_family``'s held-out problems, by ``primary_metric``."""
    primary_family: str = "meds_gym/Arithmetic-v0"
    """The primary comparison's family."""
    primary_metric: str = "pass@8"
    """The primary comparison's metric (held-out split)."""
    num_problems: int = 128
    """Training problems per family (the first of the train split, task seed 0)."""
    test_problems: int = 256
    """Held-out problems per family (the test split of the same family, difficulty and seed)."""
    warmup_problems: int = 2048
    """Problems the tiny model is warmed up on: freshly generated (task seed 1), never a training
    or held-out question (``agents.tiny_model.TinyModelConfig.fresh_problems``)."""
    warmup_steps: int = 800
    """Warm-up optimiser steps of the tiny model (calibrated on the initial policy's held-out
    pass@1 alone: docs/results/second_edition/plan.md)."""
    num_layers: int = 8
    """Decoder layers of the tiny model (the fingerprint keeps the last half)."""
    difficulty: int = 1
    """Difficulty of every family."""
    iterations: int = 60
    """Training iterations of every run."""
    prompts_per_iteration: int = 16
    """Problems per iteration, drawn in epochs (every training problem once per epoch)."""
    group_size: int = 8
    """Responses per problem in training."""
    learning_rate: float = 1e-4
    """AdamW learning rate of every method."""
    max_new_tokens: int = 64
    """Longest response, in training and evaluation."""
    prompt_format: Literal["chat", "compact"] = "compact"
    """Prompts of the warm-up, training and evaluation: ``compact`` (the question only, about 60
    tokens shorter than the chat template's system line) makes every run about 1.7x cheaper."""
    meds_alpha: float = 0.1
    """MEDS penalty slope (the paper's, on the agent's +1 / -1 rewards)."""
    meds_beta: float = 0.2
    """MEDS penalty cap (the paper's)."""
    eval_n: int = 8
    """Responses sampled per problem in evaluation (pass@k for k = 1, 2, 4, ... <= eval_n)."""
    threads: int = 1
    """CPU threads for torch and numba in each run."""
    workers: int | None = None
    """Runs trained at once, each in its own process (``agents.workers``) writing what it prints
    to ``<output_dir>/logs/``. None: one per CPU core; 1: one after the other in this process.
    The runs' results do not depend on it."""
    quick: bool = False
    """Smoke configuration: 1 seed, the primary methods, the first family, a small budget."""
    report_only: bool = False
    """Train nothing: write the results, report and plots from the runs already on disk."""

    def __post_init__(self) -> None:
        if self.quick:
            self.seeds, self.secondary_seeds = 1, 1
            self.methods, self.secondary_methods = QUICK_METHODS, ()
            self.families = self.families[:1]
            self.num_problems, self.test_problems, self.warmup_problems = 8, 8, 64
            self.warmup_steps, self.num_layers = 60, 2
            self.iterations, self.prompts_per_iteration = 2, 4
            self.eval_n = min(self.eval_n, 4)
            self.primary_family, self.primary_metric = self.families[0], "pass@4"
            self.secondary_family = self.families[0]
        unknown = [f for f in self.families if f not in TOY_ENV_IDS]
        if unknown or not self.families:
            raise InvalidArgumentError(
                "families", f"toy env ids among {sorted(TOY_ENV_IDS)}", self.families
            )
        for name in (
            "seeds", "num_problems", "test_problems", "iterations", "eval_n", "warmup_problems",
            "num_layers", "warmup_steps", "prompts_per_iteration",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise InvalidArgumentError(name, "an int >= 1", getattr(self, name))
        if self.workers is not None and self.workers < 1:
            raise InvalidArgumentError("workers", "an int >= 1, or None", self.workers)
        if not 0 <= self.secondary_seeds <= self.seeds:
            raise InvalidArgumentError(
                "secondary_seeds", f"an int in [0, seeds={self.seeds}]", self.secondary_seeds
            )
        every = [*self.methods, *self.secondary_methods]
        if not self.methods or len(set(every)) != len(every):
            raise InvalidArgumentError("methods", "a non-empty tuple of distinct methods", every)
        if {self.primary_method, self.primary_baseline} - set(self.methods):
            raise InvalidArgumentError(
                "primary_method", f"a method among methods={self.methods}", self.primary_method
            )
        for name in ("primary_family", "secondary_family"):
            if getattr(self, name) not in TOY_ENV_IDS:
                raise InvalidArgumentError(name, f"a toy env id among {sorted(TOY_ENV_IDS)}",
                                           getattr(self, name))  # fmt: skip

    @property
    def all_methods(self) -> list[str]:
        """Every trained method, primary ones first."""
        return [*self.methods, *self.secondary_methods]

    def plan(self) -> list[tuple[str, str, int]]:
        """Every (family, method, seed) run of this invocation's families, in the order they run.

        The initial policies and the primary methods come first, every seed; the secondary
        methods last, so that a budget that runs out cuts the controls, never the primary
        comparison.
        """
        runs = [
            (family, m, seed)
            for seed in self.seed_list
            for family in self.families
            for m in ["initial", *self.methods]
        ]
        if self.secondary_family in self.families:
            runs += [
                (self.secondary_family, m, seed)
                for seed in self.seed_list[: self.secondary_seeds]
                for m in self.secondary_methods
            ]
        return runs

    @property
    def seed_list(self) -> list[int]:
        """The seeds every method runs with."""
        return [self.first_seed + i for i in range(self.seeds)]

    @property
    def ks(self) -> list[int]:
        """The k of every reported pass@k."""
        return [2**i for i in range(int(math.log2(self.eval_n)) + 1)]


def family_name(env_id: str) -> str:
    """``meds_gym/AddSub-v0`` -> ``AddSub``."""
    return env_id.split("/")[-1].removesuffix("-v0")


def run_file(out: Path, family: str, method: str, seed: int) -> Path:
    """The results file of one run (its presence marks the run as done)."""
    return out / "runs" / f"{family_name(family)}__{method}__{seed}.json"


def run_log(out: Path, family: str, method: str, seed: int) -> Path:
    """What one run printed, when it ran in a worker process."""
    return out / "logs" / f"{family_name(family)}__{method}__{seed}.log"


def run_and_save(
    args: Args,
    family: str,
    method: str,
    seed: int,
    model_path: str,
    out: str,
    log: str | None = None,
) -> str:
    """Run one (family, method, seed), write its results file, return a line that sums it up.

    Args:
        args: The reproduction's arguments.
        family: The toy env id.
        method: A method of :data:`LABELS`.
        seed: The run's seed.
        model_path: The family's warmed-up tiny model.
        out: The output directory.
        log: A file for everything the run prints (a worker process); None: the terminal.
    """
    import numba

    with contextlib.nullcontext() if log is None else output_to(log):
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        result = run_method(args, family, method, seed, model_path, Path(out))
    path = run_file(Path(out), family, method, seed)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(finite_or_none(result), indent=1))
    tmp.replace(path)  # a killed run leaves no results file, so it runs again next time
    test = result["eval"]["test"]
    return (
        f"{family_name(family)} {method} seed {seed}: held-out pass@1 {test['pass@1']:.3f}, "
        f"pass@{args.ks[-1]} {test[f'pass@{args.ks[-1]}']:.3f} ({result['seconds']:.0f} s)"
    )


# -- observing agents.ppo.main -------------------------------------------------------------------


class RunRecorder(ppo.RunObserver):
    """Keeps the policy ``agents.ppo.main`` trains and records every batch MEDS shapes.

    Args:
        noise_seed: For the random-fingerprint control, the seed of the noise that replaces every
            fingerprint (rows without a fingerprint stay without one); None leaves them alone.
    """

    def __init__(self, noise_seed: int | None = None) -> None:
        self.policy: tuple[Any, Any] | None = None
        """The policy ``main`` loaded (trained in place: the final policy once it returns)."""
        self.batches: list[dict[str, list[Any]]] = []
        """Each MEDS batch's ``problem_ids``, ``answers``, ``correct`` and ``clusters``."""
        self._noise = np.random.default_rng(noise_seed) if noise_seed is not None else None

    def policy_loaded(self, model: Any, tokenizer: Any) -> None:
        """Keep the policy."""
        self.policy = (model, tokenizer)

    def fingerprints(self, fingerprints: np.ndarray) -> np.ndarray:
        """The control: same shape, same missing rows, no information about the answers."""
        if self._noise is None:
            return fingerprints
        present = ~np.isnan(fingerprints).any(axis=1)
        noisy = np.array(fingerprints, dtype=np.float32, copy=True)
        drawn = self._noise.standard_normal((int(present.sum()), noisy.shape[1]))
        noisy[present] = drawn.astype(np.float32)
        return noisy

    def meds_shaped(
        self,
        problem_ids: list[str],
        answers: list[str | None],
        correct: list[bool],
        meds_info: dict[str, np.ndarray],
    ) -> None:
        """Record the batch's rollouts and the clusters MEDS voted them into."""
        self.batches.append(
            {
                "problem_ids": list(problem_ids),
                "answers": list(answers),
                "correct": [bool(c) for c in correct],
                "clusters": [int(c) for c in np.asarray(meds_info["cluster"])],
            }
        )


# -- evaluation ----------------------------------------------------------------------------------


def evaluate_split(
    model: Any,
    tokenizer: Any,
    env: Any,
    n: int,
    max_new_tokens: int,
    seed: int,
    prompt_format: str = "chat",
) -> dict[str, Any]:
    """Sample ``n`` responses (temperature 1) to every problem of ``env`` and score them.

    Returns:
        :func:`split_metrics` of the samples.
    """
    samples = sample_every_problem(
        model, tokenizer, env, n, max_new_tokens, 1.0, seed, prompt_format=prompt_format
    )
    return split_metrics(samples)


def split_metrics(samples: ProblemSamples) -> dict[str, Any]:
    """``problems``, ``pass@k`` for k = 1, 2, 4, ... <= n, and :func:`error_summary`'s metrics.

    Each wrong answer is labelled with its true error mode by ``agents.evaluation``'s labeller.
    """
    modes = [
        None if ok else error_mode_label(problem, answer)
        for problem, answer, ok in zip(
            samples.response_problems, samples.answers, samples.correct, strict=True
        )
    ]
    return {
        "problems": len(samples.problems),
        **pass_at_k_curve(samples.correct_counts, samples.n),
        **error_summary(samples.problem_ids, samples.answers, samples.correct, modes),
    }


def training_cluster_agreement(batches: Sequence[dict[str, list[Any]]], source: Any) -> dict:
    """Cluster agreement of each MEDS batch's wrong rollouts, then the mean over batches.

    Cluster numbers change meaning when a bucket is refitted, so rollouts are compared within one
    batch (one assignment against one state of the memory), never across batches.
    """
    per_batch: dict[str, list[float]] = {"ari": [], "purity": [], "pairwise": []}
    for batch in batches:
        wrong = [i for i, ok in enumerate(batch["correct"]) if not ok]
        ids = [batch["problem_ids"][i] for i in wrong]
        modes = [
            error_mode_label(source.get(p), batch["answers"][i])
            for p, i in zip(ids, wrong, strict=True)
        ]
        scores = cluster_agreement_scores(ids, modes, [batch["clusters"][i] for i in wrong])
        for key in per_batch:
            per_batch[key].append(scores[key])
    return {
        key: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        for key, values in per_batch.items()
    }


# -- one run -------------------------------------------------------------------------------------


def toy_env(args: Args, family: str, split: str) -> Any:
    """The family's env on one split (the test split has ``test_problems`` problems)."""
    size = args.num_problems if split == "train" else args.test_problems
    return EnvSpec(family, size, args.difficulty, task_seed=0).make(split=split)


def train_args(args: Args, family: str, method: str, seed: int, model_path: str, out: Path) -> Any:
    """The ``agents.ppo.Args`` of one run: the shared budget plus the method's own fields."""
    return ppo.Args(
        **{
            "env_id": family,
            "seed": seed,
            "num_problems": args.num_problems,
            "difficulty": args.difficulty,
            "model_path": model_path,
            "tiny": tiny_config(args, family),
            "iterations": args.iterations,
            "prompts_per_iteration": args.prompts_per_iteration,
            "group_size": args.group_size,
            "learning_rate": args.learning_rate,
            "max_new_tokens": args.max_new_tokens,
            "meds_alpha": args.meds_alpha,
            "meds_beta": args.meds_beta,
            "output_dir": str(out / "train" / method),
            "problem_order": "epochs",
            "prompt_format": args.prompt_format,
            "tensorboard": False,
            "threads": args.threads,
            "device": "cpu",
            "eval_n": 0,  # evaluated here, on both splits
            **METHODS[method],
        }
    )


def run_method(
    args: Args, family: str, method: str, seed: int, model_path: str, out: Path
) -> dict[str, Any]:
    """Train one method from the family's initial model (or not, for ``initial``) and evaluate."""
    from agents.policy import load_policy

    started = time.perf_counter()
    result: dict[str, Any] = {"family": family, "method": method, "seed": seed}
    if method == "initial":
        model, tokenizer = load_policy(model_path, "cpu")
    else:
        noise_seed = 10_000 + seed if method == "dapo_meds_random_fingerprint" else None
        recorder = RunRecorder(noise_seed)
        history = ppo.main(train_args(args, family, method, seed, model_path, out), recorder)
        assert recorder.policy is not None  # main always loads its policy
        model, tokenizer = recorder.policy
        result["dominant_error_share_training"] = [
            row.get("charts/dominant_error_share", float("nan")) for row in history
        ]
        result["reward_training"] = [row.get("charts/reward_mean", float("nan")) for row in history]
        result["accuracy_training"] = [row.get("charts/accuracy", float("nan")) for row in history]
        # Problems are drawn in epochs: every training problem is met draws // num_problems
        # times at least (dynamic sampling's extra rounds draw more).
        draws = int(sum(row["charts/generation_rounds"] for row in history))
        result["problem_draws"] = draws * args.prompts_per_iteration
        result["min_visits_per_problem"] = result["problem_draws"] // args.num_problems
        ratios = [row["meds/top1_eigen_ratio"] for row in history if "meds/top1_eigen_ratio" in row]
        result["top1_eigen_ratio"] = ratios[-1] if ratios else float("nan")
        if recorder.batches:
            source = toy_env(args, family, "train").unwrapped.source
            result["cluster_agreement"] = training_cluster_agreement(recorder.batches, source)
    result["eval"] = {}
    for split in SPLITS:
        env = toy_env(args, family, split)
        result["eval"][split] = evaluate_split(
            model, tokenizer, env, args.eval_n, args.max_new_tokens, seed, args.prompt_format
        )
        env.close()
    result["seconds"] = time.perf_counter() - started
    return result


# -- aggregation, report, plots ------------------------------------------------------------------


def collect(results: Sequence[dict[str, Any]], family: str, method: str, key: Any) -> list[float]:
    """One metric of every seed of (family, method); ``key`` reads it from a run's results."""
    values = []
    for run in results:
        if run["family"] == family and run["method"] == method:
            value = key(run)
            values.append(float("nan") if value is None else float(value))
    return values


def eval_key(split: str, metric: str) -> Any:
    return lambda run: run["eval"][split].get(metric)


def agreement_key(metric: str) -> Any:
    return lambda run: run.get("cluster_agreement", {}).get(metric)


def summarise(args: Args, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95% interval over seeds of every metric, per family, split and method."""
    methods = ["initial", *args.all_methods]
    metrics = [f"pass@{k}" for k in args.ks] + [
        "distinct_wrong_answers",
        "dominant_error_share",
        "wrong_share",
    ]
    summary: dict[str, Any] = {}
    for family in args.families:
        name = family_name(family)
        summary[name] = {"eval": {}, "training": {}}
        for split in SPLITS:
            summary[name]["eval"][split] = {
                m: {
                    metric: interval95(collect(results, family, m, eval_key(split, metric)))
                    for metric in metrics
                }
                for m in methods
            }
        for m in args.all_methods:
            summary[name]["training"][m] = {
                "final_dominant_error_share": interval95(
                    collect(results, family, m, lambda r: r["dominant_error_share_training"][-1])
                ),
                "top1_eigen_ratio": interval95(
                    collect(results, family, m, lambda r: r.get("top1_eigen_ratio"))
                ),
                **{
                    f"cluster_{metric}": interval95(
                        collect(results, family, m, agreement_key(metric))
                    )
                    for metric in ("ari", "purity", "pairwise")
                },
            }
    return summary


def primary_comparison(args: Args, results: Sequence[dict[str, Any]]) -> str:
    """The pre-registered primary comparison, as measured."""
    metric = args.primary_metric
    if args.primary_family not in args.families:
        return f"{family_name(args.primary_family)} is not among this invocation's families"
    method = collect(results, args.primary_family, args.primary_method, eval_key("test", metric))
    base = collect(results, args.primary_family, args.primary_baseline, eval_key("test", metric))
    disjoint = intervals_disjoint(method, base)
    above = interval95(method)[0] > interval95(base)[0]
    verdict = (
        "above, intervals disjoint"
        if above and disjoint
        else "above, intervals overlap"
        if above
        else "not above"
    )
    return (
        f"{LABELS[args.primary_method]} against {LABELS[args.primary_baseline]} on "
        f"{family_name(args.primary_family)}, held-out {metric}: {format_interval(method)} vs "
        f"{format_interval(base)} ({len(method)} and {len(base)} seeds): {verdict}"
    )


def goal_checks(args: Args, results: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's goals, each stated as measured (never tuned to): one line per family."""
    lines = [f"**Primary (pre-registered)**: {primary_comparison(args, results)}"]
    for family in args.families:
        name = family_name(family)
        if "dapo" in args.methods and "dapo_meds" in args.methods:
            for k in [k for k in args.ks if k >= 8]:
                meds = collect(results, family, "dapo_meds", eval_key("test", f"pass@{k}"))
                dapo = collect(results, family, "dapo", eval_key("test", f"pass@{k}"))
                above = interval95(meds)[0] > interval95(dapo)[0]
                disjoint = intervals_disjoint(meds, dapo)
                verdict = "above" if above else "not above"
                overlap = {True: "do not overlap", False: "overlap", None: "n/a"}[disjoint]
                lines.append(
                    f"{name}: DAPO+MEDS {verdict} DAPO on held-out pass@{k} "
                    f"({format_interval(meds)} vs {format_interval(dapo)}; 95% intervals "
                    f"{overlap})"
                )
            dapo = collect(results, family, "dapo", eval_key("test", "dominant_error_share"))
            for method in [m for m in ("dapo_meds", "dapo_meds_all_wrong") if m in args.methods]:
                meds = collect(results, family, method, eval_key("test", "dominant_error_share"))
                lower = interval95(meds)[0] < interval95(dapo)[0]
                lines.append(
                    f"{name}: held-out dominant error-mode share of {LABELS[method]} "
                    f"{'lower' if lower else 'not lower'} than DAPO's "
                    f"({format_interval(meds)} vs {format_interval(dapo)})"
                )
        ran = {m for m in args.all_methods if collect(results, family, m, lambda r: r["seed"])}
        variants = [v for v in MEDS_VARIANTS if v in ran]
        if len(variants) > 1:
            means = {
                v: interval95(collect(results, family, v, agreement_key("pairwise")))[0]
                for v in variants
            }
            order = sorted(variants, key=lambda v: -means[v] if math.isfinite(means[v]) else 1.0)
            lines.append(
                f"{name}: pairwise cluster agreement ordered "
                + " > ".join(f"{LABELS[v]} ({means[v]:.3f})" for v in order)
                + (" (the paper's order)" if order == variants else " (not the paper's order)")
            )
        if "dapo_meds_random_fingerprint" in ran and "dapo" in args.methods:
            k = args.ks[-1]
            rand = collect(
                results, family, "dapo_meds_random_fingerprint", eval_key("test", f"pass@{k}")
            )
            dapo = collect(results, family, "dapo", eval_key("test", f"pass@{k}"))
            better = intervals_disjoint(rand, dapo) and interval95(rand)[0] > interval95(dapo)[0]
            verdict = "better than" if better else "no better than"
            lines.append(
                f"{name}: random-fingerprint control {verdict} DAPO on held-out pass@{k} "
                f"({format_interval(rand)} vs {format_interval(dapo)})"
            )
    return lines


def markdown_tables(args: Args, results: Sequence[dict[str, Any]]) -> list[str]:
    """Per family: pass@k on each split, error diversity, and the MEDS memory and clusters."""
    parts: list[str] = []
    methods = ["initial", *args.all_methods]
    shown_ks = [k for k in args.ks if k in (1, 4, 16, 64) or k == args.ks[-1]]
    for family in args.families:
        name = family_name(family)
        for split in SPLITS:
            where = "held-out problems" if split == "test" else "training problems"
            parts += [f"### {name}: {where} ({split} split)", ""]
            columns = [f"pass@{k}" for k in shown_ks] + [
                "distinct wrong answers / problem",
                "dominant error-mode share",
            ]
            keys = [f"pass@{k}" for k in shown_ks] + [
                "distinct_wrong_answers",
                "dominant_error_share",
            ]
            parts.append("| method | seeds | " + " | ".join(columns) + " |")
            parts.append("|" + "---|" * (len(columns) + 2))
            for m in methods:
                cells = [
                    format_interval(collect(results, family, m, eval_key(split, k))) for k in keys
                ]
                seeds = len(collect(results, family, m, lambda r: 0.0))
                parts.append(f"| {LABELS[m]} | {seeds} | " + " | ".join(cells) + " |")
            parts.append("")
        parts += [f"### {name}: training and the MEDS memory", ""]
        columns = [
            "dominant error-mode share, last iteration",
            "top-1 eigen ratio",
            "cluster ARI",
            "cluster purity",
            "pairwise agreement",
        ]
        parts.append("| method | " + " | ".join(columns) + " |")
        parts.append("|" + "---|" * (len(columns) + 1))
        for m in args.all_methods:
            cells = [
                format_interval(
                    collect(results, family, m, lambda r: r["dominant_error_share_training"][-1])
                ),
                format_interval(collect(results, family, m, lambda r: r.get("top1_eigen_ratio"))),
                *[
                    format_interval(collect(results, family, m, agreement_key(metric)))
                    for metric in ("ari", "purity", "pairwise")
                ],
            ]
            parts.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
        parts.append("")
    return parts


def plot_pass_at_k(args: Args, results: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """One plot per family and split: mean pass@k against k, 95% intervals as error bars."""
    plt = pyplot()
    paths = []
    for family in args.families:
        for split in SPLITS:
            figure, axes = plt.subplots(figsize=(6.5, 4.5))
            for m in ["initial", *args.all_methods]:
                stats = [
                    interval95(collect(results, family, m, eval_key(split, f"pass@{k}")))
                    for k in args.ks
                ]
                means = np.array([s[0] for s in stats])
                low = np.nan_to_num(means - np.array([s[1] for s in stats]))
                high = np.nan_to_num(np.array([s[2] for s in stats]) - means)
                axes.errorbar(
                    args.ks, means, yerr=[low, high], marker="o", capsize=3, label=LABELS[m]
                )
            axes.set_xscale("log", base=2)
            axes.set_xticks(args.ks, [str(k) for k in args.ks])
            axes.set_xlabel("k")
            axes.set_ylabel("pass@k (unbiased), 95% interval over seeds")
            axes.set_ylim(0.0, 1.02)
            axes.set_title(f"{family_name(family)}, {split} split")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=7)
            paths.append(save(figure, out / f"pass_at_k_{family_name(family)}_{split}.png"))
    return paths


def plot_dominant_share(args: Args, results: Sequence[dict[str, Any]], out: Path) -> Path:
    """Dominant error-mode share of the training rollouts per iteration, mean over seeds."""
    plt = pyplot()
    figure, axes_row = plt.subplots(1, len(args.families), figsize=(6 * len(args.families), 4.2))
    for axes, family in zip(np.atleast_1d(axes_row), args.families, strict=True):
        for m in args.all_methods:
            curves = [
                r["dominant_error_share_training"]
                for r in results
                if r["family"] == family and r["method"] == m
            ]
            if not curves:
                continue
            width = min(len(c) for c in curves)
            matrix = np.array(
                [[np.nan if v is None else v for v in c[:width]] for c in curves], dtype=float
            )
            with np.errstate(all="ignore"):
                mean = np.nanmean(matrix, axis=0) if np.isfinite(matrix).any() else matrix[0]
            axes.plot(range(width), mean, label=LABELS[m])
        axes.set_xlabel("training iteration")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_ylabel("dominant error-mode share (mean over seeds)")
        axes.set_ylim(0.0, 1.02)
        axes.set_title(family_name(family))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return save(figure, out / "dominant_error_share.png")


def plot_cluster_agreement(args: Args, results: Sequence[dict[str, Any]], out: Path) -> Path:
    """Pairwise agreement, ARI and purity of each MEDS method's clusters, 95% intervals."""
    plt = pyplot()
    variants = [m for m in args.all_methods if METHODS[m].get("meds")]
    figure, axes_row = plt.subplots(1, len(args.families), figsize=(6 * len(args.families), 4.2))
    metrics = ("pairwise", "ari", "purity")
    for axes, family in zip(np.atleast_1d(axes_row), args.families, strict=True):
        x = np.arange(len(variants))
        for j, metric in enumerate(metrics):
            stats = [
                interval95(collect(results, family, v, agreement_key(metric))) for v in variants
            ]
            means = np.nan_to_num(np.array([s[0] for s in stats]))
            errors = [
                np.nan_to_num(means - np.array([s[1] for s in stats])),
                np.nan_to_num(np.array([s[2] for s in stats]) - means),
            ]
            axes.bar(x + (j - 1) * 0.27, means, 0.27, yerr=errors, capsize=3, label=metric)
        axes.set_xticks(
            x, [LABELS[v].replace("DAPO+MEDS, ", "") for v in variants], rotation=20, fontsize=7
        )
        axes.set_ylabel("agreement with true error modes")
        axes.set_title(family_name(family))
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3, axis="y")
    return save(figure, out / "cluster_agreement.png")


def protocol(args: Args, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What was run, as the issue asks ``results.json`` to state it at the top."""
    from meds_gym.integrations.hf import selected_layers

    visits = [r["min_visits_per_problem"] for r in results if "min_visits_per_problem" in r]
    return {
        "seeds": {
            "methods": args.seed_list,
            "secondary_methods": args.seed_list[: args.secondary_seeds],
        },
        "methods": {"primary": list(args.methods), "secondary": list(args.secondary_methods)},
        "families": list(args.families),
        "secondary_families": [args.secondary_family],
        "num_layers": args.num_layers,
        "fingerprint_layers": selected_layers(args.num_layers),
        "train_problems_per_family": args.num_problems,
        "heldout_problems_per_family": args.test_problems,
        "min_visits_per_problem": min(visits) if visits else None,
        "iterations": args.iterations,
        "heldout_initial_pass_at_1": {
            family_name(f): interval95(collect(results, f, "initial", eval_key("test", "pass@1")))[
                0
            ]
            for f in args.families
        },
        "warmup": {
            "problems": args.warmup_problems,
            "task_seed": tiny_config(args, args.families[0]).task_seed,
            "steps": args.warmup_steps,
            "excludes": "every training and held-out question (task seed 0)",
        },
        "primary": {
            "method": args.primary_method,
            "baseline": args.primary_baseline,
            "family": args.primary_family,
            "split": "test",
            "metric": args.primary_metric,
        },
    }


def write_outputs(
    args: Args, results: list[dict[str, Any]], out: Path, wall_seconds: float, command: str
) -> Path:
    """``results.json``, ``report.md`` and the plots; returns the report's path."""
    summary = summarise(args, results)
    run_seconds = sum(r["seconds"] for r in results)
    settings = dataclasses.asdict(args)
    (out / "results.json").write_text(
        json.dumps(
            finite_or_none(
                {
                    "command": command,
                    "protocol": protocol(args, results),
                    "settings": settings,
                    "wall_seconds_this_invocation": wall_seconds,
                    "run_seconds_total": run_seconds,
                    "summary": summary,
                    "runs": results,
                }
            ),
            indent=1,
            default=str,
        )
    )
    plots = [*plot_pass_at_k(args, results, out), plot_dominant_share(args, results, out)]
    if any(METHODS[m].get("meds") for m in args.all_methods):
        plots.append(plot_cluster_agreement(args, results, out))
    budget = (
        f"{args.iterations} iterations x {args.prompts_per_iteration} prompts x "
        f"{args.group_size} responses per run (DAPO's dynamic sampling draws up to 4 rounds to "
        f"fill its batch), learning rate {args.learning_rate}, {args.num_problems} training and "
        f"{args.test_problems} held-out problems per family (difficulty {args.difficulty}); the "
        f"tiny model ({args.num_layers} layers) warmed up for {args.warmup_steps} steps on "
        f"{args.warmup_problems} fresh problems (no training or held-out question among them), "
        f"{args.eval_n} samples per problem in evaluation, MEDS alpha {args.meds_alpha}, "
        f"beta {args.meds_beta}"
    )
    lines = [
        *report_heading("MEDS at toy scale: held-out reproduction", command),
        f"- Budget: {budget}.",
        f"- Seeds: {args.seed_list}; every method of a seed starts from the same warmed-up tiny "
        "model (one per family) and samples its evaluation with the same seed.",
        "- Cells: mean [95% Student-t interval] over seeds; one value when there is one seed.",
        f"- Wall time: {wall_seconds:.0f} s this invocation; {run_seconds:.0f} s summed over the "
        f"{len(results)} runs (a resumed reproduction's runs may come from several invocations), "
        f"{args.threads} torch thread(s) per process.",
        "- Dominant error-mode share: share of wrong answers in their problem's most frequent "
        "true error mode; cluster ARI, purity and pairwise agreement compare the cluster MEDS "
        "voted each wrong training rollout into with its true error mode, per batch, averaged "
        "over training.",
        "",
        "## The primary comparison and the secondary goals, as measured",
        "",
        *[f"- {line}" for line in goal_checks(args, results)],
        "",
        "## Tables",
        "",
        *markdown_tables(args, results),
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def tiny_config(args: Args, family: str) -> TinyModelConfig:
    """The family's tiny model, warmed up on freshly generated problems only.

    The warm-up draws ``warmup_problems`` problems of task seed 1 and skips every question among
    the RL training problems and the held-out problems (task seed 0, the first
    ``max(num_problems, test_problems)`` of each split), so that the model has to learn the
    procedures rather than memorise the answers of the problems it is trained and evaluated on.
    """
    arch = dataclasses.replace(
        SMALL_TINY,
        num_layers=args.num_layers,
        steps=args.warmup_steps,
        fresh_problems=args.warmup_problems,
    )
    covered = max(args.num_problems, args.test_problems)
    return EnvSpec(family, covered, args.difficulty, task_seed=0).tiny_config(
        arch, args.prompt_format
    )


def initial_model(args: Args, family: str) -> str:
    """The family's warmed-up tiny model, built on first use and cached."""
    return str(tiny_model_path(tiny_config(args, family)))


def reproduce(args: Args) -> Path:
    """Run every missing (family, method, seed), then write the results; returns ``report.md``."""
    import numba
    from tqdm import tqdm

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    out = Path(args.output_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    models: dict[str, str] = {}  # one warmed-up model per family, shared by every method
    plan = args.plan()
    todo = [p for p in plan if not run_file(out, *p).is_file()]
    logger.info("%d runs planned, %d already done", len(plan), len(plan) - len(todo))
    if args.report_only:
        todo = []
    workers = worker_count(args.workers, len(todo))
    if workers == 1:
        for family, method, seed in tqdm(todo, desc="reproduce", unit="run"):
            if family not in models:
                models[family] = initial_model(args, family)
            tqdm.write(run_and_save(args, family, method, seed, models[family], str(out)))
    elif todo:
        families = sorted({family for family, _, _ in todo})
        logger.info("Warming up (or loading) the tiny model of %s", ", ".join(families))
        paths = map_in_processes(
            initial_model,
            [(args, family) for family in families],
            worker_count(args.workers, len(families)),
            lambda i, path: f"{family_name(families[i])}: {path}",
            [str(out / "logs" / f"warm-up__{family_name(f)}.log") for f in families],
            "tiny models",
        )
        models.update(zip(families, paths, strict=True))
        logs = [str(run_log(out, *p)) for p in todo]
        calls = [
            (args, family, method, seed, models[family], str(out), log)
            for (family, method, seed), log in zip(todo, logs, strict=True)
        ]
        logger.info("%d runs, %d at a time (logs: %s)", len(todo), workers, out / "logs")
        map_in_processes(run_and_save, calls, workers, lambda i, line: line, logs, "reproduce")
    done = [run_file(out, *p) for p in plan if run_file(out, *p).is_file()]
    results = [json.loads(path.read_text()) for path in done]
    return write_outputs(args, results, out, time.perf_counter() - started, current_command())


if __name__ == "__main__":
    import tyro

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    report_path = reproduce(tyro.cli(Args))
    print(report_path.read_text().split("## Plots")[0])
    print(f"report: {report_path}")
