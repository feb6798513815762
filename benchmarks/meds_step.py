"""Speed of one MEDS training step: ``MEDSShaper.shape`` against the reference path.

The workload imitates training: ``num_problems`` problems (512), each step visits
``visits_per_step`` of them in turn, 16 rollouts a visit, about half wrong, until every problem has
had ``visits`` visits (100), so each (problem, correct?) bucket grows from ~8 to ~800 rows.
Fingerprints have d = 14 (the last 14 layers of a 28-layer model); each problem has 2-4 error
modes of different weights plus scattered noise, and ``duplicate_share`` (15%) of the rollouts
repeat one of the problem's earlier fingerprints exactly, as a collapsing policy does.

Three ways to do one step are timed on the same data in this process:

* ours: ``MEDSShaper.shape`` (validation, kNN vote, penalty, incremental numba HDBSCAN refits of
  all touched buckets in one parallel call), on every step;
* reference: what the reference code does, per touched bucket an ``hdbscan.HDBSCAN`` refit and per
  penalised rollout one ``sklearn.neighbors.NearestNeighbors(metric="cosine")`` fit + query and a
  majority vote; timed on the checkpoint steps (it is too slow to run on all of them);
* sklearn: ``sklearn.cluster.HDBSCAN`` refits of the same buckets (clustering only).

At every checkpoint our labels are compared with the ``hdbscan`` package's on each touched bucket
(adjusted Rand index and the same noise points), and at the end on every bucket. Where they
differ, the package is refitted with its other algorithms (``generic``, ``prims_kdtree``): exact
duplicate rows create tied merge distances, and on some buckets the package's own algorithms then
disagree with each other.

A second workload, ``--big-step`` (issue 12's warm goal), times one kind of step only: 512
buckets (256 problems, wrong and correct) of 16..900 stored rows each, filled in one call, then
steps that add 8 new rows to every bucket (16 rollouts a problem, 8 wrong); ours against the
reference path on each step, labels compared with the package on every bucket. It also times the
memory's kernel alone (``clustering.buckets.update_buckets``: votes and refits of all buckets,
inputs prepared beforehand), which is what the shaper adds validation and bookkeeping to.

Usage:
    .venv/bin/python benchmarks/meds_step.py                      # default, a few minutes
    .venv/bin/python benchmarks/meds_step.py --visits 20 --num-problems 128   # quick
    .venv/bin/python benchmarks/meds_step.py --big-step           # the 512-bucket step, goal 200x
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import hdbscan
import numpy as np
import tyro
from sklearn.cluster import HDBSCAN as SklearnHDBSCAN
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from meds_gym.meds import MEDSConfig, MEDSShaper

try:
    from meds_gym.clustering.buckets import NO_LENGTHS, NO_LINKS, BucketInput, update_buckets
except ImportError:  # a checkout from before the bucket kernel, measured for comparison
    update_buckets = None


def run_kernel(inputs: list) -> list:
    """``update_buckets`` on ``(rows, n_old, previous update or None, vote)`` per bucket."""
    no_labels = np.zeros(0, dtype=np.int64)

    def prepare(b: int) -> BucketInput:
        rows, n_old, previous, vote = inputs[b]
        if previous is None or len(previous.links) != n_old - 1:
            return BucketInput(rows, n_old, NO_LINKS, NO_LENGTHS, no_labels, False)
        return BucketInput(rows, n_old, previous.links, previous.lengths, previous.labels, vote)

    work = np.array([len(rows) * (len(rows) - n_old or len(rows)) for rows, n_old, _, _ in inputs])
    return update_buckets(
        prepare, work.astype(np.float64) * 14, k=3, smallest_label_wins=True, min_samples=1,
        min_cluster_size=2, leaf=False,
    )  # fmt: skip


@dataclass
class Args:
    """Size and shape of the workload."""

    num_problems: int = 512
    """Problems (each has a wrong and a correct bucket)."""
    visits: int = 100
    """Visits per problem over the run (bucket size ~ 8 x visits)."""
    visits_per_step: int = 64
    """Problems visited per step (batch = visits_per_step x rollouts)."""
    rollouts: int = 16
    """Rollouts per visit."""
    dim: int = 14
    """Fingerprint length."""
    duplicate_share: float = 0.15
    """Share of rollouts that repeat an earlier fingerprint of the same problem exactly."""
    noise_share: float = 0.1
    """Share of rollouts scattered at random (no mode)."""
    checkpoints: tuple[int, ...] = (1, 10, 25, 50, 100)
    """Visit counts (epochs) at whose first step the reference path and sklearn are timed."""
    seed: int = 0
    """Seed of the synthetic workload."""
    final_check: bool = True
    """Compare labels with the hdbscan package on every bucket at the end."""
    dump_dir: str | None = None
    """If set, write the rows of every bucket whose labels differ from the package's there
    (``<problem>-<correct>.npy``, L2-normalised float64), to reproduce the difference."""
    big_step: bool = False
    """Run the 512-bucket step workload instead (see the module docstring)."""
    big_step_repeats: int = 5
    """Steps timed in the 512-bucket workload."""


class Workload:
    """Synthetic fingerprints with modes, noise and exact duplicates, per problem."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        n, d = args.num_problems, args.dim
        self.modes = [self.rng.normal(size=(int(self.rng.integers(2, 5)), d)) for _ in range(n)]
        self.weights = [self.rng.dirichlet(np.ones(len(m)) * 0.7) for m in self.modes]
        self.history: list[list[np.ndarray]] = [[] for _ in range(n)]

    def visit(self, problem: int) -> tuple[np.ndarray, np.ndarray]:
        """Fingerprints (rollouts, d) float32 and correctness (rollouts,) of one visit."""
        a, rng = self.args, self.rng
        feats = np.empty((a.rollouts, a.dim), dtype=np.float32)
        for r in range(a.rollouts):
            u = rng.random()
            past = self.history[problem]
            if u < a.duplicate_share and past:
                feats[r] = past[int(rng.integers(len(past)))]
            elif u < a.duplicate_share + a.noise_share:
                feats[r] = rng.normal(size=a.dim) * 1.5
            else:
                m = rng.choice(len(self.modes[problem]), p=self.weights[problem])
                feats[r] = self.modes[problem][m] + rng.normal(scale=0.12, size=a.dim)
            past.append(feats[r].copy())
        correct = rng.random(a.rollouts) < 0.5
        return feats, correct


