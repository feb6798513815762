"""Compilation cost of MEDS on an empty numba cache, step by step (issue 12).

Every user meets the cold cache once: a fresh install, a CI run, a new node, a numba upgrade. This
benchmark runs a training-like sequence of ``MEDSShaper.shape`` calls that goes from a few small
batches to 512 buckets of hundreds of rows (first visits, revisits, the small-batch and the
large-batch refit paths), and the public clustering functions one by one, each twice in one fresh
process:

* cold: with an empty, private ``NUMBA_CACHE_DIR`` (every kernel compiles on first use);
* warm: the same calls again in the same process (everything compiled).

Cold minus warm is the compilation overhead of each step. A second process then reuses the cache
the first one wrote (what every later run sees) and reports the same difference, which is the cost
of loading the kernels from disk. Import time counts too: the cold process's import minus the
cached process's import.

A third variant starts ``warm_up(background=True)`` at start-up and waits ``--generation-s``
seconds (the first rollouts being generated, CPU idle as with a GPU) before the same run: what is
left of the compilation on the critical path.

Goals (issue 12): compilation overhead <= 10 s in total over the shaper run, and no step after the
second paying more than 0.5 s.

Usage:
    .venv/bin/python benchmarks/cold_start.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/cold_start.py   # compare
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import tyro

TOTAL_GOAL_S = 10.0
STEP_GOAL_S = 0.5

# (problems visited, rollouts per visit): small first steps, then 256 problems (512 buckets) with
# large visits that grow the buckets to hundreds of rows, then ordinary steps of 8 new rows per
# bucket on those buckets.
SHAPER_STEPS: tuple[tuple[int, int], ...] = (
    (4, 16),
    (4, 16),
    (64, 16),
    (256, 16),
    (256, 128),
    (256, 256),
    (256, 256),
    (256, 16),
    (256, 16),
    (256, 16),
)


@dataclass
class Args:
    """Options of the cold-start benchmark."""

    dim: int = 14
    """Fingerprint length."""
    seed: int = 0
    """Seed of the synthetic fingerprints."""
    generation_s: float = 10.0
    """Seconds of rollout generation simulated before the first step in the background variant
    (the CPU is left idle, as while a GPU generates)."""
    child: str = ""
    """Internal: run one measuring process ("shaper", "background" or "functions")."""


def shaper_batches(dim: int, seed: int) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """The batches of the shaper run: (problem ids, correct flags, float32 fingerprints)."""
    rng = np.random.default_rng(seed)
    n_problems = max(p for p, _ in SHAPER_STEPS)
    centres = rng.normal(size=(n_problems, 3, dim))
    batches = []
    for problems, rollouts in SHAPER_STEPS:
        pids: list[str] = []
        feats = []
        for p in range(problems):
            mode = rng.integers(0, 3, size=rollouts)
            rows = centres[p, mode] + rng.normal(scale=0.15, size=(rollouts, dim))
            rows[rng.random(rollouts) < 0.1] = rows[0]  # exact duplicates, as a collapsing policy
            pids += [f"problem-{p}"] * rollouts
            feats.append(rows)
        correct = rng.random(len(pids)) < 0.5
        batches.append((pids, correct, np.concatenate(feats).astype(np.float32)))
    return batches


def run_shaper(batches) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per ``MEDSShaper.shape`` call on a fresh shaper."""
    from meds_gym.meds import MEDSConfig, MEDSShaper

    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=10**9))
    wall, cpu = [], []
    for pids, correct, feats in batches:
        t0, c0 = time.perf_counter(), time.process_time()
        shaper.shape(pids, correct, correct.astype(np.float64), feats)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def function_calls(dim: int, seed: int):
    """(name, thunk) pairs calling the public clustering functions with typical arguments."""
    import inspect

    from meds_gym import clustering as c

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(64, dim))
    small = [rng.normal(size=(n, dim)) for n in (1, 5, 30)]
    large = [rng.normal(size=(300, dim)) for _ in range(64)]
    # A previous tree for the small batch, built inside the timed call: nothing may compile
    # before the first timed call.
    prev_small = [None, small[1][:3], None]
    labels = rng.integers(-1, 3, size=64)
    calls = [
        ("hdbscan_labels min_samples=1", lambda: c.hdbscan_labels(X)),
        ("hdbscan_labels min_samples=2", lambda: c.hdbscan_labels(X, 2, 2)),
        ("hdbscan_labels leaf, single", lambda: c.hdbscan_labels(X, 3, 1, "leaf", True)),
        ("knn_vote", lambda: c.knn_vote(X, labels, X[:8])),
        ("minimum_spanning_tree", lambda: c.minimum_spanning_tree(X)),
        (
            "extend_minimum_spanning_tree",
            lambda: c.extend_minimum_spanning_tree(X, c.minimum_spanning_tree(X[:50]), 50),
        ),
        ("labels_from_mst", lambda: c.labels_from_mst(c.minimum_spanning_tree(X), 64)),
        (
            "refit_many small batch",
            lambda: c.refit_many(
                small, [None if x is None else c.minimum_spanning_tree(x) for x in prev_small]
            ),
        ),
        ("refit_many 64 x 300 rows", lambda: c.refit_many(large, [None] * len(large))),
        ("refit_many min_samples=2", lambda: c.refit_many(large, [None] * 64, min_samples=2)),
    ]
    if "tie_break" in inspect.signature(c.knn_vote).parameters:  # absent before issue 8
        calls.insert(
            4, ("knn_vote nearest", lambda: c.knn_vote(X, labels, X[:8], tie_break="nearest"))
        )
    return calls


