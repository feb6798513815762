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
``--track``, ``agents/tracking.py``). ``--checkpoint-every`` and ``--resume`` resume
bit-exact (``agents/checkpoint.py``). The run ends by evaluating the final policy (``--eval-n``
samples per problem) on the toy task's held-out *test* split into ``eval.json``, ``report.md`` and
``pass_at_k.png`` (``agents/report.py``).

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
(every wrong rollout of a problem in one cluster: a uniform penalty by count).

Deviations from the paper, for a small single-process run:

* MEDS shapes and remembers only groups holding both right and wrong answers, whatever the base
  algorithm: the reference clusters after DAPO's dynamic-sampling filter.
* Dynamic sampling gives up after ``max_generation_rounds`` rounds (logged as
  ``charts/generation_rounds``) and trains on the groups it kept; an iteration that kept none
  makes no update and says so.
* ``update_epochs`` optimiser steps reuse each batch (PPO style; 2 by default).
* The default model is the project's tiny model (``agents/tiny_model.py``), not Qwen; its
  learning rate is accordingly much larger than the paper's 1e-6.
* A tokenizer without a pad token pads with its eos token (padding is masked out everywhere).

Run ``python -m agents.ppo --help``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.clustering import warm_up
from meds_gym.envs import TOY_ENV_IDS, VerdictCache
from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import MEDSConfig, MEDSShaper
from meds_gym.meds.config import ClusterMethod

from .checkpoint import check_resume_arguments, load_checkpoint, save_checkpoint
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
    MEDSScorer,
    collect_rollouts,
    forward_logprobs,
    load_policy,
    logprob_pass,
)
from .report import current_command, training_cluster_ari, write_report
from .tiny_model import TinyModelConfig, tiny_model_path
from .tracking import MetricsLogger, WandbConfig, summary_line
from .value import CriticConfig, capture_values, ppo_advantages, value_head_for

logger = logging.getLogger(__name__)


