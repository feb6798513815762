"""Memory files made by others: nothing a user loads may crash the interpreter or eat memory.

Crafted files are loaded in a subprocess, which must exit normally (a segfault in a numba kernel
would kill it with a signal), and either load or raise CorruptFileError.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds import MEDSConfig, MEDSShaper
from meds_gym.meds.persistence import remove_stale_temps

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


LOAD_AND_SHAPE = """
import sys
import numpy as np
from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds import MEDSShaper
try:
    shaper = MEDSShaper.load(sys.argv[1] if len(sys.argv) > 1 else {path!r})
except CorruptFileError as exc:
    print("REFUSED", exc)
else:
    rng = np.random.default_rng(0)
    for _ in range(3):
        shaper.shape(["a"] * 4 + ["b"] * 4, [False] * 8, [0.0] * 8, rng.normal(size=(8, 3)))
    print("LOADED", shaper.memory.n_rows)
"""


def version1_file(path: Path, msts: np.ndarray, mst_sizes: list[int]) -> None:
    """A file in the first format, which also stored labels and spanning trees."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(10, 3))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    meta = {
        "format_version": "1",
        "kind": "MEDSShaper",
        "config": MEDSConfig().to_dict(),
        "bucket_keys": [["a", False], ["b", False]],
        "dim": 3,
    }
    with open(path, "wb") as handle:
        np.savez(
            handle,
            meta=np.array(json.dumps(meta)),
            rows=rows,
            labels=np.zeros(10, dtype=np.int64),
            bucket_sizes=np.array([6, 4], dtype=np.int64),
            msts=msts,
            mst_sizes=np.array(mst_sizes, dtype=np.int64),
        )


@pytest.mark.parametrize(
    ("name", "msts", "sizes"),
    [
        ("endpoints 1e9", np.full((8, 3), 1e9), [5, 3]),
        ("negative endpoints", np.full((8, 3), -7.0), [5, 3]),
        ("not a tree", np.array([[0, 1, 0.1]] * 8, dtype=np.float64), [5, 3]),
        ("shifted edge counts", np.tile([[0, 1, 0.1]], (8, 1)).astype(np.float64), [8, 0]),
    ],
)
def test_crafted_trees_in_an_old_file_cannot_crash_the_process(tmp_path, name, msts, sizes):
    path = tmp_path / "crafted.npz"
    version1_file(path, msts, sizes)
    done = run_python(LOAD_AND_SHAPE.format(path=str(path)))
    assert done.returncode == 0, (name, done.returncode, done.stderr[-2000:])
    # Trees are derived state: they are never read, so the file loads and keeps working.
    assert "LOADED 34" in done.stdout, (name, done.stdout, done.stderr[-2000:])


