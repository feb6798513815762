"""The error memory's incremental bookkeeping: appended rows, refits and votes stay exact.

The memory appends new rows behind each bucket's stored rows (in spare room it keeps per bucket),
refits with the trusted batched entry point, and votes with the kNN kernel directly. The oracles
are the public, validating functions run from scratch on the bucket's (normalised) rows.
"""

from __future__ import annotations

import numpy as np
import pytest

import meds_gym.meds.memory as memory_module
from meds_gym.clustering import hdbscan_labels, knn_vote, minimum_spanning_tree
from meds_gym.clustering.knn import unit_rows  # the normalisation the memory's kernels apply
from meds_gym.meds import MEDSConfig, MEDSShaper


@pytest.fixture(autouse=True)
def keep_every_tree(monkeypatch):
    """Keep the spanning tree of every bucket, however small, so that the incremental refit
    (which only buckets of TREE_MIN_ROWS rows or more use) is exercised by these small cases."""
    monkeypatch.setattr(memory_module, "TREE_MIN_ROWS", 0)


def test_small_buckets_keep_no_tree_and_still_refit_exactly(monkeypatch):
    monkeypatch.setattr(memory_module, "TREE_MIN_ROWS", 12)
    memory = Memory(MEDSConfig())
    for pids, flags, rows in batches(7, steps=30, problems=2):
        memory.add(pids, flags, rows)
        for key in memory.keys():
            bucket = memory.bucket(*key)
            assert bucket.mst.shape == ((len(bucket) - 1, 3) if len(bucket) >= 12 else (0, 3))
            np.testing.assert_array_equal(bucket.labels, hdbscan_labels(unit_rows(bucket.rows)))
    assert max(len(memory.bucket(*key)) for key in memory.keys()) > 24


def stored(rows: np.ndarray) -> np.ndarray:
    """The rows as the memory stores them: float32, as given."""
    return np.asarray(rows, dtype=np.float32)


class Memory:
    """A shaper's memory, grown through the public shape() call."""

    def __init__(self, config: MEDSConfig) -> None:
        self.shaper = MEDSShaper(config)

    def add(self, pids, flags, rows) -> None:
        self.shaper.shape(pids, np.asarray(flags), np.zeros(len(pids)), rows)

    def __getattr__(self, name):
        return getattr(self.shaper.memory, name)

    def __contains__(self, key) -> bool:
        return key in self.shaper.memory


