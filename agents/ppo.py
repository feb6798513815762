"""GRPO, DAPO, PPO with a critic and GRPO+Entropy on a meds-gym text env, each with or without MEDS.

Each iteration: sample ``group_size`` responses to each of ``prompts_per_iteration`` problems and
score them with the env (``reset(options={"problem_id": ...})`` then ``step(text)``: rewards and
verdicts come from the env, never recomputed here); with dynamic sampling, sample more problems
until the batch holds that many groups with both right and wrong answers (``agents/policy.py``);
run the log-prob pass, which also captures the MEDS answer fingerprint through forward hooks (no
extra forward, ``agents/fingerprint.py``) and, for PPO, the critic's values (``agents/value.py``);
with ``--meds``, score and shape the kept rollouts by stepping the env wrapped in
``MEDSVectorRewardWrapper`` (``{"text", "features"}`` actions, the path the library offers its
users); turn rewards into advantages (group-normalised, or GAE for PPO); take clipped
policy-gradient steps; log (a progress bar, one summary line per iteration, ``metrics.jsonl``,
TensorBoard scalars under ``charts/``, ``losses/`` and ``meds/``, and Weights & Biases with
``--track``, ``agents/tracking.py``). ``--checkpoint-every`` and ``--resume`` resume on any
device (``agents/checkpoint.py``), bit-exact on the CPU, and on CUDA with ``--deterministic``
(CUDA's kernels, backward passes among them, are otherwise free to sum in another order each
run). The run ends by evaluating the final policy (``--eval-n`` samples per problem) on the toy
task's held-out *test* split into ``eval.json``, ``report.md`` and ``pass_at_k.png``
(``agents/report.py``).

``main`` is that outline, one named step each: ``build_run`` (the env and the model path from
``agents/run_setup.py``, shared with the other entry points; policy, critic, reference, optimiser,
MEDS; a resumed run's state), then per iteration ``rollout_step``, ``logprob_step``,
``shape_rewards``, ``compute_advantages``, ``update_policy``, ``batch_metrics`` and ``meds_row``,
``finish_iteration`` (log, checkpoint), and at the end ``final_evaluation``. A program that watches
a run (``experiments/reproduce.py``) passes ``main`` a :class:`RunObserver`.

Algorithms (``--algorithm``; the baselines of the MEDS paper, arXiv 2604.11297, section 5):

* ``grpo``: symmetric clip 0.2, sequence-mean loss, k3 KL to the initial model (coef 0.001).
* ``dapo``: clip-higher 0.2/0.28, token-mean loss, no KL, dynamic sampling, overlong penalty.
* ``ppo``: veRL's PPO recipe: a critic (a value head on the policy's last hidden state), the KL
  to the initial model as a per-token reward penalty (coef 0.001), token-level GAE (gamma 1,
  lambda 1), whitened advantages, clip 0.2, clipped value loss (0.5), token-mean loss.
* ``grpo_entropy``: GRPO plus the entropy advantage ``A + min(0.4 * H.detach(), |A| / 2)``.

``--meds`` adds MEDS reward shaping (alpha 0.1, beta 0.2) to any of them. ``--algorithm meds``
is an alias of ``--algorithm dapo --meds``, the paper's configuration, and the default.
Ablations: ``--fingerprint-layers all`` (instead of the last half), ``--meds-cluster single``
(every wrong rollout of a problem in one cluster: a uniform penalty by count), ``--meds-cluster
answer`` (the answer-string memory: a wrong rollout's cluster is the earlier wrong rollouts with
the same normalised final answer).

Deviations from the paper, for a small single-process run:

* MEDS shapes and remembers only groups holding both right and wrong answers, whatever the base
  algorithm: the reference clusters after DAPO's dynamic-sampling filter. ``--meds-groups
  mixed_and_all_wrong`` (a variant beyond the paper) shapes all-wrong groups too, and dynamic
  sampling then keeps them.
* Rewards are +1 / -1 (``--incorrect-reward``), the reference's scale; the Gymnasium envs score
  1 / 0 by default.
* Dynamic sampling gives up after ``max_generation_rounds`` rounds (logged as
  ``charts/generation_rounds``) and trains on the groups it kept; an iteration that kept none
  makes no update and says so.
* ``update_epochs`` optimiser steps reuse each batch (PPO style; 2 by default).
* The default model is the project's tiny model (``agents/tiny_model.py``), not Qwen; its
  learning rate is accordingly much larger than the paper's 1e-6.
* A tokenizer without a pad token pads with its eos token (padding is masked out everywhere).

Precision (``--precision``): on a CUDA device that supports bfloat16, ``bf16-mixed`` by default:
the weights and the optimiser state stay float32 (at the paper's learning rate of 1e-6 most
updates would round away on bfloat16 weights) and every forward pass runs under bfloat16
autocast; the frozen reference model is kept in bfloat16. Elsewhere ``fp32``.

Run ``python -m agents.ppo --help``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.clustering import warm_up
from meds_gym.envs import TOY_ENV_IDS, VerdictCache, problem_env
from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import MEDSConfig, MEDSShaper
from meds_gym.meds.config import ClusterMethod, GroupRule
from meds_gym.verifiers.symbolic_worker import start_ahead as start_verifier_ahead

from .checkpoint import (
    check_resume_arguments,
    field_defaults,
    load_checkpoint,
    save_checkpoint,
)
from .cli import above, at_least, check_numbers, run, validator
from .evaluate import evaluate_policy
from .evaluation import meds_metrics, rollout_metrics
from .losses import (
    LossAggregation,
    aggregate_loss,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_shaped_advantages,
    group_advantages,
    k3_kl,
    overlong_penalty,
    token_entropy,
)
from .policy import (
    PRECISIONS,
    EpochSchedule,
    LogProbPass,
    MEDSScorer,
    Precision,
    Rollouts,
    SampledBatch,
    autocast_for,
    collect_rollouts,
    default_precision,
    forward_with_values,
    load_policy,
    logprob_pass,
    train_matches_eval,
)
from .report import current_command, training_cluster_ari, write_report
from .run_setup import EnvSpec, resolve_model_path
from .tiny_model import TinyModelConfig
from .tracking import MetricsLogger, WandbConfig, summary_line
from .value import CriticConfig, ppo_advantages, value_head_for

logger = logging.getLogger(__name__)


class Algorithm(str, Enum):
    """Which member of the family to train with."""

    GRPO = "grpo"
    DAPO = "dapo"
    PPO = "ppo"
    GRPO_ENTROPY = "grpo_entropy"
    MEDS = "meds"
    """Alias of DAPO with ``--meds`` (the paper's configuration)."""


ARG_RANGES = {
    "num_problems": at_least(1),
    "difficulty": at_least(1),
    "iterations": at_least(1),
    "prompts_per_iteration": at_least(1),
    "group_size": at_least(1),
    "max_new_tokens": at_least(1),
    "temperature": above(0),
    "learning_rate": above(0),
    "update_epochs": at_least(1),
    "micro_batch_size": at_least(1),
    "max_grad_norm": above(0),
    "clip_low": (0.0, 1.0, False, False),
    "clip_high": at_least(0),
    "clip_ratio_c": above(1),
    "kl_coef": at_least(0),
    "max_generation_rounds": at_least(1),
    "entropy_coef": at_least(0),
    "entropy_kappa": above(0),
    "meds_alpha": at_least(0),
    "meds_beta": at_least(0),
    "incorrect_reward": (-1e6, 1.0, True, False),
    "fingerprint_k": at_least(1),
    "threads": at_least(1),
}
"""Allowed ranges of :class:`Args`' numbers; the others: floats finite, ints >= 0."""

CUBLAS_WORKSPACES = (":4096:8", ":16:8")
"""The ``CUBLAS_WORKSPACE_CONFIG`` settings under which cuBLAS is deterministic."""


@dataclass
class Args:
    """Command-line arguments (``tyro``)."""

    algorithm: Literal["grpo", "dapo", "ppo", "grpo_entropy", "meds"] = "meds"
    """The base algorithm; ``meds`` is an alias of ``dapo`` with ``--meds``."""
    meds: bool = False
    """Shape the rewards with MEDS; composes with every algorithm (``--algorithm meds`` sets it)."""
    seed: int = 0
    """Seed of problem order and sampling (the tiny model's weights use ``tiny.seed``)."""
    env_id: str = "meds_gym/Arithmetic-v0"
    """A registered meds-gym env id."""
    env_url: str | None = None
    """The base URL of an OpenEnv server (``python -m meds_gym.integrations.openenv serve
    ENV_ID``): train against the env it serves. ``env_id`` and the toy-task fields must then
    describe that env (they name the run and pick the tiny model), and the final evaluation
    samples the served problems (a served env has no test split)."""
    num_problems: int = 32
    """Problems of a toy task (toy env ids only)."""
    difficulty: int = 1
    """Difficulty of a toy task (toy env ids only)."""
    task_seed: int = 0
    """Seed of the toy task's problem set (toy env ids only)."""
    data_path: str | None = None
    """Local data file of a benchmark env id."""
    prompt_format: Literal["chat", "compact"] = "chat"
    """``chat``: the env's system instruction and question through the chat template;
    ``compact``: the question alone (the tiny model is then warmed up on that format), about a
    third of the prompt tokens on the toy tasks."""
    answer_anchor: str = "boxed"
    """Where the final answer starts: ``boxed`` (the last ``\\boxed{``), ``answer_tag``
    (``<answer>...</answer>``) or a regex with one group; shared by the env's prompt and answer
    extraction and by the MEDS fingerprint, which reads the token that carries the anchor."""
    model_path: str | None = None
    """A local model directory (``from_pretrained``); None: the warmed-up tiny model (cached)."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """The tiny model's architecture and warm-up (its task fields follow the env's)."""
    cache_dir: str | None = None
    """Cache of tiny models (default ``$MEDS_GYM_CACHE`` or ``~/.cache/meds_gym``)."""
    iterations: int = 50
    """Training iterations (one batch of rollouts and one update each)."""
    prompts_per_iteration: int = 8
    """Problems per iteration."""
    group_size: int = 8
    """Responses per problem (the paper: 16); at least 2 for group-relative advantages."""
    max_new_tokens: int = 64
    """Maximum response length in tokens."""
    temperature: float = 1.0
    """Sampling temperature."""
    learning_rate: float = 1e-4
    """AdamW learning rate (at 5e-4 the default run collapsed: issue 13, point 3)."""
    update_epochs: int = 2
    """Optimiser steps on each batch."""
    micro_batch_size: int = 64
    """Sequences per forward pass (gradients are accumulated; the loss is unchanged)."""
    reuse_logprob_forward: bool = True
    """The first update step reuses the log-prob pass's forward of the first micro-batch (the
    whole batch where one micro-batch holds it), kept with its autograd graph, instead of running
    it again: one forward fewer per step where one micro-batch holds the batch, the same
    numbers. Applies where the model has no dropout (training mode computes what evaluation mode
    does)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    clip_low: float = 0.2
    """Lower clip range epsilon_low."""
    clip_high: float | None = None
    """Upper clip range; None: 0.28 (clip-higher) for dapo/meds, 0.2 otherwise."""
    clip_ratio_c: float | None = 10.0
    """Dual-clip bound on the loss of negative-advantage tokens (veRL's ``clip_ratio_c``, which
    veRL's policy loss applies to every algorithm; the reference's training scripts set 10.0);
    None: off."""
    kl_coef: float | None = None
    """KL to the initial model; None: 0.001 (grpo*: k3 in the loss; ppo: in the reward), dapo 0."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """PPO: the critic (value head), GAE lambda, value clipping and the value loss's weight."""
    max_generation_rounds: int = 4
    """Dynamic sampling: cap on generation rounds per batch (DAPO's ``max_num_gen_batches``)."""
    entropy_coef: float = 0.4
    """GRPO+Entropy coefficient of the detached entropy term."""
    entropy_kappa: float = 2.0
    """GRPO+Entropy: the term is at most |A| / kappa."""
    overlong_buffer: int | None = None
    """DAPO overlong buffer; None: max_new_tokens // 6 for dapo (DAPO's 512 of 3072), else off."""
    dynamic_sampling: bool | None = None
    """Drop all-right / all-wrong groups; None: on for dapo/meds."""
    meds_alpha: float = 0.1
    """MEDS penalty slope."""
    meds_beta: float = 0.2
    """MEDS penalty cap."""
    meds_cluster: Literal["hdbscan", "single", "answer"] = "hdbscan"
    """MEDS clustering: ``hdbscan`` (paper); ``single``: one cluster per problem (control);
    ``answer``: the earlier wrong rollouts with the same final answer (no logits, a baseline)."""
    problem_order: Literal["random", "epochs"] = "random"
    """How each round's problems are drawn: ``random`` (independently, with replacement across
    rounds) or ``epochs`` (every problem once per epoch, reshuffled each epoch, so that every
    training problem is revisited equally often; the error memory acts only on revisits)."""
    meds_groups: Literal["mixed", "mixed_and_all_wrong"] = "mixed"
    """Groups MEDS shapes: ``mixed`` (the reference); ``mixed_and_all_wrong`` (a variant: all-wrong
    groups too, which dynamic sampling then keeps)."""
    incorrect_reward: float = -1.0
    """Reward of a wrong answer (a right one scores 1). -1 is the reference's scale, on which the
    default alpha and beta are the paper's; on 1 / 0 the same strength is alpha / 2, beta / 2."""
    fingerprint_layers: Literal["last_half", "all", "last_k", "diff"] = "last_half"
    """Decoder layers of the fingerprint."""
    fingerprint_k: int = 4
    """Number of layers for ``--fingerprint-layers last_k``."""
    output_dir: str = "runs"
    """Metrics go to ``<output_dir>/<run name>/metrics.jsonl`` (and TensorBoard event files)."""
    tensorboard: bool = True
    """Also write the metrics as TensorBoard scalars."""
    track: bool = False
    """Also log to Weights & Biases (needs ``pip install 'meds-gym[track]'``)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Where ``--track`` logs (offline by default: no network needed)."""
    checkpoint_every: int = 0
    """Save a checkpoint in the run directory every this many iterations (0: never)."""
    resume: bool = False
    """Continue this run (same arguments) from its latest checkpoint; ``iterations`` is the total
    to reach, and metrics past the checkpoint are rewritten."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device."""
    precision: Precision | None = None
    """``bf16-mixed``: float32 weights and optimiser state (the master copy) with every forward
    pass under bfloat16 autocast, and a bfloat16 reference model; ``fp32``: float32 throughout;
    None: ``bf16-mixed`` on a CUDA device that supports bfloat16, else ``fp32``."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default, one per physical core)."""
    deterministic: bool = False
    """Use deterministic algorithms only (``torch.use_deterministic_algorithms``, for the rest of
    the process; cuBLAS gets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the environment sets
    it): a CUDA run then gives the same numbers every time and resumes bit-exact, as a CPU run
    does without it. Slower on CUDA; an operation without a deterministic CUDA kernel raises
    an error that names it."""
    eval_n: int = 16
    """At the end, sample this many responses per problem for ``report.md`` (pass@k; 0: skip)."""
    eval_split: Literal["test", "train"] = "test"
    """Toy tasks: the split the final evaluation uses (``test``: held-out problems)."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(self, ARG_RANGES)
        workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        if self.deterministic and workspace not in (None, *CUBLAS_WORKSPACES):
            raise InvalidArgumentError(
                "deterministic",
                f"used with CUBLAS_WORKSPACE_CONFIG unset or one of {CUBLAS_WORKSPACES}",
                workspace,
                "cuBLAS is deterministic only with those workspaces: unset the variable.",
            )
        # GRPO-style algorithms normalise advantages within a group: a group of one has none.
        if self.group_size < 2 and self.base_algorithm is not Algorithm.PPO:
            raise InvalidArgumentError(
                "group_size",
                f"an int >= 2 for the group-relative algorithm {self.base_algorithm.value}",
                self.group_size,
                "Sample several responses per prompt, e.g. --group-size 8.",
            )
        if self.env_id in TOY_ENV_IDS:  # args.json and report.md record the task really used
            self.tiny = tiny_config_for(self)
        if self.precision is None:  # args.json records the precision really used
            self.precision = default_precision(self.device)
        if self.precision not in PRECISIONS:
            raise InvalidArgumentError("precision", f"one of {PRECISIONS}", self.precision)
        bf16_on_cuda = self.precision == "bf16-mixed" and self.device.startswith("cuda")
        if bf16_on_cuda and not torch.cuda.is_bf16_supported():
            raise InvalidArgumentError(
                "precision", "fp32 on a CUDA device without bfloat16 support", self.precision
            )

    @property
    def base_algorithm(self) -> Algorithm:
        """The algorithm without MEDS: ``meds`` resolves to DAPO."""
        algo = Algorithm(self.algorithm)
        return Algorithm.DAPO if algo is Algorithm.MEDS else algo

    @property
    def use_meds(self) -> bool:
        """Whether MEDS shapes the rewards (``--meds``, or the ``meds`` alias)."""
        return self.meds or Algorithm(self.algorithm) is Algorithm.MEDS

    @property
    def label(self) -> str:
        """``dapo+meds``, ``ppo``, ...: the base algorithm and whether MEDS is on."""
        return self.base_algorithm.value + ("+meds" if self.use_meds else "")

    @property
    def is_dapo_like(self) -> bool:
        """DAPO and DAPO+MEDS share clip-higher, token-mean, dynamic sampling, overlong penalty."""
        return self.base_algorithm is Algorithm.DAPO

    @property
    def run_name(self) -> str:
        """Directory name of this run's outputs."""
        return f"{self.env_id.split('/')[-1]}__{self.label}__{self.seed}"