def test_extra_huge_member_is_never_read(tmp_path):
    """A zip bomb: a small file with an extra 256 MiB member of zeros. Only known members are
    read, so loading costs neither the time nor the memory of decompressing it."""
    saved = tmp_path / "state.npz"
    shaper = MEDSShaper()
    shaper.shape(["a"] * 4, [False] * 4, [0.0] * 4, np.random.default_rng(1).normal(size=(4, 3)))
    shaper.save(saved)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with dst.open("junk.npy", "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(256):
                member.write(block)
    assert bomb.stat().st_size < 2 * 2**20
    code = f"""
    import resource
    from meds_gym.meds import MEDSShaper
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shaper = MEDSShaper.load({str(bomb)!r})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print("ROWS", shaper.memory.n_rows, "GROWN_KIB", grown_kib)
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    rows, grown = done.stdout.split()[1], int(done.stdout.split()[3])
    assert rows == "4"
    assert grown < 64 * 1024  # far below the 256 MiB the member would take


def test_member_longer_than_its_header_is_refused(saved_state):
    """A member whose declared size exceeds what its .npy header describes is refused before
    its data is read."""
    with zipfile.ZipFile(saved_state) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    members["rows.npy"] += bytes(1024)
    with zipfile.ZipFile(saved_state, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(CorruptFileError, match="declares"):
        MEDSShaper.load(saved_state)


def test_header_with_a_huge_shape_is_refused(saved_state):
    with zipfile.ZipFile(saved_state) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)}
    fake = bytearray()
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    fake = b"\x93NUMPY\x01\x00" + buffer.getvalue()[8:] + bytes(64)
    members["rows.npy"] = bytes(fake)
    with zipfile.ZipFile(saved_state, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(CorruptFileError, match="declares"):
        MEDSShaper.load(saved_state)


@pytest.fixture
def saved_state(tmp_path):
    shaper = MEDSShaper()
    rng = np.random.default_rng(2)
    for _ in range(2):
        shaper.shape(["a"] * 5, [False] * 5, [0.0] * 5, rng.normal(size=(5, 3)))
    path = tmp_path / "state.npz"
    shaper.save(path)
    return path


def test_temp_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "state.npz"
    code = f"""
    import os, time
    import numpy as np
    from meds_gym.meds import MEDSShaper

    def hang(src, dst):  # the process dies between writing the temp file and renaming it
        print("WRITTEN", flush=True)
        time.sleep(600)

    os.replace = hang
    shaper = MEDSShaper()
    shaper.shape(["a"] * 3, [False] * 3, [0.0] * 3, np.eye(3))
    shaper.save({str(path)!r})
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "WRITTEN"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and not path.exists()
    MEDSShaper().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def test_temp_of_a_running_save_is_kept(tmp_path):
    path = tmp_path / "state.npz"
    live = tmp_path / f".state.npz.{os.getppid()}.abc.tmp"  # a process that is running
    live.write_bytes(b"partial")
    unknown = tmp_path / ".state.npz.x.abc.tmp"  # no writer id: removed only when old
    unknown.write_bytes(b"partial")
    other = tmp_path / ".other.npz.999999999.abc.tmp"  # another file's temp: not ours to touch
    other.write_bytes(b"partial")
    assert remove_stale_temps(path) == []
    old = time.time() - 2 * 24 * 3600
    os.utime(unknown, (old, old))
    assert remove_stale_temps(path) == [unknown]
    assert live.exists() and other.exists()


def _with_config(path: Path, target: Path, **changes) -> None:
    from meds_gym.meds.persistence import atomic_savez

    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        arrays = {"rows": archive["rows"], "bucket_sizes": archive["bucket_sizes"]}
    meta.pop("format_version", None)
    meta["config"] = {**meta["config"], **changes}
    atomic_savez(target, meta, arrays)


@pytest.mark.parametrize(
    "changes",
    [{"k": 10**30}, {"min_cluster_size": 2**63}, {"min_samples": 10**30}, {"alpha": 10**400},
     {"beta": -(10**400)}, {"bucket_capacity": 2**40}, {"warn_bucket_size": 10**20}],
)  # fmt: skip
def test_a_config_integer_too_large_is_a_corrupt_file(saved_state, tmp_path, changes):
    target = tmp_path / "crafted.npz"
    _with_config(saved_state, target, **changes)
    with pytest.raises(CorruptFileError, match="invalid configuration"):
        MEDSShaper.load(target)
    with pytest.raises(InvalidArgumentError, match=next(iter(changes))):
        MEDSConfig(**changes)  # the same check at construction (InvalidArgumentError)


@pytest.mark.parametrize("kind", ["near", "two"])
def test_a_huge_degenerate_bucket_is_refused_before_any_refit(tmp_path, kind):
    from meds_gym.meds.persistence import atomic_savez
    from meds_gym.meds.shaper import MAX_LOADED_BUCKET_ROWS

    n = 100_000
    rng = np.random.default_rng(0)
    if kind == "near":  # nearly identical rows
        rows = (1.0 + 1e-6 * rng.normal(size=(n, 8))).astype(np.float32)
    else:  # two rows repeated
        rows = np.tile(np.eye(8, dtype=np.float32)[:2] + 1.0, (n // 2, 1))
    meta = {"kind": "MEDSShaper", "config": MEDSConfig().to_dict(), "bucket_keys": [["p", False]],
            "dim": 8}  # fmt: skip
    path = tmp_path / "huge.npz"
    atomic_savez(path, meta, {"rows": rows, "bucket_sizes": np.array([n], dtype=np.int64)})
    with pytest.raises(CorruptFileError, match=f"max_bucket_rows={MAX_LOADED_BUCKET_ROWS}"):
        MEDSShaper.load(path)  # refused from the sizes alone, before the O(N^2) refit
    capped = MEDSConfig(bucket_capacity=1000).to_dict()
    over = {"rows": rows[:2000], "bucket_sizes": np.array([2000], dtype=np.int64)}
    atomic_savez(path, {**meta, "config": capped}, over)
    with pytest.raises(CorruptFileError, match="exceeds bucket_capacity=1000"):
        MEDSShaper.load(path)
    small = {"rows": rows[:500], "bucket_sizes": np.array([500], dtype=np.int64)}
    atomic_savez(path, meta, small)
    assert MEDSShaper.load(path, max_bucket_rows=None).memory.n_rows == 500
