"""MEDS in a custom RL loop, on a simulated policy: no language model, runs in seconds on a CPU.

The policy is a table of logits per problem over its candidate final answers: the gold answer, the
answer of each known error mode of the toy task (precedence ignored, carry dropped, ...), and an
"unstructured slip" (a random wrong number). At the start one buggy procedure dominates, as after a
warm-up on a mixture of procedures (docs/design.md section 6). Each answer has a fixed latent vector
and a rollout's fingerprint is that vector plus noise, standing in for the logit-lens fingerprint of
a language model; slips get a fresh random fingerprint each time.

Every iteration samples a group of rollouts per problem, scores them with the environment (the
reward comes from the verifier, not from the policy's bookkeeping), optionally reshapes the rewards
with :class:`meds_gym.meds.MEDSShaper`, normalises them within each group (GRPO) and takes one
REINFORCE step. MEDS shapes the groups the reference shapes, those holding both right and wrong
answers (``kept=mixed_groups(...)``); ``--shape-all-wrong`` shapes all-wrong groups too (a variant
beyond the paper, ``GroupRule.MIXED_AND_ALL_WRONG``). A slip's number is never the gold or an
error mode's answer. Both arms run on the same seeds; the table reports mean and standard deviation
over seeds of pass@1 (the policy's probability of the gold answer, averaged over problems), the
share of the wrong-mode mass held by the mode that is *currently* largest, and the effective
number of wrong modes (exp of the entropy of the modes' shares); slips are not a mode.
``python -m experiments.regime_map`` maps the same mechanism over many settings.

Run: python examples/simulated_policy.py --help
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro
from tqdm import tqdm

import meds_gym  # noqa: F401  (registers the meds_gym/* ids)
from meds_gym.meds import GroupRule, MEDSConfig, MEDSShaper, shaped_groups


@dataclass
class Args:
    """Command-line arguments."""

    env_id: str = "meds_gym/Arithmetic-v0"
    """Toy-task environment to train on."""
    num_problems: int = 16
    """Number of problems in the training set."""
    group_size: int = 16
    """Rollouts per problem per iteration."""
    iterations: int = 30
    """Policy updates per run."""
    lr: float = 0.15
    """Step size of the REINFORCE update on the logits."""
    seeds: int = 3
    """Independent runs per arm."""
    alpha: float = 0.05
    """MEDS penalty slope (the paper's 0.1 on +1 / -1 rewards; the env scores 1 / 0)."""
    beta: float = 0.1
    """MEDS penalty cap (the paper's 0.2 on +1 / -1 rewards)."""
    dominant_share: float = 0.5
    """Initial probability of the dominant error mode."""
    gold_share: float = 0.2
    """Initial probability of the gold answer."""
    fingerprint_dim: int = 14
    """Length of the simulated fingerprint (layers of the logit lens)."""
    shape_all_wrong: bool = False
    """Shape all-wrong groups too (a variant beyond the paper); default: mixed groups only."""


def initial_logits(num_modes: int, args: Args) -> np.ndarray:
    """Log-probabilities over [gold, mode_1 (dominant), ..., mode_m, slip]."""
    if num_modes == 0:  # every error mode of this problem gives the gold: only slips are wrong
        return np.log(np.array([args.gold_share, 1.0 - args.gold_share]))
    rest = 1.0 - args.gold_share - args.dominant_share
    probs = [args.gold_share, args.dominant_share]
    probs += [rest * 0.7 / max(num_modes - 1, 1)] * (num_modes - 1)
    probs += [rest * 0.3 if num_modes > 1 else rest]
    return np.log(np.asarray(probs) / np.sum(probs))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def slip_answer(gold: int, taken: set[int], rng: np.random.Generator) -> str:
    """A random wrong number that is neither the gold nor any error mode's answer."""
    while True:
        value = gold + int(rng.integers(2, 200)) * int(rng.choice([-1, 1]))
        if value not in taken:
            return str(value)


def wrong_mode_metrics(probs: np.ndarray) -> tuple[float, float]:
    """Share of the currently largest error mode, and the effective number of modes (no slip)."""
    if probs.size < 3:
        return float("nan"), float("nan")
    modes = probs[1:-1] / max(probs[1:-1].sum(), 1e-12)
    entropy = -float(np.sum(modes * np.log(np.maximum(modes, 1e-300))))
    return float(modes.max()), float(np.exp(entropy))


def run(args: Args, seed: int, use_meds: bool) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    env = gym.make(args.env_id, num_problems=args.num_problems, seed=seed)
    env.reset(seed=seed)
    problems = [env.unwrapped.source[i] for i in range(args.num_problems)]
    # [gold, each distinct error-mode answer that is not the gold]; a slip is the extra last entry.
    answers = [
        [p.answer, *[a for a in dict.fromkeys(p.error_modes.values()) if a != p.answer]]
        for p in problems
    ]
    logits = [initial_logits(len(a) - 1, args) for a in answers]
    latents = [rng.normal(size=(len(a), args.fingerprint_dim)) for a in answers]
    rule = GroupRule.MIXED_AND_ALL_WRONG if args.shape_all_wrong else GroupRule.MIXED
    shaper = MEDSShaper(MEDSConfig(alpha=args.alpha, beta=args.beta, shape_groups=rule))

    for _ in range(args.iterations):
        ids, correct, rewards, feats, picks = [], [], [], [], []
        for p, problem in enumerate(problems):
            probs = softmax(logits[p])
            taken = {int(a) for a in answers[p]}
            for choice in rng.choice(len(probs), size=args.group_size, p=probs):
                if choice < len(answers[p]):
                    answer, latent = answers[p][choice], latents[p][choice]
                else:  # an unstructured slip: a random wrong number, a random fingerprint
                    answer = slip_answer(int(problem.answer), taken, rng)
                    latent = rng.normal(size=args.fingerprint_dim)
                env.reset(options={"problem_id": problem.problem_id})
                _, reward, _, _, info = env.step(f"So the answer is \\boxed{{{answer}}}.")
                ids.append(problem.problem_id)
                correct.append(info["correct"])
                rewards.append(float(reward))
                feats.append(latent + 0.05 * rng.normal(size=args.fingerprint_dim))
                picks.append((p, choice))
        rewards_arr = np.asarray(rewards)
        if use_meds:  # the groups the rule shapes: one group per problem per iteration
            kept = shaped_groups(ids, correct, rule=rule)
            result = shaper.shape(ids, np.asarray(correct), rewards_arr, np.stack(feats), kept=kept)
            rewards_arr = result.shaped_rewards
        # GRPO advantages: normalise within each problem's group, then REINFORCE on the logits.
        grouped = rewards_arr.reshape(args.num_problems, args.group_size)
        adv = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-6)
        for i, (p, choice) in enumerate(picks):
            grad = -softmax(logits[p])
            grad[choice] += 1.0
            logits[p] += args.lr * adv.flat[i] * grad / args.group_size

    pass1, largest, effective = [], [], []
    for p in range(args.num_problems):
        probs = softmax(logits[p])
        share, modes = wrong_mode_metrics(probs)
        pass1.append(probs[0])
        largest.append(share)
        effective.append(modes)
    return {
        "pass@1": float(np.mean(pass1)),
        "largest mode share": float(np.nanmean(largest)),
        "effective wrong modes": float(np.nanmean(effective)),
    }


def main(args: Args) -> None:
    results: dict[str, list[dict[str, float]]] = {"GRPO": [], "GRPO+MEDS": []}
    with tqdm(total=2 * args.seeds, desc="runs") as bar:
        for seed in range(args.seeds):
            for arm in results:
                results[arm].append(run(args, seed, use_meds=arm.endswith("MEDS")))
                bar.update()
    metrics = list(results["GRPO"][0])
    rule = "mixed and all-wrong groups (variant)" if args.shape_all_wrong else "mixed groups"
    print(
        f"\n{args.env_id}: {args.num_problems} problems, {args.group_size} rollouts each, "
        f"{args.iterations} iterations, {args.seeds} seeds (mean ± std over seeds); "
        f"MEDS shapes {rule}\n"
    )
    print(f"| arm | {' | '.join(metrics)} |")
    print("|---|" + "---|" * len(metrics))
    for arm, runs in results.items():
        cells = []
        for m in metrics:
            values = np.array([r[m] for r in runs])
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
        print(f"| {arm} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
