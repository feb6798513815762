"""PPO (stable-baselines3) on TrapGrid or FrozenLake, with and without MEDS reward shaping.

TrapGrid (:class:`meds_gym.envs.trap_grid.TrapGridEnv`) ends every episode in success or in one
of four failure modes: lava, pit, a decoy "wrong exit" near the start that pays a little, or a
timeout. A policy trained with plain PPO tends to settle on the decoy: a recurring failure mode.
The MEDS arm wraps the same vectorised env in :class:`meds_gym.integrations.sb3.MEDSVecEnvWrapper`:
each failed episode is fingerprinted (by default its terminal observation), clustered with the
past failures of its layout, and its terminal reward lowered by ``min(alpha*log(n+1), beta)``
where n is the size of its cluster (docs/design.md section 2).

Deviation from the paper's setting, and why: a grid run produces thousands of failures per
layout, not 16 rollouts per prompt, so with the paper's alpha=0.1, beta=0.2 every recurring mode
hits the cap within a few episodes and the penalty becomes a flat cost of failing. The defaults
here keep a bounded, recent memory per layout (``bucket_capacity``) and a slower slope, so that the
penalty still grows with how often a mode recurs. Change them on the command line.

``--env frozenlake`` runs the same comparison on Gymnasium's ``FrozenLake-v1`` (4x4, slippery):
an episode succeeds when it pays a reward (``is_correct=lambda r, info: r > 0``), and fails in a
hole (each hole is one failure mode) or by timing out; the fingerprint is the terminal state
(one-hot), and all episodes share one MEDS bucket (one map, one "problem").

Both arms use the same seeds, the same budget and the same hyper-parameters. After training, each
policy is evaluated (actions sampled from the policy, on the same layouts and episode seeds) and
the table gives, as mean +- std over seeds: the success rate, each failure mode's share of the
failures, and the entropy (bits) of the failure-mode distribution (higher = more diverse
failures).

Run: python examples/sb3_meds.py --help
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numba
import numpy as np
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from tqdm import tqdm

from meds_gym.envs.trap_grid import FAILURE_MODES, OUTCOMES, TrapGridEnv, failure_mode_counts
from meds_gym.integrations.features import policy_action_features, terminal_state_features
from meds_gym.integrations.sb3 import MEDSLoggerCallback, MEDSVecEnvWrapper
from meds_gym.meds import MEDSConfig, Trajectory


@dataclass
class Args:
    """Command-line arguments."""

    env: Literal["trapgrid", "frozenlake"] = "trapgrid"
    """The environment: TrapGrid, or Gymnasium's FrozenLake-v1 (4x4, slippery)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds; every arm runs each of them."""
    total_timesteps: int = 30_000
    """Environment steps per run."""
    n_envs: int = 8
    """Parallel sub-environments (one shared MEDS memory)."""
    n_steps: int = 128
    """PPO rollout length per sub-environment."""
    batch_size: int = 256
    """PPO minibatch size."""
    n_epochs: int = 4
    """PPO epochs per rollout."""
    ent_coef: float = 0.01
    """PPO entropy bonus."""
    grid_size: int = 7
    """TrapGrid: side of the grid."""
    num_layouts: int = 4
    """TrapGrid: layouts in the pool; each is one MEDS bucket (its "problem")."""
    layout_seed: int = 0
    """TrapGrid: seed of the layout pool (the same for every run)."""
    alpha: float = 0.05
    """MEDS penalty slope."""
    beta: float = 0.25
    """MEDS penalty cap."""
    bucket_capacity: int = 256
    """Newest fingerprints kept per bucket (0 = keep all, as in the paper)."""
    features: str = "terminal"
    """Fingerprint: "terminal" (terminal observation) or "policy" (the policy's action
    probabilities along the episode; one extra forward pass per finished episode)."""
    eval_episodes: int = 200
    """Evaluation episodes per run."""
    threads: int = 1
    """CPU threads for torch and for the numba clustering kernels."""
    log_dir: str | None = None
    """If set, SB3's scalars (with ``meds/*`` for the MEDS arm) go to CSV files under it."""


def make_env(args: Args) -> gym.Env[Any, Any]:
    if args.env == "frozenlake":
        return gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    return TrapGridEnv(
        size=args.grid_size, num_layouts=args.num_layouts, layout_seed=args.layout_seed
    )


def frozenlake_holes() -> tuple[int, ...]:
    """The states of FrozenLake's 4x4 map that are holes."""
    desc = gym.make("FrozenLake-v1", map_name="4x4").unwrapped.desc  # type: ignore[attr-defined]
    return tuple(int(i) for i in np.flatnonzero(np.asarray(desc).reshape(-1) == b"H"))


def outcomes_of(args: Args) -> tuple[str, ...]:
    """Every outcome of an episode: success first, then the env's failure modes."""
    if args.env == "frozenlake":
        return ("success", *(f"hole_{s}" for s in frozenlake_holes()), "timeout")
    return OUTCOMES


def episode_outcome(args: Args, obs: Any, reward: float, truncated: bool, info: dict) -> str:
    """The outcome of a finished episode (TrapGrid names it in ``info["failure_mode"]``)."""
    if args.env == "trapgrid":
        return str(info["failure_mode"])
    if reward > 0:
        return "success"
    return "timeout" if truncated else f"hole_{int(obs)}"