def use_deterministic_algorithms() -> None:
    """``--deterministic``: torch runs deterministic algorithms only, for the rest of the process.

    cuBLAS reads its workspace setting when it starts, so ``CUBLAS_WORKSPACE_CONFIG`` is set here
    (to ``:4096:8``, unless the environment sets it), before the model's first matmul.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACES[0])
    torch.use_deterministic_algorithms(True)


def tiny_config_for(args: Args) -> TinyModelConfig:
    """The tiny model warmed up on the env's own toy task (same family, size, difficulty, seed)."""
    return EnvSpec.of(args).tiny_config(args.tiny, args.prompt_format)


class RunObserver:
    """Watches a training run from outside; every method does nothing here.

    ``main`` calls these at fixed points, with explicit arguments: subclass and override what you
    need (``experiments/reproduce.py`` keeps the policy and records every MEDS batch, and its
    random-fingerprint control replaces the fingerprints by noise).
    """

    def policy_loaded(self, model: Any, tokenizer: Any) -> None:
        """The policy as loaded (trained in place: the final policy once ``main`` returns)."""

    def fingerprints(self, fingerprints: np.ndarray) -> np.ndarray:
        """MEDS: a batch's (B, L) fingerprints before MEDS sees them; returns those to use."""
        return fingerprints

    def meds_shaped(
        self,
        problem_ids: list[str],
        answers: list[str | None],
        correct: list[bool],
        meds_info: dict[str, np.ndarray],
    ) -> None:
        """MEDS: a batch after shaping: (B,) problems, parsed answers, verdicts, wrapper info."""