def batches(seed: int, steps: int, problems: int = 3, per_step: int = 6, dim: int = 5):
    """(problem ids, correct flags, rows) per step, with modes and exact repeats."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(problems, 3, dim))
    seen: list[np.ndarray] = []
    for _ in range(steps):
        pids, flags, rows = [], [], []
        for _ in range(per_step):
            p = int(rng.integers(problems))
            if seen and rng.random() < 0.2:
                row = seen[int(rng.integers(len(seen)))]
            else:
                row = centres[p, int(rng.integers(3))] + rng.normal(scale=0.1, size=dim)
            seen.append(row)
            pids.append(f"p{p}")
            flags.append(bool(rng.random() < 0.4))
            rows.append(row)
        yield pids, np.array(flags), np.array(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_memory_buckets_equal_a_fresh_fit_after_every_step(seed):
    memory = Memory(MEDSConfig())
    appended: dict[tuple[str, bool], list[np.ndarray]] = {}
    for pids, flags, rows in batches(seed, steps=40):
        memory.add(pids, flags, rows)
        for pid, flag, row in zip(pids, flags.tolist(), stored(rows), strict=True):
            appended.setdefault((pid, flag), []).append(row)
        for key, kept in appended.items():
            bucket = memory.bucket(*key)
            np.testing.assert_array_equal(bucket.rows, np.array(kept))
            np.testing.assert_array_equal(bucket.labels, hdbscan_labels(unit_rows(bucket.rows)))
            np.testing.assert_array_equal(bucket.mst, minimum_spanning_tree(unit_rows(bucket.rows)))


def test_memory_earlier_bucket_views_never_change():
    memory = Memory(MEDSConfig())
    held = []
    for pids, flags, rows in batches(2, steps=30, problems=1):
        memory.add(pids, flags, rows)
        bucket = memory.bucket("p0", False) if ("p0", False) in memory else None
        if bucket is not None:
            held.append((bucket, bucket.rows.copy(), bucket.labels.copy(), bucket.mst.copy()))
    assert len(held) > 5
    for bucket, rows, labels, mst in held:
        np.testing.assert_array_equal(bucket.rows, rows)
        np.testing.assert_array_equal(bucket.labels, labels)
        np.testing.assert_array_equal(bucket.mst, mst)
        assert not bucket.rows.flags.writeable and not bucket.labels.flags.writeable


def test_memory_failed_refit_leaves_memory_unchanged_and_next_add_is_exact(monkeypatch):
    memory = Memory(MEDSConfig())
    steps = list(batches(3, steps=12, problems=2))
    for pids, flags, rows in steps[:10]:
        memory.add(pids, flags, rows)
    before = {k: tuple(a.copy() for a in (b.rows, b.labels, b.mst)) for k, b in
              ((k, memory.bucket(*k)) for k in memory.keys())}  # fmt: skip

    def broken(*args, **kwargs):
        raise RuntimeError("refit failed")

    with monkeypatch.context() as patch:
        patch.setattr(memory_module, "update_buckets", broken)
        with pytest.raises(RuntimeError, match="refit failed"):
            memory.add(*steps[10])
    for key, arrays in before.items():
        for got, want in zip((memory.bucket(*key).rows, memory.bucket(*key).labels,
                              memory.bucket(*key).mst), arrays, strict=True):  # fmt: skip
            np.testing.assert_array_equal(got, want)
    # The spare rows written by the failed call are overwritten by the next append.
    memory.add(*steps[11])
    for key in memory.keys():
        bucket = memory.bucket(*key)
        np.testing.assert_array_equal(bucket.labels, hdbscan_labels(unit_rows(bucket.rows)))
        np.testing.assert_array_equal(bucket.mst, minimum_spanning_tree(unit_rows(bucket.rows)))
    extra = stored(steps[11][2])
    for key in {(p, f) for p, f in zip(steps[11][0], steps[11][1].tolist(), strict=True)}:
        mine = [r for r, p, f in zip(extra, *steps[11][:2], strict=True) if (p, bool(f)) == key]
        np.testing.assert_array_equal(memory.bucket(*key).rows[-len(mine) :], np.array(mine))
        np.testing.assert_array_equal(
            memory.bucket(*key).rows[: len(before[key][0])], before[key][0]
        )


def test_memory_loaded_then_grown_equals_never_saved(tmp_path):
    steps = list(batches(4, steps=20))
    kept, resumed = MEDSShaper(MEDSConfig()), None
    for i, (pids, flags, rows) in enumerate(steps):
        if i == 10:
            kept.save(tmp_path / "memory.npz")
            resumed = MEDSShaper.load(tmp_path / "memory.npz")
        out = kept.shape(pids, flags, flags.astype(float), rows)
        if resumed is not None:
            again = resumed.shape(pids, flags, flags.astype(float), rows)
            np.testing.assert_array_equal(out.penalties, again.penalties)
            np.testing.assert_array_equal(out.clusters, again.clusters)
    for key in kept.memory.keys():
        a, b = kept.memory.bucket(*key), resumed.memory.bucket(*key)
        for x, y in zip((a.rows, a.labels, a.mst), (b.rows, b.labels, b.mst), strict=True):
            np.testing.assert_array_equal(x, y)


def test_memory_capacity_keeps_newest_rows_across_many_steps():
    cap = 7
    memory = Memory(MEDSConfig(bucket_capacity=cap))
    appended: dict[tuple[str, bool], list[np.ndarray]] = {}
    for pids, flags, rows in batches(5, steps=25):
        memory.add(pids, flags, rows)
        for pid, flag, row in zip(pids, flags.tolist(), stored(rows), strict=True):
            appended.setdefault((pid, flag), []).append(row)
        for key, kept in appended.items():
            bucket = memory.bucket(*key)
            np.testing.assert_array_equal(bucket.rows, np.array(kept[-cap:]))
            np.testing.assert_array_equal(bucket.labels, hdbscan_labels(unit_rows(bucket.rows)))


def test_memory_assign_equals_public_knn_vote():
    memory = Memory(MEDSConfig(k=3))
    for pids, flags, rows in batches(6, steps=15):
        memory.add(pids, flags, rows)
    queries = stored(np.random.default_rng(9).normal(size=(20, 5)))
    keys = [(f"p{i % 3}", bool(i % 2)) for i in range(20)]
    labels, sizes = memory.assign(keys, queries)
    for i, key in enumerate(keys):
        bucket = memory.bucket(*key)
        want = knn_vote(bucket.rows, bucket.labels, queries[i : i + 1], k=3)[0]
        assert labels[i] == want
        assert sizes[i] == int(np.sum(bucket.labels == want))


def test_training_step_votes_equal_evaluation_votes(tmp_path):
    # A training step votes inside the bucket kernel (update_buckets); evaluation votes with
    # vote_kernel. On the same memory both must give every rollout the same cluster and penalty.
    steps = list(batches(8, steps=16, per_step=24))
    shaper = MEDSShaper(MEDSConfig())
    for pids, flags, rows in steps[:-1]:
        shaper.shape(pids, flags, np.zeros(len(pids)), rows)
    shaper.save(tmp_path / "memory.npz")
    evaluator = MEDSShaper.load(tmp_path / "memory.npz")
    evaluator.training = False
    pids, flags, rows = steps[-1]
    trained = shaper.shape(pids, flags, np.zeros(len(pids)), rows)
    evaluated = evaluator.shape(pids, flags, np.zeros(len(pids)), rows)
    assert (trained.clusters >= -1).sum() >= 6  # votes happened
    np.testing.assert_array_equal(trained.clusters, evaluated.clusters)
    np.testing.assert_array_equal(trained.cluster_sizes, evaluated.cluster_sizes)
    np.testing.assert_array_equal(trained.penalties, evaluated.penalties)


def test_small_buckets_hold_no_spare_rows_and_large_ones_do():
    # Many one-row buckets must not each carry spare rows (200k buckets of 128 dims grew the
    # resident memory by 10.9x their raw size); large buckets keep an eighth more for appends.
    from meds_gym.meds import MEDSConfig, MEDSShaper

    rng = np.random.default_rng(0)
    shaper = MEDSShaper(MEDSConfig())
    shaper.shape([f"p{i}" for i in range(50)], [False] * 50, [0.0] * 50, rng.normal(size=(50, 128)))
    storage = shaper.memory._storage
    assert all(storage[(f"p{i}", False)].shape == (1, 128) for i in range(50))
    shaper.shape(["big"] * 200, [False] * 200, [0.0] * 200, rng.normal(size=(200, 128)))
    assert storage[("big", False)].shape[0] == 200 + 200 // 8
    assert shaper.memory.bucket("big", False).rows.shape == (200, 128)
