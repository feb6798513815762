"""Where a training step of the bundled agent spends its time, and its throughput against TRL.

Part 1, the step split into its stages, on the warmed-up tiny model (``agents/tiny_model.py``, from
the cache) and a realistic batch (8 prompts x 8 responses by default), each timed on its own:

* ``generation``: ``sample_responses`` (the agent's sampler: each group's prompt prefilled once,
  then one token per step through the key/value cache, pure sampling);
* ``scoring``: the env's verdict on every response (``score_responses``);
* ``log-prob pass``: the forward over prompt + response *with* the fingerprint hooks, as
  ``agents/ppo.py`` runs it (each group's prompt computed once; with autograd in training mode,
  kept for the first update step: ``--reuse-logprob-forward``);
* ``fingerprint``: what the MEDS fingerprint adds to that pass: locating ``\\boxed{`` in the
  tokens, plus (pass with hooks and ``.features``) minus (the same pass without hooks), both
  without gradient. Both passes run alternately on the same batch and the median of each is
  taken;
* ``MEDS shaping``: ``MEDSShaper.shape`` (kNN vote, penalty, HDBSCAN refit of touched buckets),
  with the memory it has accumulated over the previous repeats (the numba kernels are loaded by
  a throwaway call first: that one-off cost is paid once per process, not per step);
* ``update``: ``update_epochs`` optimiser steps (forward with shared prompts, clipped loss,
  backward, AdamW); the first reuses the log-prob pass's forward.

Goals: MEDS shaping <= 1% of the step; fingerprint <= 2% of the log-prob pass; DAPO+MEDS >= 3x
and PPO+MEDS >= 2.5x TRL's rollouts per second; MFU >= 40% for both.

Part 2, throughput against TRL: the same model and batch trained for the same number of steps by
``agents.ppo.main`` (DAPO+MEDS and PPO+MEDS with its critic: fingerprint and shaping included;
dynamic sampling off so that both do the update on every group) and by TRL's ``GRPOTrainer`` (a
dataset of the same toy prompts, a reward function calling ``meds_gym.verifiers.verify_response``,
no MEDS). The budgets match: ``per_device_train_batch_size`` = prompts x responses completions with
``num_generations`` = responses, so one generation per ``num_iterations`` optimiser steps, and
``num_iterations`` = our ``update_epochs``; ``max_completion_length`` = our ``max_new_tokens``; clip
0.2/0.28, no KL, token-mean (``dapo``) loss, pure sampling (``top_k=0``, ``top_p=1``), bf16 off, no
saving, no logging. TRL gets the character tokenizer as ``processing_class=`` and conversational
prompts, so it applies the same chat template as we do. Both run at the same torch thread count
(``--threads``; default torch's, one per physical core). Printed: rollouts per second of each and
the ratio ours / TRL, two ways: our whole ``main`` call (model loading, env set-up and the first
iteration's one-off costs included) against TRL's ``trainer.train()`` (its set-up excluded), which
favours TRL; and our training loop only (the sum of the iterations' ``charts/seconds``), like for
like with ``train()``.

Model FLOP utilisation (MFU) of our runs: the necessary FLOPs of the steps divided by their time
(the sum of the iterations' ``charts/seconds``), against the rate of a float32 1024 x 1024
``torch.matmul`` (best of 5) measured in the same process at the same thread count. Necessary
FLOPs count 2 x N per real (unpadded) token for a forward and 6 x N for a forward and backward,
where N is the number of non-embedding parameters (the LM head included: its matmul runs; the input
embedding table excluded: a lookup), attention ignored, each group's prompt counted once: per step,
generation and the log-prob pass each one forward, the reference model's pass one more where a KL
term needs it (PPO), and one forward and backward per update epoch, but the first epoch's forward
is not counted again where it reuses the log-prob pass's (``--reuse-logprob-forward``: the
default, with one micro-batch and no dropout, as here). Beside it, the MFU the matrix shapes
allow: the same FLOPs over the time the model's linear layers alone take at the step's shapes
(each run on its own, best of 5: prefill and update on all the step's tokens at once, decoding
one token of every row at a time), a ceiling for any implementation on ``torch`` matmuls, and
that matmul-only time as a share of the steps' time (a ratio of two timings of the same run that
does not depend on the 1024 x 1024 rate, which moves with the machine's load). ``--json FILE``
writes the rollouts per second, the MFU, its ceiling, the share and the settings.

Run from the repository root (``agents`` is a top-level package of the clone):
``python -m benchmarks.agent_step [--repeats 5 --steps 5 --skip-trl --json out.json]`` (a few
minutes on an idle 2-core machine once the tiny model is cached; on a cache miss it is built first,
which takes minutes; ``--cache-dir`` picks the cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from agents.fingerprint import FingerprintCapture, answer_tokens, boxed_brace_token_in_ids
from agents.losses import LossAggregation, clipped_policy_loss, group_advantages
from agents.policy import (
    forward_logprobs,
    load_policy,
    prompt_text,
    sample_responses,
    score_responses,
    train_matches_eval,
)
from agents.ppo import Args
from agents.ppo import main as train_ours
from agents.tiny_model import TinyModelConfig, tiny_model_path
from meds_gym.meds import MEDSConfig, MEDSShaper


def step_breakdown(
    model: Any, tokenizer: Any, env: Any, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Seconds of each stage, one entry per repeat (each repeat is one training step)."""
    source: Any = env.unwrapped.source
    shaper = MEDSShaper(MEDSConfig())
    # Load the compiled numba kernels once (a one-off cost per process, not per step).
    warm = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    throwaway = MEDSShaper(MEDSConfig())
    for _ in range(2):  # the second call also votes against the first call's clusters
        throwaway.shape(["p"] * 6, np.zeros(6, bool), np.zeros(6), warm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0)
    rng = np.random.default_rng(0)
    n = args.group_size
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        prompts, problem_ids = [], []
        for index in rng.choice(len(source), size=args.prompts, replace=False):
            obs, info = env.reset(options={"index": int(index)})
            prompts.append(prompt_text(tokenizer, obs, info, args.prompt_format))
            problem_ids.append(info["problem_id"])
        rollout_ids = [pid for pid in problem_ids for _ in range(args.group_size)]

        model.eval()
        start = time.perf_counter()
        batch = sample_responses(
            model, tokenizer, prompts, args.group_size, args.max_new_tokens, 1.0
        )
        times["generation"].append(time.perf_counter() - start)

        start = time.perf_counter()
        rewards, correct, _ = score_responses(env, rollout_ids, batch.texts)
        times["scoring"].append(time.perf_counter() - start)

        start = time.perf_counter()
        brace = [
            boxed_brace_token_in_ids(tokenizer, batch.responses[i].tolist(), text)
            for i, text in enumerate(batch.texts)
        ]
        positions = torch.tensor([-1 if b is None else batch.prompt_width + b for b in brace])
        locate = time.perf_counter() - start
        sequences = torch.cat([batch.prompt_ids, batch.responses], dim=1)  # (B, P + T)
        attention = torch.cat([batch.prompt_mask, batch.response_mask.long()], dim=1)
        answer_starts = answer_tokens(sequences, positions, attention)
        plain, hooked = [], []
        with torch.no_grad():
            for _ in range(args.inner):
                start = time.perf_counter()
                forward_logprobs(model, sequences, attention, batch.prompt_width, None, 1.0, n)
                plain.append(time.perf_counter() - start)
                start = time.perf_counter()
                capture = FingerprintCapture(model, positions, answer_starts)
                forward_logprobs(model, sequences, attention, batch.prompt_width, capture, 1.0, n)
                hooked.append(time.perf_counter() - start)
        times["fingerprint"].append(locate + statistics.median(hooked) - statistics.median(plain))
        model.train()  # the pass as the agent runs it: kept, with its graph, for the update
        start = time.perf_counter()
        capture = FingerprintCapture(model, positions, answer_starts)
        kept_logprobs, _, features = forward_logprobs(
            model, sequences, attention, batch.prompt_width, capture, 1.0, n
        )
        times["log-prob pass"].append(time.perf_counter() - start)
        old_logprobs = kept_logprobs.detach()
        times["locate"].append(locate)
        times["pass spread"].append(max(plain) - min(plain))  # run-to-run noise of one pass

        start = time.perf_counter()
        shaped = shaper.shape(rollout_ids, np.asarray(correct), rewards, features).shaped_rewards
        times["MEDS shaping"].append(time.perf_counter() - start)

        start = time.perf_counter()
        advantages = group_advantages(
            torch.as_tensor(shaped, dtype=torch.float32).view(args.prompts, args.group_size)
        ).flatten()
        for epoch in range(args.update_epochs):
            optimizer.zero_grad(set_to_none=True)
            if epoch == 0:
                logprobs = kept_logprobs
            else:
                logprobs, _, _ = forward_logprobs(
                    model, sequences, attention, batch.prompt_width, None, 1.0, n
                )
            loss, _ = clipped_policy_loss(
                logprobs,
                old_logprobs,
                advantages,
                batch.response_mask,
                0.2,
                0.28,
                LossAggregation.TOKEN_MEAN,
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        model.eval()
        times["update"].append(time.perf_counter() - start)
    times["memory rows after"] = [float(shaper.stats().rows)]
    return times


def trl_rollouts_per_second(
    model_path: str, tiny: TinyModelConfig, args: argparse.Namespace
) -> float:
    """Train the same model with TRL's ``GRPOTrainer`` for ``args.steps`` generations."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from agents.tiny_model import load_tokenizer, make_task
    from meds_gym.envs.reasoning_env import SYSTEM_INSTRUCTION
    from meds_gym.verifiers import verify_response

    task = make_task(tiny)
    system = [{"role": "system", "content": SYSTEM_INSTRUCTION}]
    if args.prompt_format == "compact":
        system = []
    dataset = Dataset.from_list(
        [
            {
                "prompt": [*system, {"role": "user", "content": problem.question}],
                "answer": problem.answer,
            }
            for problem in task
        ]
    )

    def verifier_reward(completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(verify_response(t, a).correct) for t, a in zip(texts, answer, strict=True)]

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed options
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            use_cpu=True,
            report_to=[],
            bf16=False,
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            max_steps=args.steps * args.update_epochs,
            per_device_train_batch_size=args.prompts * args.group_size,
            gradient_accumulation_steps=1,
            num_generations=args.group_size,
            num_iterations=args.update_epochs,
            max_completion_length=args.max_new_tokens,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            learning_rate=5e-4,
            epsilon=0.2,
            epsilon_high=0.28,
            beta=0.0,
            loss_type="dapo",
            seed=0,
        )
        trainer = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_path),
            reward_funcs=[verifier_reward],
            args=config,
            train_dataset=dataset,
            processing_class=load_tokenizer(model_path),
        )
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        torch.set_num_threads(args.threads)  # accelerate may have changed it
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return args.steps * args.prompts * args.group_size / seconds


def breakdown(model: Any, tokenizer: Any, env: Any, args: argparse.Namespace) -> dict[str, float]:
    """Part 1: time the stages of ``args.repeats`` steps, print the table, return the medians."""
    times = step_breakdown(model, tokenizer, env, args)
    stages = ["generation", "scoring", "log-prob pass", "fingerprint", "MEDS shaping", "update"]
    median = {name: statistics.median(times[name]) for name in stages}
    # The fingerprint is part of the log-prob pass as timed: the step is the sum of the others.
    step = sum(median[name] for name in stages if name != "fingerprint")
    print(
        f"\npart 1: median over {args.repeats} steps (MEDS memory rows at the end: "
        f"{int(times['memory rows after'][0])})"
    )
    print(f"{'stage':<16}{'ms':>10}{'share of step':>16}")
    for name in stages:
        print(f"{name:<16}{median[name] * 1e3:>10.1f}{median[name] / step:>15.2%}")
    print(f"{'step':<16}{step * 1e3:>10.1f}{1:>15.2%}")
    print(
        f"fingerprint = locating \\boxed{{ {statistics.median(times['locate']) * 1e3:.1f} ms + "
        f"hooks and features (pass with minus pass without) "
        f"{(median['fingerprint'] - statistics.median(times['locate'])) * 1e3:.1f} ms; "
        f"run-to-run spread of one pass without hooks: "
        f"{statistics.median(times['pass spread']) * 1e3:.1f} ms"
    )
    shaping_share = median["MEDS shaping"] / step
    fingerprint_share = median["fingerprint"] / median["log-prob pass"]
    print(
        f"MEDS shaping {shaping_share:.2%} of the step (goal <= 1%: "
        f"{'met' if shaping_share <= 0.01 else 'NOT met'}); fingerprint {fingerprint_share:.2%} "
        f"of the log-prob pass (goal <= 2%: {'met' if fingerprint_share <= 0.02 else 'NOT met'})"
    )

    return {name: value * 1e3 for name, value in median.items()}


def matmul_flops_per_second(repeats: int = 5, size: int = 1024) -> float:
    """Best-of-``repeats`` rate of a float32 ``size`` x ``size`` ``torch.matmul``, in FLOP/s."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)  # first call: allocation and thread start-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def non_embedding_parameters(model: Any) -> int:
    """Parameters of the model but its input (and position) embedding tables, which are lookups."""
    skip = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def linear_shapes(model: Any) -> dict[tuple[int, int], int]:
    """``(in, out)`` of the model's ``nn.Linear`` layers (the LM head included), with counts."""
    shapes: dict[tuple[int, int], int] = defaultdict(int)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            shapes[(module.in_features, module.out_features)] += 1
    return dict(shapes)


def linear_seconds(
    shapes: dict[tuple[int, int], int], rows: int, backward: bool, repeats: int = 5
) -> float:
    """Best-of-``repeats`` time of every linear layer alone on ``rows`` rows of float32 input.

    The forward is one ``F.linear`` per layer; with ``backward``, the two matmuls of its gradients
    (with respect to the input and to the weight) instead. Nothing else is timed: no attention,
    norm, activation, optimiser or Python, so this is a floor for any implementation built on
    ``torch`` matmuls.
    """
    total = 0.0
    for (fan_in, fan_out), count in shapes.items():
        x, weight = torch.randn(rows, fan_in), torch.randn(fan_out, fan_in)
        grad = torch.randn(rows, fan_out)
        best = float("inf")
        for repeat in range(repeats + 1):  # the first: allocation, not timed
            start = time.perf_counter()
            if backward:
                torch.matmul(grad, weight)  # d input
                torch.matmul(grad.t(), x)  # d weight
            else:
                torch.nn.functional.linear(x, weight)
            if repeat:
                best = min(best, time.perf_counter() - start)
        total += count * best
    return total


def matmul_floor_seconds(
    history: list[dict[str, float]],
    shapes: dict[tuple[int, int], int],
    rows: int,
    epochs: int,
    reference: bool,
    reused: bool,
) -> float:
    """The steps' time if only their linear layers' matmuls took time (see :func:`run_flops`).

    A step of the logged steps' mean size, on its real tokens (a group's prompt once):
    generation prefills the prompts as one matmul and decodes the responses ``rows`` at a time;
    the log-prob pass, the reference pass (``reference``) and every update epoch run one matmul
    over all the tokens, the update's with its backward; ``reused`` drops the first epoch's
    forward. :func:`run_flops` divided by this is the highest MFU these matrix shapes allow on
    this machine.
    """
    prompt = statistics.mean(row["perf/prompt_tokens"] for row in history)
    response = statistics.mean(row["perf/response_tokens"] for row in history)
    tokens = max(round(prompt + response), 1)
    forwards = 1 + (1 if reference else 0) + epochs - (1 if reused else 0)
    step = (
        linear_seconds(shapes, max(round(prompt), 1), backward=False)  # prefill
        + response / rows * linear_seconds(shapes, rows, backward=False)  # decoding
        + forwards * linear_seconds(shapes, tokens, backward=False)
        + epochs * linear_seconds(shapes, tokens, backward=True)
    )
    return len(history) * step


def run_flops(
    history: list[dict[str, float]], params: int, epochs: int, reference: bool, reused: bool
) -> float:
    """Necessary FLOPs of the logged iterations (see the module docstring).

    With ``reused`` the first update step's forward is the log-prob pass's, counted once.
    """
    passes = 2.0 + (1.0 if reference else 0.0)  # generation, log-prob pass, reference pass
    per_token = 2.0 * passes + 6.0 * epochs - (2.0 if reused else 0.0)
    return sum(
        per_token * params * (row["perf/prompt_tokens"] + row["perf/response_tokens"])
        for row in history
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=None, help="default: the default tiny model")
    parser.add_argument("--cache-dir", default=None, help="cache of tiny models")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--update-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of part 1")
    parser.add_argument("--inner", type=int, default=3, help="log-prob passes per variant")
    parser.add_argument("--steps", type=int, default=5, help="training steps of part 2")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, per core)"
    )
    parser.add_argument(
        "--prompt-format",
        choices=["chat", "compact"],
        default="chat",
        help="prompts of both sides (compact needs a tiny model warmed up on it: built if needed)",
    )
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--skip-breakdown", action="store_true", help="skip part 1")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    torch.manual_seed(0)
    tiny = TinyModelConfig(prompt_format=args.prompt_format)
    model_path = args.model_path or str(tiny_model_path(tiny, args.cache_dir))
    model, tokenizer = load_policy(model_path)
    env = gym.make(
        "meds_gym/Arithmetic-v0",
        num_problems=tiny.num_problems,
        difficulty=tiny.difficulty,
        seed=tiny.task_seed,
    )
    n_layers = model.config.num_hidden_layers
    params = non_embedding_parameters(model)
    peak = matmul_flops_per_second()
    print(
        f"model: {model_path} ({n_layers} layers, hidden {model.config.hidden_size}, "
        f"{params:,} non-embedding parameters); batch {args.prompts} prompts x "
        f"{args.group_size} responses, <= {args.max_new_tokens} new tokens, "
        f"{args.update_epochs} update epochs; {args.prompt_format} prompts; {args.threads} torch "
        f"thread(s); float32 1024^3 matmul: {peak / 1e9:.1f} GFLOP/s"
    )
    results: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "matmul_gflops": peak / 1e9,
        "non_embedding_parameters": params,
    }
    if not args.skip_breakdown:
        results["breakdown_ms"] = breakdown(model, tokenizer, env, args)
    env.close()

    ours: dict[str, float] = {}
    loop: dict[str, float] = {}
    mfu: dict[str, float] = {}
    ceiling: dict[str, float] = {}
    floor_share: dict[str, float] = {}
    for algorithm in ("dapo", "ppo"):  # DAPO+MEDS and PPO+MEDS (with its critic)
        with tempfile.TemporaryDirectory() as out:
            ours_args = Args(
                algorithm=algorithm,
                meds=True,
                model_path=model_path,
                iterations=args.steps,
                prompts_per_iteration=args.prompts,
                group_size=args.group_size,
                max_new_tokens=args.max_new_tokens,
                update_epochs=args.update_epochs,
                micro_batch_size=args.prompts * args.group_size,
                dynamic_sampling=False,
                prompt_format=args.prompt_format,
                output_dir=out,
                tensorboard=False,
                eval_n=0,
                threads=args.threads,
            )
            start = time.perf_counter()
            history = train_ours(ours_args)
            elapsed = time.perf_counter() - start
        label = f"{algorithm}+meds"
        ours[label] = args.steps * args.prompts * args.group_size / elapsed
        step_seconds = sum(row["charts/seconds"] for row in history)
        loop[label] = args.steps * args.prompts * args.group_size / step_seconds
        reused = ours_args.reuse_logprob_forward and train_matches_eval(model)  # one micro-batch
        flops = run_flops(
            history, params, args.update_epochs, reference=algorithm == "ppo", reused=reused
        )
        mfu[label] = flops / step_seconds / peak
        floor = matmul_floor_seconds(
            history,
            linear_shapes(model),
            args.prompts * args.group_size,
            args.update_epochs,
            reference=algorithm == "ppo",
            reused=reused,
        )
        ceiling[label] = flops / floor / peak
        floor_share[label] = floor / step_seconds
    print(f"\npart 2: {args.steps} training steps of {args.prompts * args.group_size} rollouts")
    print(f"{'trainer':<28}{'rollouts/s':>12}{'loop only':>11}{'MFU':>8}")
    for label, rate in ours.items():
        print(
            f"{f'ours (agents.ppo, {label})':<28}{rate:>12.2f}{loop[label]:>11.2f}"
            f"{mfu[label]:>8.1%}"
        )
    results["rollouts_per_second"] = dict(ours)
    results["training_loop_rollouts_per_second"] = dict(loop)
    results["mfu"] = mfu
    results["mfu_matmul_ceiling"] = ceiling
    results["matmul_floor_share_of_step"] = floor_share
    if not args.skip_trl:
        theirs = trl_rollouts_per_second(model_path, tiny, args)
        torch.set_num_threads(args.threads)
        print(f"{'TRL GRPOTrainer':<28}{theirs:>12.2f}")
        results["rollouts_per_second"]["trl_grpo"] = theirs
        goals = {"dapo+meds": 3.0, "ppo+meds": 2.5}
        results["ratio_to_trl"] = {}
        results["training_loop_ratio_to_trl"] = {}
        for label, rate in ours.items():
            ratio, loop_ratio = rate / theirs, loop[label] / theirs
            results["ratio_to_trl"][label] = ratio
            results["training_loop_ratio_to_trl"][label] = loop_ratio
            print(
                f"ratio ours ({label}) / TRL: {ratio:.2f} whole run, {loop_ratio:.2f} training "
                f"loop only, like TRL's train() (goal >= {goals[label]}: "
                f"{'met' if ratio >= goals[label] else 'NOT met'} whole run, "
                f"{'met' if loop_ratio >= goals[label] else 'NOT met'} loop only)"
            )
    for label, value in mfu.items():
        print(
            f"MFU {label}: {value:.1%} (goal >= 40%: {'met' if value >= 0.4 else 'NOT met'}); "
            f"the matmul shapes alone allow {ceiling[label]:.1%}; the linear layers' matmuls "
            f"alone would take {floor_share[label]:.1%} of the steps' time"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
