"""Single-bucket HDBSCAN speed: meds_gym.clustering against the hdbscan package and scikit-learn.

For N = 16, 32, ..., 4096 rows of d = 14 (blobs, about 20% exact duplicate rows, rows
L2-normalised as MEDS stores fingerprints), it times, in this one process:

- ours: ``hdbscan_labels(X, min_cluster_size=2, min_samples=1)`` after a warm-up call;
- package: ``hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(X)`` (the reference);
- sklearn: ``sklearn.cluster.HDBSCAN(min_cluster_size=2, min_samples=2).fit(X)`` (scikit-learn
  counts the row itself in ``min_samples``, so 2 there is the package's 1);
- floor: numpy forming the N x N Euclidean distance matrix (BLAS Gram matrix), the least work an
  exact dense method does;

each as the best of several repeats, and checks that our partition equals the package's. A second
table times one MEDS step on a bucket of N rows that grows by 16 new rows: a full refit against
``refit_many`` reusing the previous tree (``extend_minimum_spanning_tree``), and checks that both
give the same labels.

With ``--parity-buckets N`` it instead measures partition parity with the reference's exact call,
``hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, metric="euclidean")``, whose defaults are
``algorithm="best"`` and ``approx_min_span_tree=True`` (below 61 dimensions a Boruvka tree that
may stop before the exact minimum spanning tree). Over N random buckets shaped like MEDS's
(L2-normalised rows, 2 to 300 of them, d = 2 to 14, blobs, exact duplicates and near-duplicates)
it counts the buckets whose partition (noise exactly, clusters up to renumbering) differs from
ours, with ``approx_min_span_tree`` True and False.

Run: python benchmarks/clustering_scaling.py [--max-n 4096] [--seed 0] [--parity-buckets N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def make_bucket(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    n_blobs = max(1, n // 32)
    centers = rng.normal(size=(n_blobs, d)) * 2.0
    X = centers[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, d)) * 0.5
    n_dup = n // 5
    X[rng.integers(0, n, n_dup)] = X[rng.integers(0, n, n_dup)]
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def parity_bucket(rng: np.random.Generator) -> np.ndarray:
    """One bucket shaped like MEDS's: 2..300 L2-normalised rows of d = 2..14 in a few blobs.

    Up to 40% of the rows are exact copies of others (a collapsing policy repeats fingerprints)
    and up to 20% near-copies (another row plus noise of scale 1e-7 to 1e-4).
    """
    n = int(rng.integers(2, 301))
    d = int(rng.integers(2, 15))
    n_blobs = int(rng.integers(1, max(2, n // 16) + 1))
    centers = rng.normal(size=(n_blobs, d)) * 2.0
    X = centers[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, d)) * rng.uniform(0.1, 1.0)
    n_dup = int(round(rng.choice([0.0, 0.1, 0.2, 0.4]) * n))
    X[rng.integers(0, n, n_dup)] = X[rng.integers(0, n, n_dup)]
    n_near = int(round(rng.choice([0.0, 0.1, 0.2]) * n))
    near = rng.integers(0, n, n_near)
    X[rng.integers(0, n, n_near)] = X[near] + rng.normal(size=(n_near, d)) * 10.0 ** rng.uniform(
        -7, -4
    )
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def parity(buckets: int, seed: int) -> None:
    """Counts the buckets whose partition differs from the reference call's, approximate or not."""
    import hdbscan

    from meds_gym.clustering import hdbscan_labels

    rng = np.random.default_rng(seed)
    differ = {True: 0, False: 0}
    approx_vs_exact = 0
    for _ in range(buckets):
        X = parity_bucket(rng)
        ours = hdbscan_labels(X, min_cluster_size=2, min_samples=1)
        package = {
            approx: hdbscan.HDBSCAN(
                min_cluster_size=2, min_samples=1, metric="euclidean", approx_min_span_tree=approx
            )
            .fit(X)
            .labels_
            for approx in (True, False)
        }
        for approx, labels in package.items():
            differ[approx] += not same_partition(ours, labels)
        approx_vs_exact += not same_partition(package[True], package[False])
    print(f"{buckets} buckets (seed {seed}), partitions that differ from ours:")
    print(f"  approx_min_span_tree=True (the reference's call): {differ[True]}")
    print(f"  approx_min_span_tree=False: {differ[False]}")
    print(f"  the package's two settings from each other: {approx_vs_exact}")


def best_time(fn, budget_s: float = 0.5, min_repeats: int = 3, max_repeats: int = 50) -> float:
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (
        len(times) < min_repeats or time.perf_counter() - start < budget_s
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def distance_matrix(X: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", X, X)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (X @ X.T), 0.0))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a == -1, b == -1):
        return False
    pairs = set(zip(a[a != -1].tolist(), b[b != -1].tolist(), strict=True))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parity-buckets",
        type=int,
        default=0,
        help="measure partition parity with the reference call on this many buckets instead",
    )
    args = parser.parse_args()
    if args.parity_buckets:
        warnings.filterwarnings("ignore")
        parity(args.parity_buckets, args.seed)
        return

    import hdbscan
    from sklearn.cluster import HDBSCAN as SklearnHDBSCAN

    from meds_gym.clustering import hdbscan_labels, minimum_spanning_tree, refit_many

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(args.seed)
    hdbscan_labels(make_bucket(64, 14, rng))  # compile / load the kernels

    header = (
        f"{'N':>5} {'ours ms':>9} {'package ms':>11} {'sklearn ms':>11} {'floor ms':>9} "
        f"{'pkg/ours':>9} {'skl/ours':>9} {'ours/floor':>10} {'same as package':>16}"
    )
    print(header)
    print("-" * len(header))
    n = 16
    while n <= args.max_n:
        X = make_bucket(n, 14, rng)
        ours = hdbscan_labels(X)
        package = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(X).labels_
        t_ours = best_time(lambda X=X: hdbscan_labels(X))
        t_pkg = best_time(lambda X=X: hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(X))
        t_skl = best_time(lambda X=X: SklearnHDBSCAN(min_cluster_size=2, min_samples=2).fit(X))
        t_floor = best_time(lambda X=X: distance_matrix(X))
        print(
            f"{n:>5} {t_ours * 1e3:>9.3f} {t_pkg * 1e3:>11.3f} {t_skl * 1e3:>11.3f} "
            f"{t_floor * 1e3:>9.3f} {t_pkg / t_ours:>9.1f} {t_skl / t_ours:>9.1f} "
            f"{t_ours / t_floor:>10.2f} {'yes' if same_partition(ours, package) else 'NO':>16}"
        )
        n *= 2

    print()
    header = f"{'N':>5} {'full refit ms':>14} {'incremental ms':>15} {'full/incr':>10} {'same':>5}"
    print(header)
    print("-" * len(header))
    n = 64
    while n <= args.max_n:
        X = make_bucket(n, 14, rng)
        previous = minimum_spanning_tree(X[: n - 16])
        full = hdbscan_labels(X)
        incremental = refit_many([X], [previous])[0][0]
        t_full = best_time(lambda X=X: refit_many([X], [None]))
        t_incr = best_time(lambda X=X, p=previous: refit_many([X], [p]))
        same = "yes" if np.array_equal(full, incremental) else "NO"
        print(
            f"{n:>5} {t_full * 1e3:>14.3f} {t_incr * 1e3:>15.3f} {t_full / t_incr:>10.1f} {same:>5}"
        )
        n *= 2


if __name__ == "__main__":
    main()