@dataclass(frozen=True)
class Recipe:
    """The algorithm's settings with every ``None`` of :class:`Args` resolved."""

    clip_high: float
    """Upper clip range."""
    kl_coef: float
    """KL to the initial model (0: no reference model)."""
    aggregation: LossAggregation
    """Token-mean (DAPO, PPO) or sequence-mean (GRPO) loss."""
    dynamic_sampling: bool
    """Drop all-right / all-wrong groups."""
    generation_rounds: int
    """Generation rounds per batch at most (1 without dynamic sampling)."""
    overlong_buffer: int
    """Overlong penalty buffer in tokens (0: off)."""

    @classmethod
    def of(cls, args: Args) -> Recipe:
        """The recipe of ``args.base_algorithm`` with the explicit arguments of ``args``."""
        dapo_like = args.is_dapo_like
        token_mean = dapo_like or args.base_algorithm is Algorithm.PPO  # veRL's PPO: token-mean
        dynamic = args.dynamic_sampling if args.dynamic_sampling is not None else dapo_like
        buffer = args.overlong_buffer
        if buffer is None:
            buffer = max(1, args.max_new_tokens // 6) if dapo_like else 0
        clip_high = args.clip_high if args.clip_high is not None else (0.28 if dapo_like else 0.2)
        return cls(
            clip_high=clip_high,
            kl_coef=args.kl_coef if args.kl_coef is not None else (0.0 if dapo_like else 1e-3),
            aggregation=LossAggregation.TOKEN_MEAN if token_mean else LossAggregation.SEQUENCE_MEAN,
            dynamic_sampling=dynamic,
            generation_rounds=args.max_generation_rounds if dynamic else 1,
            overlong_buffer=buffer,
        )


@dataclass
class Run:
    """What one training run builds before its first iteration and updates in place."""

    spec: EnvSpec
    env: Any
    """The scoring env (toy tasks: the train split)."""
    verdict_cache: VerdictCache
    """Shared by every env of the run: each distinct answer of a problem is verified once."""
    model: Any
    tokenizer: Any
    value_head: Any
    """PPO's critic head, else None."""
    trainable: Any
    """What a checkpoint holds: the policy, and the critic's head beside it for PPO."""
    reference: Any
    """The frozen initial model when the KL coefficient is positive, else None."""
    optimizer: torch.optim.Optimizer
    shaper: MEDSShaper
    schedule: EpochSchedule | None
    """``--problem-order epochs``: the problem schedule; None draws at random."""
    scorer: MEDSScorer | None
    """MEDS: scores and shapes by stepping the env in the MEDS wrapper; None without MEDS."""
    rng: np.random.Generator
    """Problem order (and dynamic sampling)."""
    start: int
    """First iteration to run (past the checkpoint when resuming)."""
    out_dir: Path
    settings: dict[str, Any]
    """``args.json``: the arguments and the model path really used."""
    tracker: MetricsLogger

    def problems(self, problem_ids: list[str]) -> list[Any]:
        """Each rollout's problem (toy tasks know their error modes; benchmarks know none)."""
        source = problem_env(self.env).source
        return [source.get(pid) for pid in problem_ids]


@dataclass
class Shaping:
    """A batch's training rewards, and what MEDS said about it."""

    rewards: torch.Tensor
    """(B,) float32 rewards to train on: MEDS-shaped, then the overlong penalty."""
    correct: list[bool]
    """(B,) verdicts (MEDS's own when it scored the batch)."""
    clusters: np.ndarray
    """(B,) MEDS cluster of each rollout (-2: not assigned, or no MEDS)."""
    penalties: np.ndarray
    """(B,) MEDS penalties (0 without MEDS)."""


def main(args: Args, observer: RunObserver | None = None) -> list[dict[str, float]]:
    """Train; returns the metrics of every iteration (also written to ``metrics.jsonl``).

    Args:
        args: The run's arguments.
        observer: Watches the run (see :class:`RunObserver`); None: nobody does.
    """
    from tqdm import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        use_deterministic_algorithms()
    if args.use_meds:  # compile MEDS's kernels while the model loads and the first rollouts run
        warm_up(background=True)
    start_verifier_ahead()  # its worker imports sympy while the model loads
    observer = observer or RunObserver()
    recipe = Recipe.of(args)
    run = build_run(args, recipe, observer)
    history: list[dict[str, float]] = []
    for iteration in tqdm(range(run.start, args.iterations), desc=args.label):
        started = time.perf_counter()
        rollouts, row = rollout_step(args, recipe, run, iteration)
        if rollouts.batch is None:  # no group with both right and wrong answers: nothing to learn
            row["charts/seconds"] = time.perf_counter() - started
            finish_iteration(row, args, run, history)
            continue
        batch = rollouts.batch
        old = logprob_step(args, run, batch, row)
        shaping = shape_rewards(args, recipe, run, rollouts, batch, old, observer)
        advantages, returns, kl_in_reward = compute_advantages(args, recipe, batch, old, shaping)
        stats = update_policy(args, recipe, run, batch, old, advantages, returns, kl_in_reward)
        row.update(batch_metrics(args, rollouts, batch, old, shaping, stats, started))
        if args.use_meds:  # penalties, and how well clusters match true error modes
            row.update(meds_row(run, rollouts, shaping))
        finish_iteration(row, args, run, history)
    run.tracker.close()
    if args.eval_n:  # every run ends with report.md: pass@k and error modes of the final policy
        final_evaluation(args, run, history)
    run.env.close()
    return history


def build_run(args: Args, recipe: Recipe, observer: RunObserver) -> Run:
    """The env, policy, critic, reference, optimiser, MEDS and logs; restored when resuming."""
    spec = EnvSpec.of(args)
    verdict_cache = VerdictCache()
    env = spec.make(verdict_cache=verdict_cache)  # toy tasks: the train split
    model_path = resolve_model_path(
        spec, args.model_path, args.tiny, args.prompt_format, args.cache_dir
    )
    model, tokenizer = load_policy(model_path, args.device)
    observer.policy_loaded(model, tokenizer)
    # Seed after loading: building the tiny model on a cache miss draws from the global RNGs.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    value_head = value_head_for(model) if args.base_algorithm is Algorithm.PPO else None
    trainable: Any = (
        model if value_head is None else torch.nn.ModuleDict({"policy": model, "value": value_head})
    )
    reference = None
    if recipe.kl_coef > 0:  # frozen: bfloat16 weights suffice under bfloat16 autocast
        frozen_dtype = torch.bfloat16 if args.precision == "bf16-mixed" else torch.float32
        reference = copy.deepcopy(model).to(frozen_dtype).eval().requires_grad_(False)
    param_groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if value_head is not None:
        value_lr = args.critic.learning_rate or 10 * args.learning_rate
        param_groups.append({"params": list(value_head.parameters()), "lr": value_lr})
    optimizer = torch.optim.AdamW(param_groups, lr=args.learning_rate, weight_decay=0.0)
    meds_config = MEDSConfig(
        alpha=args.meds_alpha,
        beta=args.meds_beta,
        cluster_method=ClusterMethod(args.meds_cluster),
        shape_groups=GroupRule(args.meds_groups),
    )
    shaper = MEDSShaper(meds_config)
    out_dir = Path(args.output_dir) / args.run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    start = 0
    metrics_path = out_dir / "metrics.jsonl"
    kept_lines: list[str] = []
    settings = {**dataclasses.asdict(args), "model_path": model_path}
    if args.resume:  # weights, optimiser, MEDS memory and RNGs exactly as they were saved
        check_resume_arguments(out_dir, settings, defaults=field_defaults(Args))
        last, shaper = load_checkpoint(out_dir, trainable, optimizer, rng)
        start = last + 1
        kept_lines = metrics_kept_on_resume(metrics_path, last)
    schedule = None
    if args.problem_order == "epochs":  # resumed: continued from the draws already made
        rounds = sum(json.loads(line).get("charts/generation_rounds", 0) for line in kept_lines)
        schedule = EpochSchedule(
            len(problem_env(env).source), args.seed, int(rounds) * args.prompts_per_iteration
        )
    scorer = (
        MEDSScorer(lambda: spec.make(verdict_cache=verdict_cache), shaper, args.group_size)
        if args.use_meds
        else None
    )
    (out_dir / "args.json").write_text(json.dumps(settings, default=str, indent=1))
    wandb = args.wandb if args.track else None
    tracker = MetricsLogger(out_dir, kept_lines, args.tensorboard, wandb, args.run_name, settings)
    return Run(
        spec=spec,
        env=env,
        verdict_cache=verdict_cache,
        model=model,
        tokenizer=tokenizer,
        value_head=value_head,
        trainable=trainable,
        reference=reference,
        optimizer=optimizer,
        shaper=shaper,
        schedule=schedule,
        scorer=scorer,
        rng=rng,
        start=start,
        out_dir=out_dir,
        settings=settings,
        tracker=tracker,
    )


def metrics_kept_on_resume(path: Path, last: int) -> list[str]:
    """The lines of ``metrics.jsonl`` up to iteration ``last``, for a resumed run to keep.

    A line that is not a JSON object with an integer ``iteration`` (the partial last line of a
    run killed mid-write) is dropped with a warning, as are the iterations after ``last``.
    """
    if not path.is_file():
        return []
    kept: list[str] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            row = json.loads(line)
            iteration = row["iteration"]
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is not a complete metrics row (cut mid-write?): dropped",
                           path, number)  # fmt: skip
            continue
        if isinstance(iteration, (int, float)) and iteration <= last:
            kept.append(line)
    return kept