def reference_step(rows_before, labels_before, pids, correct, feats, k=3):
    """The reference code's step: per-rollout cosine kNN vote, then per-bucket package refits.

    A one-row bucket is labelled ``[-1]`` (noise), as in the reference code.
    """
    t0 = time.perf_counter()
    penalties = np.zeros(len(pids))
    for i, (pid, ok) in enumerate(zip(pids, correct, strict=True)):
        key = (pid, bool(ok))
        if ok or key not in rows_before:
            continue
        stored, labels = rows_before[key], labels_before[key]
        nn = NearestNeighbors(n_neighbors=min(k, len(stored)), metric="cosine").fit(stored)
        _, idx = nn.kneighbors(feats[i : i + 1])
        # The reference's vote: np.unique sorts the labels, argmax takes the first of a tie.
        values, counts = np.unique(labels[idx[0]], return_counts=True)
        label = values[np.argmax(counts)]
        n = int(np.sum(labels == label))
        penalties[i] = min(0.1 * np.log(n + 1), 0.2)
    t_vote = time.perf_counter() - t0
    after = {}
    for key in dict.fromkeys(zip(pids, correct.tolist(), strict=True)):
        add = feats[
            [j for j, (p, c) in enumerate(zip(pids, correct, strict=True)) if (p, c) == key]
        ]
        add = add / np.linalg.norm(add, axis=1, keepdims=True)
        old = rows_before.get(key)
        after[key] = add if old is None else np.concatenate([old, add])
    t1 = time.perf_counter()
    package_labels = {}
    for key, x in after.items():
        if len(x) < 2:
            package_labels[key] = np.full(len(x), -1)
            continue
        package_labels[key] = (
            hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, cluster_selection_method="eom")
            .fit(x)
            .labels_
        )
    t_refit = time.perf_counter() - t1
    return t_vote + t_refit, t_vote, t_refit, package_labels, after


def sklearn_refits(after):
    t0 = time.perf_counter()
    for x in after.values():
        if len(x) >= 2:
            SklearnHDBSCAN(min_cluster_size=2, min_samples=1, copy=True).fit(x)
    return time.perf_counter() - t0


def same_labels(a, b) -> bool:
    """Same partition and same noise points."""
    a, b = np.asarray(a), np.asarray(b)
    return adjusted_rand_score(a, b) == 1.0 and bool(((a == -1) == (b == -1)).all())


