"""GRPO, DAPO, GRPO+Entropy and DAPO+MEDS on a meds-gym text env, in one readable script.

Each iteration: sample ``prompts_per_iteration`` problems and ``group_size`` responses to each from
the policy; score every response with the env (``reset(options={"problem_id": ...})`` then
``step(text)``: rewards and verdicts come from the env, never recomputed here); run the log-prob
pass, which also captures the MEDS answer fingerprint through forward hooks (no extra forward,
``agents/fingerprint.py``); shape the rewards with MEDS (``--algorithm meds``); turn rewards into
group-normalised advantages; take a clipped policy-gradient step; log (a progress bar, one summary
line per iteration, ``metrics.jsonl`` and TensorBoard scalars under ``charts/``, ``losses/`` and
``meds/``). ``--checkpoint-every`` and ``--resume`` resume bit-exact (``agents/checkpoint.py``).
The run ends by evaluating the final policy (``--eval-n`` samples per problem) into ``eval.json``,
``report.md`` and ``pass_at_k.png`` (``agents/report.py``).

Algorithms (the baselines of the MEDS paper, arXiv 2604.11297, section 5):

* ``grpo``: symmetric clip 0.2, sequence-mean loss, k3 KL to the initial model (coef 0.001).
* ``dapo``: clip-higher 0.2/0.28, token-mean loss, no KL, dynamic sampling, overlong penalty.
* ``grpo_entropy``: GRPO plus the entropy advantage ``A + min(0.4 * H.detach(), |A| / 2)``.
* ``meds``: DAPO with MEDS reward shaping (alpha 0.1, beta 0.2) before the advantages.

Deviations from the paper, for a small single-process run:

* Dynamic sampling drops groups whose rollouts are all right or all wrong (by the env's verdict)
  but does not sample more prompts to refill the batch; an iteration whose groups are all dropped
  makes no update.
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
from meds_gym.envs import TOY_ENV_IDS
from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import MEDSConfig, MEDSShaper

from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import evaluate_policy
from .evaluation import (
    adjusted_rand_index,
    distinct_answers,
    dominant_mode_share,
    error_mode_labels,
)
from .fingerprint import FingerprintCapture, boxed_brace_token_in_ids
from .losses import (
    LossAggregation,
    aggregate_loss,
    clipped_policy_loss,
    dynamic_sampling_mask,
    entropy_shaped_advantages,
    group_advantages,
    k3_kl,
    overlong_penalty,
    token_entropy,
)
from .policy import (
    forward_logprobs,
    load_policy,
    prompt_text,
    sample_responses,
    score_responses,
)
from .report import current_command, training_cluster_ari, write_report
from .tiny_model import TinyModelConfig, tiny_model_path

logger = logging.getLogger(__name__)


class Algorithm(str, Enum):
    """Which member of the family to train with."""

    GRPO = "grpo"
    DAPO = "dapo"
    GRPO_ENTROPY = "grpo_entropy"
    MEDS = "meds"


@dataclass
class Args:
    """Command-line arguments (``tyro``)."""

    algorithm: Literal["grpo", "dapo", "grpo_entropy", "meds"] = "meds"
    """The algorithm; ``meds`` is DAPO with MEDS reward shaping."""
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
    model_path: str | None = None
    """A directory (or Hub name in the local cache) for ``AutoModelForCausalLM.from_pretrained``;
    None builds (or reuses from the cache) the warmed-up tiny model on the env's toy task."""
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
    learning_rate: float = 5e-4
    """AdamW learning rate."""
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
    kl_coef: float | None = None
    """k3 KL coefficient; None: 0.001 for grpo and grpo_entropy, 0 for dapo/meds."""
    entropy_coef: float = 0.4
    """GRPO+Entropy coefficient of the detached entropy term."""
    entropy_kappa: float = 2.0
    """GRPO+Entropy: the term is at most |A| / kappa."""
    overlong_buffer: int | None = None
    """DAPO overlong buffer in tokens; None: max_new_tokens // 6 for dapo/meds (DAPO's 512 of
    3072), off otherwise."""
    dynamic_sampling: bool | None = None
    """Drop all-right / all-wrong groups; None: on for dapo/meds."""
    meds_alpha: float = 0.1
    """MEDS penalty slope."""
    meds_beta: float = 0.2
    """MEDS penalty cap."""
    fingerprint_layers: Literal["last_half", "all", "last_k", "diff"] = "last_half"
    """Decoder layers of the fingerprint."""
    fingerprint_k: int = 4
    """Number of layers for ``--fingerprint-layers last_k``."""
    output_dir: str = "runs"
    """Metrics go to ``<output_dir>/<run name>/metrics.jsonl`` (and TensorBoard event files)."""
    tensorboard: bool = True
    """Also write the metrics as TensorBoard scalars."""
    checkpoint_every: int = 0
    """Save a checkpoint in the run directory every this many iterations (0: never)."""
    resume: bool = False
    """Continue this run (same arguments) from its latest checkpoint; ``iterations`` is the total
    to reach, and metrics past the checkpoint are rewritten."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default)."""
    eval_n: int = 16
    """At the end, sample this many responses per problem for ``report.md`` (pass@k; 0: skip)."""

    def __post_init__(self) -> None:
        # Every algorithm here normalises advantages within a group: a group of one has none.
        if self.group_size < 2:
            raise InvalidArgumentError(
                "group_size",
                f"an int >= 2 for the group-relative algorithm {Algorithm(self.algorithm).value}",
                self.group_size,
                "Sample several responses per prompt, e.g. --group-size 8.",
            )
        for name in (
            "iterations",
            "prompts_per_iteration",
            "max_new_tokens",
            "update_epochs",
            "micro_batch_size",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(name, "an int >= 1", getattr(self, name))
        if self.eval_n < 0:
            raise InvalidArgumentError("eval_n", "an int >= 0", self.eval_n)
        if self.checkpoint_every < 0:
            raise InvalidArgumentError("checkpoint_every", "an int >= 0", self.checkpoint_every)
        if not self.temperature > 0:
            raise InvalidArgumentError("temperature", "a float > 0", self.temperature)

    @property
    def is_dapo_like(self) -> bool:
        """DAPO and DAPO+MEDS share clip-higher, token-mean, dynamic sampling, overlong penalty."""
        return Algorithm(self.algorithm) in (Algorithm.DAPO, Algorithm.MEDS)

    @property
    def run_name(self) -> str:
        """Directory name of this run's outputs."""
        return f"{self.env_id.split('/')[-1]}__{Algorithm(self.algorithm).value}__{self.seed}"


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
    )


