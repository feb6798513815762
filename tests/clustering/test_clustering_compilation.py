"""The kernels compile once, for one fixed set of signatures, whatever the callers pass (issue 12).

A new specialisation (a read-only array, an int32 label vector, a parallel path) would compile in
the middle of a training run; these tests check that every public path reuses the registered
signatures and that ``warm_up`` prepares them all.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from meds_gym.clustering import (
    compilation,
    extend_minimum_spanning_tree,
    hdbscan_labels,
    knn_vote,
    labels_from_mst,
    minimum_spanning_tree,
    refit_buckets,
    refit_many,
    vote_kernel,
    warm_up,
)


def test_warm_up_in_the_background_prepares_every_kernel():
    thread = warm_up(background=True)
    assert thread is not None
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert warm_up() is None  # already done: returns at once
    for dispatcher, signatures, groups in compilation._kernels:
        if compilation.SHAPER in groups:
            assert len(dispatcher.overloads) == len(signatures), dispatcher.py_func.__name__
    warm_up(group=compilation.VOTE)
    warm_up(group=compilation.FUNCTIONS)
    for dispatcher, signatures, _ in compilation._kernels:
        assert len(dispatcher.overloads) == len(signatures), dispatcher.py_func.__name__


def test_a_meds_run_compiles_only_the_shaper_kernels():
    # A fresh process: the shaper's training steps compile their group and nothing else; the
    # vote outside a refit (a shaper out of training) compiles its own group on first use.
    code = """
import numpy as np
from meds_gym.clustering import compilation
from meds_gym.meds import MEDSConfig, MEDSShaper

def check(groups):
    for dispatcher, signatures, its in compilation._kernels:
        compiled = len(dispatcher.overloads)
        assert compiled == (len(signatures) if set(groups) & set(its) else 0), (
            dispatcher.py_func.__name__, compiled)

shaper = MEDSShaper(MEDSConfig())
rows = np.random.default_rng(0).normal(size=(8, 4))
for _ in range(3):
    shaper.shape(["a"] * 8, [False] * 4 + [True] * 4, [0.0] * 8, rows)
check([compilation.SHAPER])
shaper.training = False
shaper.shape(["a"] * 8, [False] * 8, [0.0] * 8, rows)
check([compilation.SHAPER, compilation.VOTE])
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_public_path_reuses_the_registered_signatures(monkeypatch):
    import meds_gym.clustering.parallel as module

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    frozen = X.copy()
    frozen.flags.writeable = False
    labels = rng.integers(-1, 3, size=40).astype(np.int32)
    hdbscan_labels(X.astype(np.float32), 2, 2, "leaf", True)
    hdbscan_labels(np.asfortranarray(frozen))
    mst = minimum_spanning_tree(frozen)
    extend_minimum_spanning_tree(X, minimum_spanning_tree(X[:30]), 30)
    labels_from_mst(mst, 40)
    knn_vote(frozen, labels, frozen[:3], tie_break="nearest")
    vote_kernel(frozen, labels.astype(np.int64), X[:3], 3, True)
    refit_many([frozen, X[:7]], [minimum_spanning_tree(X[:10]), None])
    monkeypatch.setattr(module, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(module.numba, "get_num_threads", lambda: 2)
    tree = minimum_spanning_tree(X[:20])
    tree.flags.writeable = False
    refit_buckets([frozen, X], [tree, None], min_cluster_size=3, min_samples=2, leaf=False)
    warm_up()  # the shaper's kernels too, so that every registered kernel is checked
    for dispatcher, signatures, _ in compilation._kernels:
        assert len(dispatcher.overloads) == len(signatures), dispatcher.py_func.__name__


def test_trusted_kernels_refuse_other_types_instead_of_compiling():
    warm_up()
    rows = np.ones((3, 2))
    with pytest.raises(TypeError):
        vote_kernel(rows.astype(np.float32), np.zeros(3, dtype=np.int64), rows, 1, True)


def _parallel_refit_in_child(queue) -> None:
    import meds_gym.clustering.parallel as module

    module.PARALLEL_MIN_WORK = 0
    rng = np.random.default_rng(3)
    buckets = [rng.normal(size=(30, 4)) for _ in range(6)]
    labels, _ = refit_many(buckets, [None] * 6)
    queue.put([lab.tolist() for lab in labels])


def test_parallel_refit_after_fork_does_not_hang(monkeypatch):
    # A forked child (SubprocVecEnv, DataLoader workers) inherits the parent's thread pool
    # object but none of its threads; the refit must build a new pool there.
    import multiprocessing

    import meds_gym.clustering.parallel as module

    monkeypatch.setattr(module, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(module.numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(3)
    buckets = [rng.normal(size=(30, 4)) for _ in range(6)]
    want = [lab.tolist() for lab in refit_many(buckets, [None] * 6)[0]]  # the parent's pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_parallel_refit_in_child, args=(queue,))
    child.start()
    got = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert got == want


def test_the_first_clustering_call_says_so_on_the_log_before_the_pause():
    """A fresh process logs that it is preparing the kernels before it compiles (or loads)
    them, once, so a user sees why the first MEDS step pauses."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import logging, numpy as np
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")
        from meds_gym.clustering import hdbscan_labels
        print("BEFORE", flush=True)
        hdbscan_labels(np.eye(3))
        hdbscan_labels(np.eye(4))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "clustering" in line]
    assert len(lines) == 2, done.stderr[-2000:]  # said once before, once after; not per call
    assert "preparing the clustering kernels" in lines[0] and "ready in" in lines[1]