def rollout_step(
    args: Args, recipe: Recipe, run: Run, iteration: int
) -> tuple[Rollouts, dict[str, float]]:
    """Groups of responses scored by the env (dynamic sampling refills the batch), and their row."""
    run.model.eval()
    keep_all_wrong = args.use_meds and args.meds_groups == GroupRule.MIXED_AND_ALL_WRONG.value
    with autocast_for(args.precision, args.device):
        rollouts = collect_rollouts(
            run.model,
            run.tokenizer,
            run.env,
            run.rng,
            args.prompts_per_iteration,
            args.group_size,
            args.max_new_tokens,
            args.temperature,
            recipe.dynamic_sampling,
            recipe.generation_rounds,
            args.prompt_format,
            keep_all_wrong=keep_all_wrong,
            draw=run.schedule,
        )
    row: dict[str, float] = {
        "iteration": iteration,
        **rollout_metrics(
            rollouts.sampled_ids,
            rollouts.sampled_parsed,
            rollouts.sampled_correct,
            rollouts.sampled_rewards,
            run.problems(rollouts.sampled_ids),
        ),
        "charts/generation_rounds": rollouts.rounds,
        "charts/kept_groups": len(rollouts.kept) / args.group_size,
    }
    return rollouts, row


def logprob_step(args: Args, run: Run, batch: SampledBatch, row: dict[str, float]) -> LogProbPass:
    """The log-prob pass, which also takes the MEDS fingerprint and the critic's values."""
    layers = (args.fingerprint_layers, args.fingerprint_k)
    anchor = problem_env(run.env).answer_anchor
    keep = args.reuse_logprob_forward and train_matches_eval(run.model)
    if keep:  # the forward the first update step reuses runs in the update's mode
        run.model.train()
    with autocast_for(args.precision, args.device):
        old = logprob_pass(
            run.model,
            run.tokenizer,
            batch,
            args.micro_batch_size,
            args.temperature,
            *layers,
            run.reference,
            run.value_head,
            anchor,
            keep_graph=keep,
        )
    run.model.eval()
    if batch.sampler_logprobs is not None:  # the sampler and the trainer see the same policy
        gap = (batch.sampler_logprobs - old.logprobs).abs() * batch.response_mask
        row["sampler_logprob_gap"] = float(gap.max())
    return old