def meds_wrapper_options(args: Args) -> dict[str, Callable[..., Any]]:
    """How the MEDS wrapper reads success and the bucket of an episode on this env."""
    if args.env == "frozenlake":  # one map: every episode in one bucket; success pays reward 1
        return {"is_correct": lambda r, info: r > 0}
    return {"problem_id_fn": lambda info: info["problem_id"]}


def train(args: Args, seed: int, use_meds: bool) -> PPO:
    venv = make_vec_env(lambda: make_env(args), n_envs=args.n_envs, seed=seed)
    model_env = venv
    if use_meds:
        config = MEDSConfig(
            alpha=args.alpha,
            beta=args.beta,
            bucket_capacity=args.bucket_capacity or None,
        )
        # The policy feature needs the model, which needs the env: bind it after construction.
        holder: dict[str, PPO] = {}

        def policy_features(trajectory: Trajectory) -> np.ndarray:
            return policy_action_features(holder["model"])(trajectory)

        if args.features == "policy":
            feature_fn = policy_features
        else:
            feature_fn = terminal_state_features(venv.observation_space)
        model_env = MEDSVecEnvWrapper(venv, feature_fn, config, **meds_wrapper_options(args))
    model = PPO(
        "MlpPolicy",
        model_env,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        ent_coef=args.ent_coef,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    if use_meds:
        holder["model"] = model
    if args.log_dir is not None:
        arm = "ppo_meds" if use_meds else "ppo"
        model.set_logger(configure(f"{args.log_dir}/{arm}_seed{seed}", ["csv"]))
    model.learn(args.total_timesteps, callback=MEDSLoggerCallback() if use_meds else None)
    return model


def evaluate(args: Args, model: PPO, seed: int) -> np.ndarray:
    """Outcome counts (order of :func:`outcomes_of`) over eval_episodes sampled episodes."""
    env = make_env(args)
    rng = np.random.default_rng(10_000 + seed)
    torch.manual_seed(10_000 + seed)
    modes = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)) if episode == 0 else None)
        while True:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, terminated, truncated, info = env.step(int(action))
            if terminated or truncated:
                modes.append(episode_outcome(args, obs, float(reward), truncated, info))
                break
    if args.env == "trapgrid":
        return failure_mode_counts(modes)
    outcomes = outcomes_of(args)
    return np.array([modes.count(o) for o in outcomes], dtype=np.int64)


def failure_entropy_bits(counts: np.ndarray) -> float:
    failures = counts[1:].astype(np.float64)
    if failures.sum() == 0:
        return 0.0
    p = failures[failures > 0] / failures.sum()
    return float(-(p * np.log2(p)).sum())


def summary_rows(
    counts_per_seed: list[np.ndarray], failure_modes: tuple[str, ...] = FAILURE_MODES
) -> dict[str, tuple[float, float]]:
    rows: dict[str, list[float]] = {"success rate": []}
    for mode in failure_modes:
        rows[f"share of failures: {mode}"] = []
    rows["failure-mode entropy (bits)"] = []
    for counts in counts_per_seed:
        total = counts.sum()
        failures = counts[1:].sum()
        rows["success rate"].append(counts[0] / total)
        for k, mode in enumerate(failure_modes, start=1):
            share = counts[k] / failures if failures else float("nan")
            rows[f"share of failures: {mode}"].append(share)
        rows["failure-mode entropy (bits)"].append(failure_entropy_bits(counts))
    return {name: (float(np.nanmean(v)), float(np.nanstd(v))) for name, v in rows.items()}


def main(args: Args) -> dict[str, dict[str, tuple[float, float]]]:
    if args.features not in ("terminal", "policy"):
        raise SystemExit(f"--features must be 'terminal' or 'policy', got {args.features!r}")
    # One thread each: on a small CPU, idle numba workers spinning next to torch slow both down.
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    outcomes = outcomes_of(args)
    results: dict[str, list[np.ndarray]] = {"PPO": [], "PPO+MEDS": []}
    runs = [(arm, seed) for seed in args.seeds for arm in results]
    start = time.perf_counter()
    for arm, seed in tqdm(runs, desc="runs", unit="run"):
        model = train(args, seed, use_meds=arm == "PPO+MEDS")
        counts = evaluate(args, model, seed)
        results[arm].append(counts)
        shares = ", ".join(f"{o}={c}" for o, c in zip(outcomes, counts, strict=True))
        tqdm.write(f"{arm:9s} seed {seed}: {shares}")
    elapsed = time.perf_counter() - start

    table = {arm: summary_rows(counts, outcomes[1:]) for arm, counts in results.items()}
    where = (
        "FrozenLake-v1 4x4 (slippery)"
        if args.env == "frozenlake"
        else f"TrapGrid {args.grid_size}x{args.grid_size}, {args.num_layouts} layouts"
    )
    print(
        f"\n{where}, "
        f"{len(args.seeds)} seeds x {args.total_timesteps} steps per arm, "
        f"{args.eval_episodes} sampled eval episodes per run; MEDS alpha={args.alpha}, "
        f"beta={args.beta}, bucket_capacity={args.bucket_capacity}, features={args.features}"
    )
    print(f"{'metric (mean +- std over seeds)':34s} {'PPO':>17s} {'PPO+MEDS':>17s}")
    for name in table["PPO"]:
        cells = [f"{table[arm][name][0]:.3f} +- {table[arm][name][1]:.3f}" for arm in table]
        print(f"{name:34s} {cells[0]:>17s} {cells[1]:>17s}")
    print(f"wall time: {elapsed:.0f} s")
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