def main(args: Args) -> list[dict[str, float]]:
    """Train; returns the metrics of every iteration (also written to ``metrics.jsonl``)."""
    from tqdm import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    algo = Algorithm(args.algorithm)
    clip_high = (
        args.clip_high if args.clip_high is not None else (0.28 if args.is_dapo_like else 0.2)
    )
    kl_coef = args.kl_coef if args.kl_coef is not None else (0.0 if args.is_dapo_like else 1e-3)
    aggregation = LossAggregation.TOKEN_MEAN if args.is_dapo_like else LossAggregation.SEQUENCE_MEAN
    dynamic = args.dynamic_sampling if args.dynamic_sampling is not None else args.is_dapo_like
    buffer = args.overlong_buffer
    if buffer is None:
        buffer = max(1, args.max_new_tokens // 6) if args.is_dapo_like else 0

    # -- environment, policy, reference, MEDS ------------------------------------------------
    env_kwargs: dict[str, Any] = (
        {"num_problems": args.num_problems, "difficulty": args.difficulty, "seed": args.task_seed}
        if args.env_id in TOY_ENV_IDS
        else {"data_path": args.data_path}
    )
    env = gym.make(args.env_id, **env_kwargs)
    source: Any = env.unwrapped.source  # type: ignore[attr-defined]
    model_path = args.model_path
    if model_path is None:
        model_path = str(tiny_model_path(tiny_config_for(args), args.cache_dir))
    model, tokenizer = load_policy(model_path, args.device)
    # Seed after loading: building the tiny model on a cache miss draws from the global RNGs.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if kl_coef > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    shaper = MEDSShaper(MEDSConfig(alpha=args.meds_alpha, beta=args.meds_beta))
    out_dir = Path(args.output_dir) / args.run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    start = 0
    metrics_path = out_dir / "metrics.jsonl"
    kept_lines: list[str] = []
    if args.resume:  # weights, optimiser, MEDS memory and RNGs exactly as they were saved
        last, shaper = load_checkpoint(out_dir, model, optimizer, rng)
        start = last + 1
        lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
        kept_lines = [line for line in lines if json.loads(line)["iteration"] <= last]
    metrics_file = metrics_path.open("w")
    metrics_file.writelines(line + "\n" for line in kept_lines)
    (out_dir / "args.json").write_text(
        json.dumps({**dataclasses.asdict(args), "model_path": model_path}, default=str, indent=1)
    )
    history: list[dict[str, float]] = []
    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir))

    for iteration in tqdm(range(start, args.iterations), desc=algo.value):
        started = time.perf_counter()
        # -- rollout: G problems x n responses, scored by the env ---------------------------------
        indices = rng.choice(
            len(source),
            size=args.prompts_per_iteration,
            replace=len(source) < args.prompts_per_iteration,
        )
        problem_ids, prompts = [], []
        for index in indices:
            obs, info = env.reset(options={"index": int(index)})
            problem_ids.append(info["problem_id"])
            prompts.append(prompt_text(tokenizer, obs, info))
        model.eval()
        batch = sample_responses(
            model, tokenizer, prompts, args.group_size, args.max_new_tokens, args.temperature
        )
        prompt_width, responses, texts = batch.prompt_width, batch.responses, batch.texts
        response_mask, lengths = batch.response_mask, batch.response_mask.sum(dim=1)  # (B, T), (B,)
        rollout_ids = [pid for pid in problem_ids for _ in range(args.group_size)]
        rewards, correct, parsed = score_responses(env, rollout_ids, texts)  # (B,) each

        # -- log-prob pass, which also takes the MEDS fingerprint ---------------------------------
        sequences = torch.cat([batch.prompt_ids, responses], dim=1)  # (B, P + T)
        attention = torch.cat([batch.prompt_mask, response_mask.long()], dim=1)
        brace = [
            boxed_brace_token_in_ids(tokenizer, responses[i].tolist(), texts[i])
            for i in range(len(texts))
        ]
        brace_positions = torch.tensor([-1 if b is None else prompt_width + b for b in brace])
        old_logprobs_parts: list[torch.Tensor] = []
        ref_parts: list[torch.Tensor] = []
        feature_parts: list[Any] = []
        with torch.no_grad():
            for s in range(0, len(texts), args.micro_batch_size):
                sl = slice(s, s + args.micro_batch_size)
                capture = FingerprintCapture(
                    model, brace_positions[sl], args.fingerprint_layers, args.fingerprint_k
                )
                logprobs, _, features = forward_logprobs(
                    model, sequences[sl], attention[sl], prompt_width, capture
                )
                old_logprobs_parts.append(logprobs)
                feature_parts.append(features)
                if reference is not None:
                    ref_parts.append(
                        forward_logprobs(reference, sequences[sl], attention[sl], prompt_width)[0]
                    )
        old_logprobs = torch.cat(old_logprobs_parts)  # (B, T)
        fingerprints = np.concatenate(feature_parts)  # (B, L), NaN rows without \boxed{
        ref_logprobs = torch.cat(ref_parts) if ref_parts else None

        # -- rewards -> advantages: MEDS shaping, overlong penalty, group normalisation -----------
        shaped = rewards.copy()
        meds_out = None
        if algo is Algorithm.MEDS:
            meds_out = shaper.shape(rollout_ids, np.asarray(correct), rewards, fingerprints)
            shaped = meds_out.shaped_rewards
        shaped_t = torch.as_tensor(shaped, dtype=torch.float32)
        if buffer > 0:
            shaped_t = shaped_t + overlong_penalty(lengths.cpu(), args.max_new_tokens, buffer)
        grouped = shaped_t.view(args.prompts_per_iteration, args.group_size)  # (G, n)
        advantages = group_advantages(grouped).flatten().to(args.device)  # (B,)
        # Dynamic sampling looks at the env's verdicts: MEDS only reorders wrong rollouts within
        # groups that hold both right and wrong answers (DESIGN.md section 6).
        keep_groups = (
            dynamic_sampling_mask(
                torch.as_tensor(rewards, dtype=torch.float32).view(
                    args.prompts_per_iteration, args.group_size
                )
            )
            if dynamic
            else torch.ones(args.prompts_per_iteration, dtype=torch.bool)
        )
        keep = keep_groups.repeat_interleave(args.group_size).to(args.device)  # (B,)
        loss_mask = response_mask * keep[:, None].float()  # (B, T)

        # -- update ------------------------------------------------------------------------------
        model.train()
        stats: dict[str, float] = defaultdict(float)
        total_tokens = float(loss_mask.sum())
        total_sequences = float((loss_mask.sum(dim=1) > 0).sum())
        for _ in range(args.update_epochs if total_tokens > 0 else 0):
            optimizer.zero_grad(set_to_none=True)
            for s in range(0, len(texts), args.micro_batch_size):
                sl = slice(s, s + args.micro_batch_size)
                mask = loss_mask[sl]
                if mask.sum() == 0:
                    continue
                logprobs, logits, _ = forward_logprobs(
                    model, sequences[sl], attention[sl], prompt_width
                )
                adv: torch.Tensor = advantages[sl]
                entropy = token_entropy(logits.detach())  # (b, T), for logging and GRPO+Entropy
                if algo is Algorithm.GRPO_ENTROPY:
                    adv = entropy_shaped_advantages(
                        adv, entropy, args.entropy_coef, args.entropy_kappa
                    )
                policy_loss, clip_fraction = clipped_policy_loss(
                    logprobs, old_logprobs[sl], adv, mask, args.clip_low, clip_high, aggregation
                )
                loss = policy_loss
                kl = torch.zeros(())
                if ref_logprobs is not None:
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
                stats["kl"] += kl.item() * weight
                stats["clip_fraction"] += float(clip_fraction) * weight
                stats["entropy"] += float(aggregate_loss(entropy, mask)) * weight
            stats["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            )
            optimizer.step()
        epochs = args.update_epochs if total_tokens > 0 else 1
        model.eval()

        # -- log ---------------------------------------------------------------------------------
        row: dict[str, float] = {
            "iteration": iteration,
            "charts/reward_mean": float(rewards.mean()),
            "charts/shaped_reward_mean": float(shaped_t.mean()),
            "charts/response_length": float(lengths.mean()),
            "charts/boxed_share": float(np.mean([b is not None for b in brace])),
            "charts/distinct_answers": float(
                np.mean(list(distinct_answers(rollout_ids, parsed).values()))
            ),
            "charts/kept_groups": float(keep_groups.float().mean()),
            "charts/seconds": time.perf_counter() - started,
            **{f"losses/{k}": v / (1 if k == "grad_norm" else epochs) for k, v in stats.items()},
        }
        # Error modes of wrong answers (toy tasks know them): how concentrated the mistakes are,
        # and how well MEDS clusters agree with the true modes (DESIGN.md section 6).
        wrong = [i for i, ok in enumerate(correct) if not ok]
        if wrong:
            wrong_ids = [rollout_ids[i] for i in wrong]
            modes = error_mode_labels(
                [parsed[i] for i in wrong], [source.get(pid).error_modes for pid in wrong_ids]
            )
            row["charts/dominant_error_share"] = dominant_mode_share(wrong_ids, modes)
            clusters = meds_out.clusters[wrong] if meds_out is not None else np.array([])
            voted = clusters >= -1  # -2: not assigned (first visit, or no fingerprint)
            if voted.sum() >= 2:
                true = [f"{pid}:{m}" for pid, m in zip(wrong_ids, modes, strict=True)]
                pred = [f"{pid}:{c}" for pid, c in zip(wrong_ids, clusters, strict=True)]
                row["meds/cluster_ari"] = adjusted_rand_index(
                    np.asarray(true)[voted], np.asarray(pred)[voted]
                )
        if meds_out is not None:
            memory = shaper.stats()
            wrong_mask = ~np.asarray(correct)
            ratios = [v for v in memory.top1_eigen_ratio.values() if np.isfinite(v)]
            row.update(
                {
                    "meds/penalty_mean_wrong": float(meds_out.penalties[wrong_mask].mean())
                    if wrong_mask.any()
                    else 0.0,
                    "meds/penalised_share": float((meds_out.penalties > 0).mean()),
                    "meds/memory_rows": float(memory.rows),
                    "meds/clusters": float(memory.clusters),
                    "meds/top1_eigen_ratio": float(np.mean(ratios)) if ratios else float("nan"),
                }
            )
        history.append(row)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        for key, value in row.items():
            if writer is not None and key != "iteration":
                writer.add_scalar(key, value, iteration)
        tqdm.write(
            f"iter {iteration:4d}  reward {row['charts/reward_mean']:.3f}  "
            f"shaped {row['charts/shaped_reward_mean']:.3f}  "
            f"loss {row.get('losses/policy_loss', float('nan')):+.4f}  "
            f"kept {row['charts/kept_groups']:.2f}  len {row['charts/response_length']:.1f}  "
            f"dominant-mode {row.get('charts/dominant_error_share', float('nan')):.2f}"
        )
        if args.checkpoint_every and (iteration + 1) % args.checkpoint_every == 0:
            save_checkpoint(out_dir, iteration, model, optimizer, shaper, rng)
    metrics_file.close()
    if writer is not None:
        writer.close()
    if args.eval_n:  # every run ends with report.md: pass@k and error modes of the final policy
        final = evaluate_policy(
            model, tokenizer, env, args.eval_n, args.max_new_tokens, args.temperature, args.seed
        )
        final["cluster_ari"] = training_cluster_ari(history)
        (out_dir / "eval.json").write_text(json.dumps(final, indent=1))
        settings = {**dataclasses.asdict(args), "model_path": model_path}
        write_report(out_dir, args.run_name, current_command(), settings, {algo.value: [final]})
    env.close()
    return history


if __name__ == "__main__":
    import tyro

    logging.basicConfig(level=logging.INFO)
    main(tyro.cli(Args))