def shape_rewards(
    args: Args,
    recipe: Recipe,
    run: Run,
    rollouts: Rollouts,
    batch: SampledBatch,
    old: LogProbPass,
    observer: RunObserver,
) -> Shaping:
    """MEDS shaping (by stepping the env in the MEDS wrapper), then DAPO's overlong penalty."""
    size = len(batch.texts)
    shaped, correct = rollouts.rewards, rollouts.correct
    clusters, penalties = np.full(size, -2), np.zeros(size)
    if run.scorer is not None:
        ids = rollouts.problem_ids
        fingerprints = observer.fingerprints(old.fingerprints)
        shaped, correct, meds_info = run.scorer.step(ids, batch.texts, fingerprints)
        clusters, penalties = meds_info["cluster"], meds_info["penalty"]
        observer.meds_shaped(ids, rollouts.parsed, correct, meds_info)
    rewards = torch.as_tensor(shaped, dtype=torch.float32)
    if recipe.overlong_buffer > 0:
        lengths = batch.response_mask.sum(dim=1).cpu()  # (B,)
        rewards = rewards + overlong_penalty(lengths, args.max_new_tokens, recipe.overlong_buffer)
    return Shaping(rewards, correct, clusters, penalties)


def compute_advantages(
    args: Args, recipe: Recipe, batch: SampledBatch, old: LogProbPass, shaping: Shaping
) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    """Advantages: GAE on KL-penalised token rewards for PPO, else group-normalised.

    Returns:
        ``(advantages, returns, kl_in_reward)``: (B, T) or (B,) advantages; PPO's (B, T) returns
        and the mean KL it put in the reward (None for the others).
    """
    if old.values is None:  # GRPO family: normalised within each group of responses
        grouped = shaping.rewards.view(-1, args.group_size)  # (G, n)
        return group_advantages(grouped).flatten().to(old.logprobs.device), None, None  # (B,)
    return ppo_advantages(  # PPO: KL-penalised token rewards, GAE, whitened
        shaping.rewards,
        old.logprobs,
        old.ref_logprobs,
        old.values,
        batch.response_mask,
        recipe.kl_coef,
        args.critic.gae_lambda,
    )


