"""A recorded MEDS run replays exactly: penalties, votes, cluster sizes, labels, trees and rows.

The run (40 seeded steps on 30 problems, with repeated fingerprints, a save and load half way,
three configurations that use the incremental refit, the fit from scratch, ``min_samples > 1``,
leaf selection and a bucket capacity) was recorded into ``data/meds_replay.npz``. Any change to
the clustering kernels or to the memory that moves one label, one tree edge or one stored row
fails here. Per step the file keeps the shaper's outputs and a SHA-256 digest of every bucket's
rows, labels, tree (edges, merges and squared lengths) and cluster count; after the last step the
labels, tree edges and merges themselves, to show where a difference lies.

Re-record (only for an intended change of results, stated in the commit) with
``PYTHONPATH=$PWD python tests/meds/test_meds_replay.py``.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import meds_gym.meds.memory as memory_module
from meds_gym.meds import MEDSConfig, MEDSShaper
from meds_gym.meds.config import TieBreak

RECORDING = Path(__file__).with_name("data") / "meds_replay.npz"

CONFIGS: dict[str, MEDSConfig] = {
    "default": MEDSConfig(),
    "ms2_leaf": MEDSConfig(
        min_samples=2,
        min_cluster_size=3,
        cluster_selection_method="leaf",
        tie_break=TieBreak.NEAREST,
    ),
    "capacity": MEDSConfig(bucket_capacity=40),
}
STEPS = 40
PROBLEMS = 30
TREE_MIN_ROWS = 24
"""Lower than the memory's own threshold, so that most buckets of this short run keep a tree."""


def _batches(seed: int = 0, dim: int = 8):
    """(problem ids, correct flags, rewards, fingerprints) per step; about a fifth are repeats."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(PROBLEMS, 3, dim))
    seen: list[np.ndarray] = []
    for _ in range(STEPS):
        pids: list[str] = []
        rows = []
        for p in rng.choice(PROBLEMS, size=10, replace=False).tolist():
            for _ in range(8):
                if seen and rng.random() < 0.2:
                    row = seen[int(rng.integers(len(seen)))]
                else:
                    row = centres[p, int(rng.integers(3))] + rng.normal(scale=0.2, size=dim)
                seen.append(row)
                pids.append(f"p{p}")
                rows.append(row)
        correct = rng.random(len(pids)) < 0.4
        yield pids, correct, rng.normal(size=len(pids)), np.array(rows, dtype=np.float32)


def _state(shaper: MEDSShaper) -> list[tuple[str, np.ndarray]]:
    """(name, array) for every bucket, in key order: rows, labels, links, lengths, n_clusters."""
    out = []
    for pid, flag in sorted(shaper.memory.keys()):
        bucket = shaper.memory.bucket(pid, flag)
        name = f"{pid}/{int(flag)}"
        out += [
            (f"{name}/rows", bucket.rows),
            (f"{name}/labels", bucket.labels),
            (f"{name}/links", bucket.links),
            (f"{name}/lengths", bucket.lengths),
            (f"{name}/n_clusters", np.array([bucket.n_clusters], dtype=np.int64)),
        ]
    return out


def _digest(state: list[tuple[str, np.ndarray]]) -> np.ndarray:
    h = hashlib.sha256()
    for name, array in state:
        h.update(name.encode())
        h.update(str(array.dtype).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8)


def replay(config: MEDSConfig, tmp: Path) -> dict[str, np.ndarray]:
    """Run the recorded steps on a fresh shaper (saved and loaded after step 20)."""
    shaper = MEDSShaper(config)
    outputs: dict[str, list[np.ndarray]] = {
        f: []
        for f in ("penalties", "clusters", "cluster_sizes")  # shaped: rewards - penalties
    }
    digests = []
    for step, (pids, correct, rewards, rows) in enumerate(_batches()):
        if step == STEPS // 2:
            shaper.save(tmp / "half.npz")
            shaper = MEDSShaper.load(tmp / "half.npz")
            digests.append(_digest(_state(shaper)))  # the refit from the stored rows alone
        result = shaper.shape(pids, correct, rewards, rows)
        for field, values in outputs.items():
            values.append(getattr(result, field))
        digests.append(_digest(_state(shaper)))
    recorded = {field: np.stack(values) for field, values in outputs.items()}
    recorded["digests"] = np.stack(digests)
    # The final labels and trees in full (the digests cover the rows and squared lengths too).
    recorded.update(
        (name, array) for name, array in _state(shaper) if not name.endswith(("/rows", "/lengths"))
    )
    return recorded


def _replay_all(tmp: Path) -> dict[str, np.ndarray]:
    out: dict[str, Any] = {}
    for name, config in CONFIGS.items():
        for field, array in replay(config, tmp).items():
            out[f"{name}:{field}"] = array
    return out


def test_a_recorded_meds_run_replays_exactly(monkeypatch, tmp_path):
    monkeypatch.setattr(memory_module, "TREE_MIN_ROWS", TREE_MIN_ROWS)
    got = _replay_all(tmp_path)
    with np.load(RECORDING) as file:
        want = {name: file[name] for name in file.files}
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        field = name.split(":", 1)[1]
        if field == "penalties":  # within 1 ulp: the tolerance the clustering work allows
            np.testing.assert_array_max_ulp(got[name], array, maxulp=1)
        else:
            assert got[name].dtype == array.dtype, name
            np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_the_recorded_run_exercises_every_refit_path(monkeypatch, tmp_path):
    # Buckets keep trees (extended by the next step), some are refitted from scratch, and votes
    # land in clusters as well as in noise: otherwise the replay above would check little.
    monkeypatch.setattr(memory_module, "TREE_MIN_ROWS", TREE_MIN_ROWS)
    run = replay(CONFIGS["default"], tmp_path)
    lengths = [run[k].shape[0] for k in run if k.endswith("/links")]
    assert max(lengths) > 3 * TREE_MIN_ROWS and min(lengths) == 0
    assert (run["clusters"] >= 0).any() and (run["clusters"] == -1).any()


if __name__ == "__main__":
    memory_module.TREE_MIN_ROWS = TREE_MIN_ROWS
    RECORDING.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        np.savez_compressed(RECORDING, **_replay_all(Path(directory)))
    print(f"recorded {RECORDING} ({RECORDING.stat().st_size} bytes)", file=sys.stderr)
    pytest.main([__file__, "-q"])