def compare_labels(
    ours: dict, package: dict, rows: dict, dump_dir: str | None = None
) -> tuple[int, int, int]:
    """(buckets equal, buckets different, different ones where the package is ambiguous).

    The package counts as ambiguous on a bucket when its own algorithms (the default Boruvka
    kd-tree, ``generic`` and ``prims_kdtree``) do not all give the same partition there (tied
    merge distances, which exact duplicate rows produce) and ours equals one of them.
    """
    equal = differ = ambiguous = 0
    for key, theirs in package.items():
        mine = ours[key]
        if len(mine) < 2 or same_labels(mine, theirs):
            equal += 1
            continue
        differ += 1
        if dump_dir is not None:
            Path(dump_dir).mkdir(parents=True, exist_ok=True)
            np.save(Path(dump_dir) / f"{key[0]}-{key[1]}.npy", rows[key])
        others = [
            hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, algorithm=algo)
            .fit(rows[key])
            .labels_
            for algo in ("generic", "prims_kdtree")
        ]
        if any(not same_labels(o, theirs) for o in others) and any(
            same_labels(mine, o) for o in others
        ):
            ambiguous += 1
    return equal, differ, ambiguous


def unit(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised in float64, as the memory stores them for clustering."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def big_step(args: Args) -> None:
    """512 buckets of 16..900 rows, then steps of 8 new rows per bucket: ours vs the reference."""
    goal = 200.0
    rng = np.random.default_rng(args.seed)
    n_problems, d = 256, args.dim
    modes = [rng.normal(size=(int(rng.integers(2, 5)), d)) for _ in range(n_problems)]

    def rows(problem: int, count: int) -> np.ndarray:
        centre = modes[problem][rng.integers(0, len(modes[problem]), size=count)]
        out = centre + rng.normal(scale=0.12, size=(count, d))
        noise = rng.random(count) < args.noise_share
        out[noise] = rng.normal(size=(int(noise.sum()), d)) * 1.5
        dup = rng.random(count) < args.duplicate_share
        out[dup] = out[rng.integers(0, count, size=int(dup.sum()))]
        return out.astype(np.float32)

    pids, flags, feats = [], [], []
    for p in range(n_problems):
        for ok in (False, True):
            count = int(rng.integers(16, 901))
            pids += [f"problem-{p}"] * count
            flags.append(np.full(count, ok))
            feats.append(rows(p, count))
    print(
        f"512-bucket step: filling {len(pids)} rows into 512 buckets of 16..900 rows, d={d} ...",
        flush=True,
    )
    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=10**9))
    correct = np.concatenate(flags)
    features = np.concatenate(feats)
    shaper.shape(pids, correct, correct.astype(np.float64), features)
    # The reference keeps its own rows and labels (L2-normalised float64, package labels).
    ref_rows: dict = {}
    for key in dict.fromkeys(zip(pids, correct.tolist(), strict=True)):
        mask = (np.array(pids) == key[0]) & (correct == key[1])
        ref_rows[key] = unit(features[mask])
    ref_labels = {
        k: hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(x).labels_
        for k, x in ref_rows.items()
    }
    ratios: list[float] = []
    kernel_ratios: list[float] = []
    kernel_state: dict = {}
    raw = {  # the rows as the memory stores them (float32, as given), per bucket
        key: features[(np.array(pids) == key[0]) & (correct == key[1])] for key in ref_rows
    }
    for rep in range(args.big_step_repeats + 1):
        pids, flags, feats = [], [], []
        for p in range(n_problems):
            pids += [f"problem-{p}"] * 16
            flags.append(np.arange(16) % 2 == 1)  # 8 wrong, 8 right: 8 new rows per bucket
            feats.append(rows(p, 16))
        correct = np.concatenate(flags)
        features = np.concatenate(feats)
        t0 = time.perf_counter()
        out = shaper.shape(pids, correct, correct.astype(np.float64), features)
        t_ours = time.perf_counter() - t0
        t_ref, t_vote, t_refit, package, after = reference_step(
            ref_rows, ref_labels, pids, correct, features.astype(np.float64)
        )
        ref_rows, ref_labels = after, package
        if rep > 0:
            ratios.append(t_ref / t_ours)
        note = " (first step, not counted)" if rep == 0 else ""
        ours_labels = {k: shaper.memory.bucket(*k).labels for k in package}
        eq, diff, dep = compare_labels(ours_labels, package, after)
        sizes = [len(x) for x in after.values()]
        print(
            f"  step {rep}: buckets {len(sizes)} of {min(sizes)}..{max(sizes)} rows | ours "
            f"{t_ours * 1e3:7.1f} ms | reference {t_ref * 1e3:8.1f} ms (vote {t_vote * 1e3:.0f} + "
            f"refit {t_refit * 1e3:.0f}) | {t_ref / t_ours:6.1f}x | labels equal on "
            f"{eq}/{eq + diff} ({dep} of the rest where the package's own algorithms disagree) | "
            f"mean penalty {out.penalties.mean():.4f}{note}",
            flush=True,
        )
        if update_buckets is None:
            continue
        # The memory's kernel alone on the same buckets (inputs prepared untimed): the votes of
        # the new wrong rows against the stored rows and the incremental refits, from the trees
        # it kept the step before.
        keys = list(after)
        new_rows = {key: features[(np.array(pids) == key[0]) & (correct == key[1])] for key in keys}
        if not kernel_state:  # the kernel keeps its own trees, as the memory does (untimed)
            first = run_kernel([(raw[k], 0, None, False) for k in keys])
            kernel_state.update(zip(keys, first, strict=True))
        inputs = [
            (np.concatenate([raw[k], new_rows[k]]), len(raw[k]), kernel_state[k], not k[1])
            for k in keys
        ]
        t1 = time.perf_counter()
        results = run_kernel(inputs)
        t_kernel = time.perf_counter() - t1
        kernel_equal = sum(
            same_labels(result.labels, package[k]) for k, result in zip(keys, results, strict=True)
        )
        for key, (rows_after, _, _, _), result in zip(keys, inputs, results, strict=True):
            raw[key] = rows_after
            kernel_state[key] = result
        print(
            f"          the memory's kernel alone (update_buckets: vote + refit): "
            f"{t_kernel * 1e3:.1f} ms ({t_ref / t_kernel:.0f}x the reference); labels equal on "
            f"{kernel_equal}/{len(keys)}"
        )
        if rep > 0:
            kernel_ratios.append(t_ref / t_kernel)
    ratio = float(np.median(ratios))
    if kernel_ratios:
        print(
            f"the memory's kernel alone (vote + refit) against the reference, median: "
            f"{float(np.median(kernel_ratios)):.1f}x"
        )
    print(
        f"GOAL 512-bucket step, reference / ours, median of {len(ratios)}: {ratio:.1f}x "
        f"(goal >= {goal:.0f}x) {'MET' if ratio >= goal else 'NOT MET'}"
    )