def update_policy(
    args: Args,
    recipe: Recipe,
    run: Run,
    batch: SampledBatch,
    old: LogProbPass,
    advantages: torch.Tensor,
    returns: torch.Tensor | None,
    kl_in_reward: float | None,
) -> dict[str, float]:
    """``update_epochs`` clipped policy-gradient steps on the batch (and the critic for PPO).

    Returns:
        Sums over epochs of the weighted losses, clip fractions, entropy and KL (PPO: the KL it
        put in the reward); the last epoch's grad norm.
    """
    model, value_head, micro = run.model, run.value_head, args.micro_batch_size
    loss_mask, prompt_width = batch.response_mask, batch.prompt_width  # (B, T)
    sequences = torch.cat([batch.prompt_ids, batch.responses], dim=1)  # (B, P + T)
    attention = torch.cat([batch.prompt_mask, loss_mask.long()], dim=1)
    old_logprobs, ref_logprobs, old_values = old.logprobs, old.ref_logprobs, old.values
    model.train()
    stats: dict[str, float] = defaultdict(float)
    total_tokens = float(loss_mask.sum())
    total_sequences = float((loss_mask.sum(dim=1) > 0).sum())
    for epoch in range(args.update_epochs):
        run.optimizer.zero_grad(set_to_none=True)
        for s in range(0, len(batch.texts), micro):
            sl = slice(s, s + micro)
            mask = loss_mask[sl]
            if mask.sum() == 0:
                continue
            if epoch == 0 and s == 0 and old.kept is not None:  # no step yet: the same forward
                logprobs, logits, values = old.kept.logprobs, old.kept.logits, old.kept.values
            else:
                with autocast_for(args.precision, args.device):
                    logprobs, logits, _, values = forward_with_values(
                        model,
                        value_head,
                        sequences[sl],
                        attention[sl],
                        prompt_width,
                        None,
                        args.temperature,
                        batch.group_size,
                    )
            adv: torch.Tensor = advantages[sl]
            # (b, T) entropy of the sampling distribution, for logging and GRPO+Entropy
            entropy = token_entropy(logits.detach(), args.temperature)
            if args.base_algorithm is Algorithm.GRPO_ENTROPY:
                adv = entropy_shaped_advantages(adv, entropy, args.entropy_coef, args.entropy_kappa)
            policy_loss, clip_fraction = clipped_policy_loss(
                logprobs,
                old_logprobs[sl],
                adv,
                mask,
                args.clip_low,
                recipe.clip_high,
                recipe.aggregation,
                args.clip_ratio_c,
            )
            loss = policy_loss
            kl = torch.zeros(())
            if values is not None and old_values is not None and returns is not None:  # PPO
                targets = (old_values[sl], returns[sl])
                value_loss, value_clip_fraction = clipped_value_loss(
                    values, *targets, mask, args.critic.value_clip, recipe.aggregation
                )
                loss = loss + args.critic.vf_coef * value_loss
            elif ref_logprobs is not None:
                kl = aggregate_loss(k3_kl(logprobs, ref_logprobs[sl]), mask, recipe.aggregation)
                loss = loss + recipe.kl_coef * kl
            # Weight micro-batches so the sum equals the loss of the whole batch.
            weight = (
                float(mask.sum()) / total_tokens
                if recipe.aggregation is LossAggregation.TOKEN_MEAN
                else float((mask.sum(dim=1) > 0).sum()) / total_sequences
            )
            (loss * weight).backward()
            stats["policy_loss"] += policy_loss.item() * weight
            stats["clip_fraction"] += float(clip_fraction) * weight
            stats["entropy"] += float(aggregate_loss(entropy, mask)) * weight
            if values is not None and kl_in_reward is not None:  # PPO: the KL is in the reward
                stats["value_loss"] += value_loss.item() * weight
                stats["value_clip_fraction"] += float(value_clip_fraction) * weight
                stats["kl"] += kl_in_reward * weight
            else:
                stats["kl"] += kl.item() * weight
        stats["grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_(run.trainable.parameters(), args.max_grad_norm)
        )
        run.optimizer.step()
    model.eval()
    return stats