def child(args: Args) -> None:
    t0 = time.perf_counter()
    import meds_gym.clustering
    import meds_gym.meds  # noqa: F401

    import_s = time.perf_counter() - t0
    result: dict[str, object] = {"import_s": import_s, "module": meds_gym.clustering.__file__}
    if args.child in ("shaper", "background"):
        batches = shaper_batches(args.dim, args.seed)
        if args.child == "background":
            # What a training script can do: start the compilation at start-up, then generate
            # the first rollouts while it runs.
            if hasattr(meds_gym.clustering, "warm_up"):  # absent before issue 12
                meds_gym.clustering.warm_up(background=True)
            time.sleep(args.generation_s)
        result["cold"], result["cold_cpu"] = run_shaper(batches)
        result["warm"], result["warm_cpu"] = run_shaper(batches)
    else:
        calls = function_calls(args.dim, args.seed)
        result["names"] = [name for name, _ in calls]
        for phase in ("cold", "warm"):
            wall, cpu = [], []
            for _, call in calls:
                t1, c1 = time.perf_counter(), time.process_time()
                call()
                wall.append(time.perf_counter() - t1)
                cpu.append(time.process_time() - c1)
            result[phase], result[f"{phase}_cpu"] = wall, cpu
    print(json.dumps(result))


def run_child(args: Args, role: str, cache_dir: str, workdir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    command = [sys.executable, os.path.abspath(__file__), "--child", role]
    command += ["--dim", str(args.dim), "--seed", str(args.seed)]
    command += ["--generation-s", str(args.generation_s)]
    # Run outside the checkout so that PYTHONPATH decides which meds_gym is measured.
    out = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child {role} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(title: str, names: list[str], fresh: dict, cached: dict) -> tuple[float, float]:
    """Print one table; return (total overhead, largest overhead after the second call).

    Wall-clock columns are what a user waits; the CPU column (this process's CPU time, cold
    minus warm) is the compilation work itself, which other load on the machine does not
    inflate.
    """
    print(f"\n{title}")
    print(
        f"{'':<34}{'cold s':>8}{'warm s':>8}{'compile s':>10}{'CPU s':>7}"
        f"{'cached s':>10}{'load s':>8}"
    )
    import_cost = fresh["import_s"] - cached["import_s"]
    print(f"{'import':<34}{fresh['import_s']:>8.2f}{'':>8}{import_cost:>10.2f}{'':>7}", end="")
    print(f"{cached['import_s']:>10.2f}")
    overheads, cpu_overheads = [], []
    for i, name in enumerate(names):
        cold, warm = fresh["cold"][i], fresh["warm"][i]
        cpu = fresh["cold_cpu"][i] - fresh["warm_cpu"][i]
        load = cached["cold"][i] - cached["warm"][i]
        overheads.append(cold - warm)
        cpu_overheads.append(cpu)
        print(
            f"{name:<34}{cold:>8.2f}{warm:>8.3f}{cold - warm:>10.2f}{cpu:>7.2f}"
            f"{cached['cold'][i]:>10.3f}{load:>8.3f}"
        )
    total = import_cost + sum(overheads)
    late = max(overheads[2:], default=0.0)
    load_total = sum(c - w for c, w in zip(cached["cold"], cached["warm"], strict=True))
    print(f"compilation overhead in total (import included): {total:.2f} s wall, ", end="")
    print(f"{sum(cpu_overheads):.2f} s CPU (calls only)")
    print(f"largest compilation overhead after the second call: {late:.2f} s")
    print(f"cost of loading from the cache written by the first run: {load_total:.2f} s")
    return total, late


def main(args: Args) -> None:
    if args.child:
        child(args)
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="meds_cold_") as tmp:
        for role in ("shaper", "functions", "background"):
            cache_dir = os.path.join(tmp, f"cache-{role}")
            os.makedirs(cache_dir)
            fresh = run_child(args, role, cache_dir, tmp)
            cached = run_child(args, role, cache_dir, tmp)
            results[role] = (fresh, cached)
    fresh, cached = results["shaper"]
    print(f"meds_gym.clustering from {fresh['module']}")
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    steps = [f"shape {p} problems x {r} rollouts" for p, r in SHAPER_STEPS]
    total, late = report("MEDSShaper.shape run (fresh shaper, empty cache)", steps, fresh, cached)
    fresh_f, cached_f = results["functions"]
    report("public clustering functions (empty cache)", fresh_f["names"], fresh_f, cached_f)
    fresh_b, cached_b = results["background"]
    hidden, _ = report(
        f"MEDSShaper.shape run after warm_up(background=True) and {args.generation_s:.0f} s of "
        "rollout generation (empty cache)",
        steps,
        fresh_b,
        cached_b,
    )
    print(
        f"\nGOAL compilation overhead of the shaper run: {total:.2f} s (goal <= {TOTAL_GOAL_S} s) "
        f"{'MET' if total <= TOTAL_GOAL_S else 'NOT MET'}"
    )
    print(
        f"GOAL largest compilation of a step after the second: {late:.2f} s "
        f"(goal <= {STEP_GOAL_S} s) {'MET' if late <= STEP_GOAL_S else 'NOT MET'}"
    )
    print(
        f"with warm_up(background=True) during {args.generation_s:.0f} s of generation, the "
        f"compilation left on the critical path: {hidden:.2f} s "
        f"(goal <= {TOTAL_GOAL_S} s) {'MET' if hidden <= TOTAL_GOAL_S else 'NOT MET'}"
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