class Algorithm(str, Enum):
    """Which member of the family to train with."""

    GRPO = "grpo"
    DAPO = "dapo"
    PPO = "ppo"
    GRPO_ENTROPY = "grpo_entropy"
    MEDS = "meds"
    """Alias of DAPO with ``--meds`` (the paper's configuration)."""


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
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    clip_low: float = 0.2
    """Lower clip range epsilon_low."""
    clip_high: float | None = None
    """Upper clip range; None: 0.28 (clip-higher) for dapo/meds, 0.2 otherwise."""
    clip_ratio_c: float | None = 10.0
    """Dual-clip bound on the loss of negative-advantage tokens (veRL's ``clip_ratio_c``; the
    reference's training scripts use 10.0 with every algorithm); None: off."""
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
    meds_cluster: Literal["hdbscan", "single"] = "hdbscan"
    """MEDS clustering: ``hdbscan`` (paper); ``single``: one cluster per problem (control)."""
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
    threads: int | None = None
    """CPU threads for torch (None: torch's default, one per physical core)."""
    eval_n: int = 16
    """At the end, sample this many responses per problem for ``report.md`` (pass@k; 0: skip)."""
    eval_split: Literal["test", "train"] = "test"
    """Toy tasks: the split the final evaluation uses (``test``: held-out problems)."""

    def __post_init__(self) -> None:
        # GRPO-style algorithms normalise advantages within a group: a group of one has none.
        if self.group_size < 2 and self.base_algorithm is not Algorithm.PPO:
            raise InvalidArgumentError(
                "group_size",
                f"an int >= 2 for the group-relative algorithm {self.base_algorithm.value}",
                self.group_size,
                "Sample several responses per prompt, e.g. --group-size 8.",
            )
        for name in (
            "iterations",
            "prompts_per_iteration",
            "max_new_tokens",
            "update_epochs",
            "micro_batch_size",
            "max_generation_rounds",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(name, "an int >= 1", getattr(self, name))
        if self.eval_n < 0:
            raise InvalidArgumentError("eval_n", "an int >= 0", self.eval_n)
        if self.checkpoint_every < 0:
            raise InvalidArgumentError("checkpoint_every", "an int >= 0", self.checkpoint_every)
        if not self.temperature > 0:
            raise InvalidArgumentError("temperature", "a float > 0", self.temperature)
        if self.clip_ratio_c is not None and not self.clip_ratio_c > 1.0:
            raise InvalidArgumentError("clip_ratio_c", "None or a float > 1", self.clip_ratio_c)
        if self.env_id in TOY_ENV_IDS:  # args.json and report.md record the task really used
            self.tiny = tiny_config_for(self)

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


def tiny_config_for(args: Args) -> TinyModelConfig:
    """The tiny model warmed up on the env's own toy task (same family, size, difficulty, seed)."""
    if args.env_id not in TOY_ENV_IDS:
        raise InvalidArgumentError(
            "model_path",
            f"a model directory (the tiny model is built for the toy envs {sorted(TOY_ENV_IDS)})",
            args.model_path,
        )
    return dataclasses.replace(
        args.tiny,
        task=TOY_ENV_IDS[args.env_id],
        num_problems=args.num_problems,
        difficulty=args.difficulty,
        task_seed=args.task_seed,
        prompt_format=args.prompt_format,
    )


def main(args: Args) -> list[dict[str, float]]:
    """Train; returns the metrics of every iteration (also written to ``metrics.jsonl``)."""
    from tqdm import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.use_meds:  # compile MEDS's kernels while the model loads and the first rollouts run
        warm_up(background=True)
    algo = args.base_algorithm
    clip_high = (
        args.clip_high if args.clip_high is not None else (0.28 if args.is_dapo_like else 0.2)
    )
    kl_coef = args.kl_coef if args.kl_coef is not None else (0.0 if args.is_dapo_like else 1e-3)
    token_mean = args.is_dapo_like or algo is Algorithm.PPO  # veRL's PPO default: token-mean
    aggregation = LossAggregation.TOKEN_MEAN if token_mean else LossAggregation.SEQUENCE_MEAN
    dynamic = args.dynamic_sampling if args.dynamic_sampling is not None else args.is_dapo_like
    rounds = args.max_generation_rounds if dynamic else 1
    buffer = args.overlong_buffer
    if buffer is None:
        buffer = max(1, args.max_new_tokens // 6) if args.is_dapo_like else 0
    groups, n, micro, temperature = (
        args.prompts_per_iteration,
        args.group_size,
        args.micro_batch_size,
        args.temperature,
    )

    # -- environment, policy, critic, reference, MEDS ------------------------------------------
    toy = args.env_id in TOY_ENV_IDS
    env_kwargs: dict[str, Any] = (
        {"num_problems": args.num_problems, "difficulty": args.difficulty, "seed": args.task_seed}
        if toy
        else {"data_path": args.data_path}
    )
    env_kwargs["answer_anchor"] = args.answer_anchor
    # One verdict cache for the scoring env and the MEDS wrapper's sub-envs: each distinct answer
    # of a problem is verified once per run.
    env_kwargs["verdict_cache"] = VerdictCache()
    env = gym.make(args.env_id, **env_kwargs)  # toy tasks: the train split
    source: Any = env.unwrapped.source  # type: ignore[attr-defined]
    anchor = env.unwrapped.answer_anchor  # type: ignore[attr-defined]

    def modes_of(problem_ids: list[str]) -> list[Any]:
        """Each rollout's known error modes (toy tasks know them; benchmarks do not)."""
        return [source.get(pid).error_modes if toy else {} for pid in problem_ids]

    model_path = args.model_path
    if model_path is None:
        model_path = str(tiny_model_path(tiny_config_for(args), args.cache_dir))
    model, tokenizer = load_policy(model_path, args.device)
    # Seed after loading: building the tiny model on a cache miss draws from the global RNGs.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    value_head = value_head_for(model) if algo is Algorithm.PPO else None
    # What a checkpoint holds: the policy, and the critic's head beside it for PPO.
    trainable: Any = (
        model if value_head is None else torch.nn.ModuleDict({"policy": model, "value": value_head})
    )
    reference = copy.deepcopy(model).eval().requires_grad_(False) if kl_coef > 0 else None
    param_groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if value_head is not None:
        value_lr = args.critic.learning_rate or 10 * args.learning_rate
        param_groups.append({"params": list(value_head.parameters()), "lr": value_lr})
    optimizer = torch.optim.AdamW(param_groups, lr=args.learning_rate, weight_decay=0.0)
    meds_config = MEDSConfig(
        alpha=args.meds_alpha, beta=args.meds_beta, cluster_method=ClusterMethod(args.meds_cluster)
    )
    shaper = MEDSShaper(meds_config)
    out_dir = Path(args.output_dir) / args.run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    start = 0
    metrics_path = out_dir / "metrics.jsonl"
    kept_lines: list[str] = []
    if args.resume:  # weights, optimiser, MEDS memory and RNGs exactly as they were saved
        check_resume_arguments(out_dir, {**dataclasses.asdict(args), "model_path": model_path})
        last, shaper = load_checkpoint(out_dir, trainable, optimizer, rng)
        start = last + 1
        lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
        kept_lines = [line for line in lines if json.loads(line)["iteration"] <= last]
    scorer = (
        MEDSScorer(lambda: gym.make(args.env_id, **env_kwargs), shaper, n)
        if args.use_meds
        else None
    )
    settings = {**dataclasses.asdict(args), "model_path": model_path}
    (out_dir / "args.json").write_text(json.dumps(settings, default=str, indent=1))
    wandb = args.wandb if args.track else None
    tracker = MetricsLogger(out_dir, kept_lines, args.tensorboard, wandb, args.run_name, settings)
    history: list[dict[str, float]] = []

    for iteration in tqdm(range(start, args.iterations), desc=args.label):
        started = time.perf_counter()
        # -- rollout: groups of responses scored by the env; dynamic sampling refills the batch --
        model.eval()
        sampling = (args.max_new_tokens, temperature, dynamic, rounds, args.prompt_format)
        rollouts = collect_rollouts(model, tokenizer, env, rng, groups, n, *sampling)
        row: dict[str, float] = {
            "iteration": iteration,
            **rollout_metrics(
                rollouts.sampled_ids,
                rollouts.sampled_parsed,
                rollouts.sampled_correct,
                rollouts.sampled_rewards,
                modes_of(rollouts.sampled_ids),
            ),
            "charts/generation_rounds": rollouts.rounds,
            "charts/kept_groups": len(rollouts.kept) / n,
        }
        if rollouts.batch is None:  # no group with both right and wrong answers: nothing to learn
            row["charts/seconds"] = time.perf_counter() - started
            finish_iteration(
                row, args, tracker, history, trainable, optimizer, shaper, rng, out_dir
            )
            continue
        batch = rollouts.batch
        response_mask, lengths = batch.response_mask, batch.response_mask.sum(dim=1)  # (B, T), (B,)
        rollout_ids, rewards, correct = rollouts.problem_ids, rollouts.rewards, rollouts.correct
        texts, prompt_width = batch.texts, batch.prompt_width
        sequences = torch.cat([batch.prompt_ids, batch.responses], dim=1)  # (B, P + T)
        attention = torch.cat([batch.prompt_mask, response_mask.long()], dim=1)

        # -- log-prob pass, which also takes the MEDS fingerprint and the critic's values --------
        layers = (args.fingerprint_layers, args.fingerprint_k)
        old = logprob_pass(
            model, tokenizer, batch, micro, temperature, *layers, reference, value_head, anchor
        )
        old_logprobs, ref_logprobs, old_values = old.logprobs, old.ref_logprobs, old.values
        if batch.sampler_logprobs is not None:  # the sampler and the trainer see the same policy
            gap = (batch.sampler_logprobs - old_logprobs).abs() * response_mask
            row["sampler_logprob_gap"] = float(gap.max())

        # -- rewards -> advantages: MEDS shaping, overlong penalty, then GAE or group-normalised --
        shaped, clusters, penalties = rewards, np.full(len(texts), -2), np.zeros(len(texts))
        if scorer is not None:  # MEDS: score and shape by stepping the env in the MEDS wrapper
            shaped, correct, meds_info = scorer.step(rollout_ids, texts, old.fingerprints)
            clusters, penalties = meds_info["cluster"], meds_info["penalty"]
        shaped_t = torch.as_tensor(shaped, dtype=torch.float32)
        if buffer > 0:
            shaped_t = shaped_t + overlong_penalty(lengths.cpu(), args.max_new_tokens, buffer)
        loss_mask = response_mask  # (B, T)
        returns = kl_in_reward = None
        if old_values is not None:  # PPO: KL-penalised token rewards, GAE, whitened
            scores, lam = shaped_t, args.critic.gae_lambda
            advantages, returns, kl_in_reward = ppo_advantages(
                scores, old_logprobs, ref_logprobs, old_values, loss_mask, kl_coef, lam
            )
        else:
            grouped = shaped_t.view(-1, n)  # (G, n)
            advantages = group_advantages(grouped).flatten().to(old_logprobs.device)  # (B,)

        # -- update ------------------------------------------------------------------------------
        model.train()
        stats: dict[str, float] = defaultdict(float)
        total_tokens = float(loss_mask.sum())
        total_sequences = float((loss_mask.sum(dim=1) > 0).sum())
        group = batch.group_size if micro % batch.group_size == 0 else 1  # shared prompts
        for _ in range(args.update_epochs):
            optimizer.zero_grad(set_to_none=True)
            for s in range(0, len(texts), micro):
                sl = slice(s, s + micro)
                mask = loss_mask[sl]
                if mask.sum() == 0:
                    continue
                with capture_values(model, value_head, prompt_width) as critic:
                    logprobs, logits, _ = forward_logprobs(
                        model, sequences[sl], attention[sl], prompt_width, None, temperature, group
                    )
                adv: torch.Tensor = advantages[sl]
                entropy = token_entropy(logits.detach())  # (b, T), for logging and GRPO+Entropy
                if algo is Algorithm.GRPO_ENTROPY:
                    adv = entropy_shaped_advantages(
                        adv, entropy, args.entropy_coef, args.entropy_kappa
                    )
                policy_loss, clip_fraction = clipped_policy_loss(
                    logprobs,
                    old_logprobs[sl],
                    adv,
                    mask,
                    args.clip_low,
                    clip_high,
                    aggregation,
                    args.clip_ratio_c,
                )
                loss = policy_loss
                kl = torch.zeros(())
                if critic is not None and old_values is not None and returns is not None:  # PPO
                    values, targets = critic.values(), (old_values[sl], returns[sl])
                    value_loss, value_clip_fraction = clipped_value_loss(
                        values, *targets, mask, args.critic.value_clip, aggregation
                    )
                    loss = loss + args.critic.vf_coef * value_loss
                elif ref_logprobs is not None:
                    kl = aggregate_loss(k3_kl(logprobs, ref_logprobs[sl]), mask, aggregation)
                    loss = loss + kl_coef * kl
                # Weight micro-batches so the sum equals the loss of the whole batch.
                weight = (
                    float(mask.sum()) / total_tokens
                    if aggregation is LossAggregation.TOKEN_MEAN
                    else float((mask.sum(dim=1) > 0).sum()) / total_sequences
                )
                (loss * weight).backward()
                stats["policy_loss"] += policy_loss.item() * weight
                stats["clip_fraction"] += float(clip_fraction) * weight
                stats["entropy"] += float(aggregate_loss(entropy, mask)) * weight
                if critic is not None and kl_in_reward is not None:  # PPO: KL in the reward
                    stats["value_loss"] += value_loss.item() * weight
                    stats["value_clip_fraction"] += float(value_clip_fraction) * weight
                    stats["kl"] += kl_in_reward * weight
                else:
                    stats["kl"] += kl.item() * weight
            stats["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(trainable.parameters(), args.max_grad_norm)
            )
            optimizer.step()
        model.eval()

        # -- log ---------------------------------------------------------------------------------
        row.update(
            {
                "charts/kept_reward_mean": float(np.mean(rewards)),
                "charts/training_reward_mean": float(shaped_t.mean()),
                "charts/response_length": float(lengths.mean()),
                "charts/boxed_share": float(np.mean(old.boxed)),
                # Real tokens the step computed on, each group's prompt once (FLOP accounting).
                "perf/prompt_tokens": float(batch.prompt_mask[:: batch.group_size].sum()),
                "perf/response_tokens": float(response_mask.sum()),
                "charts/seconds": time.perf_counter() - started,
                **{
                    f"losses/{k}": v / (1 if k == "grad_norm" else args.update_epochs)
                    for k, v in stats.items()
                },
            }
        )
        # MEDS: penalties, and how well clusters match true error modes (docs/design.md section 6).
        if args.use_meds:
            parsed = rollouts.parsed
            row.update(
                meds_metrics(
                    rollout_ids, parsed, correct, modes_of(rollout_ids), clusters, penalties
                )
            )
            memory = shaper.stats()
            ratios = [v for v in memory.top1_eigen_ratio.values() if np.isfinite(v)]
            row["meds/memory_rows"], row["meds/clusters"] = memory.rows, memory.clusters
            row["meds/top1_eigen_ratio"] = float(np.mean(ratios)) if ratios else float("nan")
        finish_iteration(row, args, tracker, history, trainable, optimizer, shaper, rng, out_dir)
    tracker.close()
    if args.eval_n:  # every run ends with report.md: pass@k and error modes of the final policy
        eval_env = gym.make(args.env_id, **env_kwargs, split=args.eval_split) if toy else env
        n, length, temperature = args.eval_n, args.max_new_tokens, args.temperature
        final = evaluate_policy(
            model, tokenizer, eval_env, n, length, temperature, args.seed, args.prompt_format
        )
        held_out = "held-out problems" if args.eval_split == "test" else "the training problems"
        final["evaluated_on"] = f"{args.eval_split} split ({held_out})" if toy else "benchmark file"
        final["cluster_ari"] = training_cluster_ari(history)
        (out_dir / "eval.json").write_text(json.dumps(final, indent=1))
        title = f"{args.run_name}: evaluated on the {final['evaluated_on']}"
        write_report(out_dir, title, current_command(), settings, {args.label: [final]})
        if eval_env is not env:
            eval_env.close()
    env.close()
    return history


def finish_iteration(
    row: dict[str, float],
    args: Args,
    tracker: MetricsLogger,
    history: list[dict[str, float]],
    trainable: Any,
    optimizer: torch.optim.Optimizer,
    shaper: MEDSShaper,
    rng: np.random.Generator,
    out_dir: Path,
) -> None:
    """Log the iteration (finite metrics only), print its summary line, checkpoint if due."""
    from tqdm import tqdm

    metrics = tracker.log(row)
    history.append(metrics)
    tqdm.write(summary_line(metrics, args.prompts_per_iteration))
    iteration = int(metrics["iteration"])
    if args.checkpoint_every and (iteration + 1) % args.checkpoint_every == 0:
        save_checkpoint(out_dir, iteration, trainable, optimizer, shaper, rng)


if __name__ == "__main__":
    import tyro

    logging.basicConfig(level=logging.INFO)
    main(tyro.cli(Args))
