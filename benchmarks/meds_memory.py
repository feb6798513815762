"""MEDS at a million stored fingerprints: resident memory, stats(), a step, save and load.

Grows one shaper through its public ``shape`` call to ``--rows`` fingerprints of dimension
``--dim`` spread over ``--buckets`` buckets (every step touches 512 buckets with 8 new rows each,
as a 512-prompt training step would), then measures, against the goals of the reliability work:

* resident memory growth (RSS, psutil) within 2x the raw float32 size of the fingerprints;
* ``stats()`` under 100 ms (it is cached per bucket; the first call after growing computes all);
* the time of one more 512-bucket step at that size;
* save and load times and the file size (the file holds the rows only; load refits every bucket);
* many one-row buckets of wide fingerprints (``--one-row-buckets`` of ``--one-row-dim``): resident
  memory growth within 3x the raw float32 size, so per-bucket overhead does not dominate.

Run: ``python -m benchmarks.meds_memory`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import psutil
import tyro
from tqdm import tqdm

from meds_gym.meds import MEDSConfig, MEDSShaper


@dataclass
class Args:
    """Size of the memory to grow."""

    rows: int = 1_000_000
    """Fingerprints to store."""
    dim: int = 14
    """Fingerprint length (14: the last half of a 28-layer model)."""
    buckets: int = 10_000
    """Buckets (problem, correct?) they are spread over."""
    per_step: int = 512
    """Buckets touched by one step."""
    rows_per_bucket_step: int = 8
    """New rows per touched bucket per step."""
    seed: int = 0
    one_row_buckets: int = 200_000
    """Second part: this many buckets holding one fingerprint each (0 skips it)."""
    one_row_dim: int = 128
    """Fingerprint length of the second part."""


def rss() -> int:
    gc.collect()
    return int(psutil.Process(os.getpid()).memory_info().rss)


def main(args: Args) -> None:
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.buckets, 3, args.dim)).astype(np.float32)
    shaper = MEDSShaper(MEDSConfig())
    # Compile every path (one bucket, and a full 512-bucket step, which takes the parallel path)
    # on a throwaway shaper first, so that numba's compiled code is not counted as memory.
    warm = MEDSShaper(MEDSConfig())
    for size in (1, args.per_step):
        n = size * args.rows_per_bucket_step
        pids = [f"w{i // args.rows_per_bucket_step}" for i in range(n)]
        for _ in range(2):
            warm.shape(pids, np.zeros(n, bool), np.zeros(n), rng.normal(size=(n, args.dim)))
    del warm
    before = rss()
    step_rows = args.per_step * args.rows_per_bucket_step
    steps = args.rows // step_rows
    order = np.arange(args.buckets)
    cursor = args.buckets
    for _ in tqdm(range(steps), desc="growing the memory", unit="step"):
        if cursor + args.per_step > args.buckets:
            rng.shuffle(order)
            cursor = 0
        touched = order[cursor : cursor + args.per_step]
        cursor += args.per_step
        which = np.repeat(touched, args.rows_per_bucket_step)
        modes = rng.integers(3, size=which.size)
        feats = centres[which, modes] + rng.normal(scale=0.1, size=(which.size, args.dim))
        pids = [f"problem-{b}" for b in which.tolist()]
        shaper.shape(pids, np.zeros(which.size, bool), np.zeros(which.size), feats)
    stored = shaper.memory.n_rows
    grown = rss() - before
    raw = stored * args.dim * 4
    print(
        f"stored {stored:,} fingerprints of dimension {args.dim} in {len(shaper.memory):,} buckets"
    )
    print(
        f"RSS growth {grown / 2**20:.1f} MiB = {grown / raw:.2f}x the raw float32 size "
        f"({raw / 2**20:.1f} MiB); goal <= 2x: {'met' if grown <= 2 * raw else 'NOT met'}"
    )

    t0 = time.perf_counter()
    shaper.stats()
    first = time.perf_counter() - t0
    touched = rng.choice(args.buckets, size=args.per_step, replace=False)
    which = np.repeat(touched, args.rows_per_bucket_step)
    feats = centres[which, rng.integers(3, size=which.size)]
    feats = feats + rng.normal(scale=0.1, size=(which.size, args.dim))
    pids = [f"problem-{b}" for b in which.tolist()]
    t0 = time.perf_counter()
    shaper.shape(pids, np.zeros(which.size, bool), np.zeros(which.size), feats)
    step = time.perf_counter() - t0
    t0 = time.perf_counter()
    shaper.stats()
    again = time.perf_counter() - t0
    print(
        f"stats(): {first * 1e3:.0f} ms on the first call after growing, {again * 1e3:.0f} ms "
        f"after a step; goal < 100 ms: {'met' if again < 0.1 else 'NOT met'}"
    )
    print(f"one {args.per_step}-bucket step ({which.size} rows) at this size: {step * 1e3:.0f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "meds.npz")
        t0 = time.perf_counter()
        shaper.save(path)
        saved = time.perf_counter() - t0
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        loaded = MEDSShaper.load(path)
        load = time.perf_counter() - t0
    assert loaded.memory.n_rows == shaper.memory.n_rows
    print(
        f"save {saved:.2f} s ({size / 2**20:.1f} MiB file); load {load:.2f} s (rows checked, every "
        "bucket refitted)"
    )


def one_row_buckets(args: Args) -> None:
    """Resident memory of many buckets of one wide fingerprint each."""
    n, dim = args.one_row_buckets, args.one_row_dim
    rows = np.random.default_rng(args.seed).normal(size=(n, dim)).astype(np.float32)
    pids = [f"problem-{i}" for i in range(n)]
    shaper = MEDSShaper(MEDSConfig())
    shaper.shape(["warm"], [False], [0.0], rows[:1])  # compile outside the measurement
    before = rss()
    step = 20_000
    for start in tqdm(range(0, n, step), desc="one-row buckets", unit="step"):
        end = min(start + step, n)
        shaper.shape(pids[start:end], np.zeros(end - start, bool), np.zeros(end - start),
                     rows[start:end])  # fmt: skip
    grown = rss() - before
    print(
        f"{n:,} one-row buckets of dimension {dim}: RSS growth {grown / 2**20:.1f} MiB = "
        f"{grown / rows.nbytes:.2f}x the raw float32 size ({rows.nbytes / 2**20:.1f} MiB); "
        f"goal <= 3x: {'met' if grown <= 3 * rows.nbytes else 'NOT met'}"
    )


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    main(cli_args)
    if cli_args.one_row_buckets:
        one_row_buckets(cli_args)
