"""Cost of compiling the clustering kernels, and of loading them from numba's on-disk cache.

Runs two fresh Python processes that share one empty ``NUMBA_CACHE_DIR``: the first compiles every
kernel behind ``hdbscan_labels``, ``knn_vote`` and ``refit_many`` on first call (and writes the
cache), the second loads them from that cache. Prints both first-call times and their ratio.

Run: python benchmarks/numba_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
from meds_gym.clustering import hdbscan_labels, knn_vote, refit_many
t1 = time.perf_counter()
X = np.random.default_rng(0).normal(size=(64, 14))
hdbscan_labels(X, 2, 1)
hdbscan_labels(X, 2, 2)
knn_vote(X, np.zeros(64, dtype=np.int64), X[:4])
refit_many([X, X[:10]], [None, None])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_calls_s": t2 - t1}))
"""


def run_child(cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="meds_numba_cache_") as cache_dir:
        cold = run_child(cache_dir)
        warm = run_child(cache_dir)
    print(f"{'':<28}{'import s':>10}{'first calls s':>15}")
    for name, row in (("cold (empty cache, compile)", cold), ("warm (cache reused)", warm)):
        print(f"{name:<28}{row['import_s']:>10.2f}{row['first_calls_s']:>15.2f}")
    print(
        f"compile / cached first-call ratio: {cold['first_calls_s'] / warm['first_calls_s']:.1f}x"
    )


if __name__ == "__main__":
    main()