def batch_metrics(
    args: Args,
    rollouts: Rollouts,
    batch: SampledBatch,
    old: LogProbPass,
    shaping: Shaping,
    stats: dict[str, float],
    started: float,
) -> dict[str, float]:
    """The row's ``charts/``, ``perf/`` and ``losses/`` metrics of a batch the policy trained on."""
    lengths = batch.response_mask.sum(dim=1)  # (B,)
    return {
        "charts/kept_reward_mean": float(np.mean(rollouts.rewards)),
        "charts/training_reward_mean": float(shaping.rewards.mean()),
        "charts/response_length": float(lengths.mean()),
        "charts/boxed_share": float(np.mean(old.boxed)),
        # Real tokens the step computed on, each group's prompt once (FLOP accounting).
        "perf/prompt_tokens": float(batch.prompt_mask[:: batch.group_size].sum()),
        "perf/response_tokens": float(batch.response_mask.sum()),
        "charts/seconds": time.perf_counter() - started,
        **{
            f"losses/{k}": v / (1 if k == "grad_norm" else args.update_epochs)
            for k, v in stats.items()
        },
    }


def meds_row(run: Run, rollouts: Rollouts, shaping: Shaping) -> dict[str, float]:
    """MEDS: penalties, cluster agreement with true error modes (docs/design.md sec. 6), memory."""
    ids = rollouts.problem_ids
    row = meds_metrics(
        ids,
        rollouts.parsed,
        shaping.correct,
        run.problems(ids),
        shaping.clusters,
        shaping.penalties,
    )
    memory = run.shaper.stats()
    ratios = [v for v in memory.top1_eigen_ratio.values() if np.isfinite(v)]
    row["meds/memory_rows"], row["meds/clusters"] = memory.rows, memory.clusters
    row["meds/top1_eigen_ratio"] = float(np.mean(ratios)) if ratios else float("nan")
    return row


