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
REINFORCE step. Both arms run on the same seeds; the table reports mean and standard deviation
over seeds of pass@1 (the policy's probability of the gold answer, averaged over problems), the
share of the dominant error mode among wrong answers, and the number of error modes that still
hold at least 5% of the wrong-answer mass.

Run: python examples/simulated_policy.py --help
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro
from tqdm import tqdm

import meds_gym  # noqa: F401  (registers the meds_gym/* ids)
from meds_gym.meds import MEDSConfig, MEDSShaper


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
    alpha: float = 0.1
    """MEDS penalty slope."""
    beta: float = 0.2
    """MEDS penalty cap."""
    dominant_share: float = 0.5
    """Initial probability of the dominant error mode."""
    gold_share: float = 0.2
    """Initial probability of the gold answer."""
    fingerprint_dim: int = 14
    """Length of the simulated fingerprint (layers of the logit lens)."""


def initial_logits(num_modes: int, args: Args) -> np.ndarray:
    """Log-probabilities over [gold, mode_1 (dominant), ..., mode_m, slip]."""
    rest = 1.0 - args.gold_share - args.dominant_share
    probs = [args.gold_share, args.dominant_share]
    probs += [rest * 0.7 / max(num_modes - 1, 1)] * (num_modes - 1)
    probs += [rest * 0.3 if num_modes > 1 else rest]
    return np.log(np.asarray(probs) / np.sum(probs))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def run(args: Args, seed: int, use_meds: bool) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    env = gym.make(args.env_id, num_problems=args.num_problems, seed=seed)
    env.reset(seed=seed)
    problems = [env.unwrapped.source[i] for i in range(args.num_problems)]
    answers = [[p.answer, *dict.fromkeys(p.error_modes.values())] for p in problems]
    logits = [initial_logits(len(a) - 1, args) for a in answers]
    latents = [rng.normal(size=(len(a), args.fingerprint_dim)) for a in answers]
    shaper = MEDSShaper(MEDSConfig(alpha=args.alpha, beta=args.beta)) if use_meds else None

    for _ in range(args.iterations):
        ids, correct, rewards, feats, picks = [], [], [], [], []
        for p, problem in enumerate(problems):
            probs = softmax(logits[p])
            for choice in rng.choice(len(probs), size=args.group_size, p=probs):
                if choice < len(answers[p]):
                    answer, latent = answers[p][choice], latents[p][choice]
                else:  # an unstructured slip: a random wrong number, a random fingerprint
                    answer = str(int(problem.answer) + int(rng.integers(1, 50)))
                    latent = rng.normal(size=args.fingerprint_dim)
                env.reset(options={"problem_id": problem.problem_id})
                _, reward, _, _, info = env.step(f"So the answer is \\boxed{{{answer}}}.")
                ids.append(problem.problem_id)
                correct.append(info["correct"])
                rewards.append(float(reward))
                feats.append(latent + 0.05 * rng.normal(size=args.fingerprint_dim))
                picks.append((p, choice))
        rewards_arr = np.asarray(rewards)
        if shaper is not None:
            rewards_arr = shaper.shape(ids, np.asarray(correct), rewards_arr, np.stack(feats))
            rewards_arr = rewards_arr.shaped_rewards
        # GRPO advantages: normalise within each problem's group, then REINFORCE on the logits.
        grouped = rewards_arr.reshape(args.num_problems, args.group_size)
        adv = (grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-6)
        for i, (p, choice) in enumerate(picks):
            grad = -softmax(logits[p])
            grad[choice] += 1.0
            logits[p] += args.lr * adv.flat[i] * grad / args.group_size

    pass1, dominant, modes_alive = [], [], []
    for p in range(args.num_problems):
        probs = softmax(logits[p])
        wrong = probs[1:] / max(probs[1:].sum(), 1e-12)
        pass1.append(probs[0])
        dominant.append(wrong[0])
        modes_alive.append(int(np.sum(wrong >= 0.05)))
    return {
        "pass@1": float(np.mean(pass1)),
        "dominant mode share": float(np.mean(dominant)),
        "modes with >=5% of errors": float(np.mean(modes_alive)),
    }


def main(args: Args) -> None:
    results: dict[str, list[dict[str, float]]] = {"GRPO": [], "GRPO+MEDS": []}
    with tqdm(total=2 * args.seeds, desc="runs") as bar:
        for seed in range(args.seeds):
            for arm in results:
                results[arm].append(run(args, seed, use_meds=arm.endswith("MEDS")))
                bar.update()
    metrics = list(results["GRPO"][0])
    print(
        f"\n{args.env_id}: {args.num_problems} problems, {args.group_size} rollouts each, "
        f"{args.iterations} iterations, {args.seeds} seeds (mean ± std over seeds)\n"
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