def main(args: Args) -> None:
    warnings.simplefilter("ignore", FutureWarning)  # sklearn/hdbscan deprecation chatter
    if args.big_step:
        big_step(args)
        return
    work = Workload(args)
    pid_names = [f"problem-{i}" for i in range(args.num_problems)]
    steps_per_epoch = -(-args.num_problems // args.visits_per_step)
    total_steps = steps_per_epoch * args.visits
    print(
        f"MEDS step benchmark: {args.num_problems} problems, {args.visits} visits each, "
        f"{args.visits_per_step} visits x {args.rollouts} rollouts per step "
        f"({args.visits_per_step * args.rollouts} rollouts), d={args.dim}, "
        f"duplicates {args.duplicate_share:.0%}, noise {args.noise_share:.0%}; {total_steps} steps"
    )
    # compile the numba kernels outside the timings
    warm = MEDSShaper(MEDSConfig())
    for _ in range(3):
        x = np.random.default_rng(1).normal(size=(16, args.dim))
        warm.shape(["w"] * 16, [False] * 16, [0.0] * 16, x)

    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=10**9))
    ours_total = 0.0
    rows_table = []
    label_checks = [0, 0, 0]
    order = np.arange(args.num_problems)
    start = time.perf_counter()
    for step in range(total_steps):
        epoch, offset = divmod(step, steps_per_epoch)
        if offset == 0:
            work.rng.shuffle(order)
        visited = order[offset * args.visits_per_step : (offset + 1) * args.visits_per_step]
        pids, flags, feats = [], [], []
        for p in visited:
            f, c = work.visit(int(p))
            pids += [pid_names[p]] * args.rollouts
            flags.append(c)
            feats.append(f)
        correct = np.concatenate(flags)
        features = np.concatenate(feats)
        rewards = correct.astype(np.float64)
        checkpoint = offset == 0 and (epoch + 1) in args.checkpoints
        if checkpoint:
            keys = dict.fromkeys(zip(pids, correct.tolist(), strict=True))
            before_rows = {
                k: unit(shaper.memory.bucket(*k).rows) for k in keys if k in shaper.memory
            }
            before_labels = {k: shaper.memory.bucket(*k).labels.copy() for k in before_rows}
        t0 = time.perf_counter()
        out = shaper.shape(pids, correct, rewards, features)
        t_ours = time.perf_counter() - t0
        ours_total += t_ours
        if checkpoint:
            t_ref, t_vote, t_refit, package, after = reference_step(
                before_rows, before_labels, pids, correct, features.astype(np.float64)
            )
            t_sk = sklearn_refits(after)
            ours_labels = {k: shaper.memory.bucket(*k).labels for k in package}
            eq, diff, dep = compare_labels(ours_labels, package, after, args.dump_dir)
            label_checks = [a + b for a, b in zip(label_checks, (eq, diff, dep), strict=True)]
            sizes = [len(x) for x in after.values()]
            rows_table.append(
                (
                    epoch + 1,
                    int(np.mean(sizes)),
                    max(sizes),
                    t_ours,
                    t_ref,
                    t_vote,
                    t_refit,
                    t_sk,
                    eq,
                    diff,
                    dep,
                )
            )
            print(
                f"  checkpoint visit {epoch + 1:4d}: mean bucket {np.mean(sizes):6.0f} rows | "
                f"ours {t_ours * 1e3:8.1f} ms | reference {t_ref * 1e3:9.1f} ms "
                f"(vote {t_vote * 1e3:.0f} + refit {t_refit * 1e3:.0f}) | sklearn.HDBSCAN refits "
                f"{t_sk * 1e3:9.1f} ms | labels equal on {eq}/{eq + diff} buckets",
                flush=True,
            )
        if (step + 1) % max(1, total_steps // 20) == 0:
            print(
                f"  step {step + 1}/{total_steps}: ours {ours_total:.1f} s so far, "
                f"{shaper.memory.n_rows} rows stored, mean penalty of this step "
                f"{out.penalties.mean():.4f} ({time.perf_counter() - start:.0f} s elapsed)",
                flush=True,
            )

    print("\nPer-step time at the checkpoints (same step, same memory, same process):")
    print(
        f"{'visit':>6} {'mean N':>7} {'max N':>6} {'ours ms':>9} {'ref ms':>10} {'ratio':>7} "
        f"{'sk ms':>10} {'ratio':>7}"
    )
    for v, mean_n, max_n, t_o, t_r, _, _, t_s, *_ in rows_table:
        print(
            f"{v:6d} {mean_n:7d} {max_n:6d} {t_o * 1e3:9.1f} {t_r * 1e3:10.1f} {t_r / t_o:6.1f}x "
            f"{t_s * 1e3:10.1f} {t_s / t_o:6.1f}x"
        )
    if rows_table:
        sum_o = sum(r[3] for r in rows_table)
        sum_r = sum(r[4] for r in rows_table)
        sum_s = sum(r[7] for r in rows_table)
        print(
            f"checkpoint steps summed: ours {sum_o:.3f} s, reference {sum_r:.3f} s "
            f"({sum_r / sum_o:.1f}x, goal >= 30x), sklearn.HDBSCAN refits alone {sum_s:.3f} s "
            f"({sum_s / sum_o:.1f}x)"
        )
    print(
        f"ours over all {total_steps} steps: {ours_total:.2f} s "
        f"({ours_total / total_steps * 1e3:.1f} ms/step mean)"
    )
    print(
        f"labels at checkpoints: equal (ARI 1.0) on {label_checks[0]} buckets, different on "
        f"{label_checks[1]} (of which {label_checks[2]} where the package's own algorithms "
        "disagree and ours equals one of them)"
    )
    if args.final_check:
        keys = shaper.memory.keys()
        print(f"final check against the hdbscan package on all {len(keys)} buckets ...", flush=True)
        package = {}
        rows = {}
        for key in keys:
            rows[key] = unit(shaper.memory.bucket(*key).rows)  # stored as given
            package[key] = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(rows[key]).labels_
        ours_labels = {k: shaper.memory.bucket(*k).labels for k in keys}
        eq, diff, dep = compare_labels(ours_labels, package, rows, args.dump_dir)
        stats = shaper.stats()
        print(
            f"final: labels equal (ARI 1.0) on {eq}/{len(keys)} buckets; different on {diff} (of "
            f"which {dep} where the package's own algorithms disagree and ours equals one of "
            f"them); {stats.rows} rows, "
            f"{stats.clusters} clusters, bucket size mean {stats.mean_bucket_size:.0f} max "
            f"{stats.max_bucket_size}"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