def finish_iteration(
    row: dict[str, float], args: Args, run: Run, history: list[dict[str, float]]
) -> None:
    """Log the iteration (finite metrics only), print its summary line, checkpoint if due."""
    from tqdm import tqdm

    metrics = run.tracker.log(row)
    history.append(metrics)
    tqdm.write(summary_line(metrics, args.prompts_per_iteration))
    iteration = int(metrics["iteration"])
    if args.checkpoint_every and (iteration + 1) % args.checkpoint_every == 0:
        save_checkpoint(run.out_dir, iteration, run.trainable, run.optimizer, run.shaper, run.rng)


def final_evaluation(args: Args, run: Run, history: list[dict[str, float]]) -> None:
    """Evaluate the final policy (``eval_n`` samples per problem) into eval.json and report.md."""
    toy = run.spec.has_splits
    eval_env = run.spec.make(args.eval_split, run.verdict_cache) if toy else run.env
    with autocast_for(args.precision, args.device):
        final = evaluate_policy(
            run.model,
            run.tokenizer,
            eval_env,
            args.eval_n,
            args.max_new_tokens,
            args.temperature,
            args.seed,
            args.prompt_format,
        )
    held_out = "held-out problems" if args.eval_split == "test" else "the training problems"
    if toy:
        final["evaluated_on"] = f"{args.eval_split} split ({held_out})"
    else:
        final["evaluated_on"] = "benchmark file" if args.env_url is None else "served problems"
    final["cluster_ari"] = training_cluster_ari(history)
    (run.out_dir / "eval.json").write_text(json.dumps(final, indent=1))
    title = f"{args.run_name}: evaluated on the {final['evaluated_on']}"
    write_report(run.out_dir, title, current_command(), run.settings, {args.label: [final]})
    if eval_env is not run.env:
        eval_env.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run(Args, main)
