import json
import os
import zipfile

import numpy as np
import pytest

from meds_gym.errors import CorruptFileError
from meds_gym.meds import MEDSConfig, MEDSShaper, NoiseVote, PenaltyTarget


def random_batches(seed, steps, problems=("a", "b", "c"), per_problem=10, dim=5):
    rng = np.random.default_rng(seed)
    centres = {p: rng.normal(size=(3, dim)) for p in problems}
    batches = []
    for _ in range(steps):
        pids, flags, feats = [], [], []
        for p in problems:
            for _ in range(per_problem):
                pids.append(p)
                flags.append(bool(rng.random() < 0.3))
                feats.append(centres[p][rng.integers(3)] + rng.normal(scale=0.1, size=dim))
        flags_arr = np.array(flags)
        batches.append((pids, flags_arr, flags_arr.astype(float), np.array(feats)))
    return batches


def memory_state(memory):
    return memory.dim, {
        key: tuple(a.copy() for a in (b.rows, b.labels, b.mst))
        for key, b in ((k, memory.bucket(*k)) for k in memory.keys())
    }


def assert_identical(a, b):
    assert a[0] == b[0] and list(a[1]) == list(b[1])
    for key in a[1]:
        for x, y in zip(a[1][key], b[1][key], strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize(
    "config",
    [
        MEDSConfig(),
        MEDSConfig(
            alpha=0.02,
            beta=0.04,
            k=5,
            bucket_capacity=25,
            penalize=PenaltyTarget.BOTH,
            noise_vote=NoiseVote.NO_PENALTY,
        ),
    ],
)
def test_save_load_continues_bit_identically(tmp_path, config):
    batches = random_batches(seed=3, steps=6)
    uninterrupted = MEDSShaper(config)
    expected = [uninterrupted.shape(*b) for b in batches]

    first = MEDSShaper(config)
    for b in batches[:3]:
        first.shape(*b)
    path = tmp_path / "meds_state.npz"
    first.save(path)
    resumed = MEDSShaper.load(path)
    assert resumed.config == config and resumed.training
    assert_identical(memory_state(first.memory), memory_state(resumed.memory))
    for b, want in zip(batches[3:], expected[3:], strict=True):
        got = resumed.shape(*b)
        assert got.penalties.tobytes() == want.penalties.tobytes()
        assert got.shaped_rewards.tobytes() == want.shaped_rewards.tobytes()
        assert np.array_equal(got.cluster_sizes, want.cluster_sizes)
        assert np.array_equal(got.clusters, want.clusters)
    assert_identical(memory_state(uninterrupted.memory), memory_state(resumed.memory))


def test_empty_shaper_round_trip(tmp_path):
    path = tmp_path / "empty.npz"
    MEDSShaper(MEDSConfig(alpha=0.3, beta=0.5)).save(path)
    loaded = MEDSShaper.load(path)
    assert loaded.config.alpha == 0.3 and len(loaded.memory) == 0 and loaded.memory.dim is None


def test_file_holds_the_rows_and_no_derived_state(tmp_path):
    shaper = MEDSShaper()
    for b in random_batches(seed=1, steps=2):
        shaper.shape(*b)
    path = tmp_path / "state.npz"
    shaper.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["bucket_sizes.npy", "meta.npy", "rows.npy"]
    with np.load(path, allow_pickle=False) as data:
        assert data["rows"].dtype == np.float32 and data["rows"].shape == (shaper.memory.n_rows, 5)


def test_file_is_a_plain_npz_without_pickle(tmp_path):
    shaper = MEDSShaper()
    shaper.shape(*random_batches(seed=0, steps=1)[0])
    path = tmp_path / "state.npz"
    shaper.save(path)
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert meta["format_version"] == "2" and meta["kind"] == "MEDSShaper"
        assert all(data[name].dtype != object for name in data.files)
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]  # no temporary file left behind


def test_save_writes_exactly_the_given_name(tmp_path):
    path = tmp_path / "state.meds"
    MEDSShaper().save(path)
    assert path.exists() and not (tmp_path / "state.meds.npz").exists()


def test_save_replaces_atomically_and_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    shaper = MEDSShaper()
    shaper.shape(*random_batches(seed=0, steps=1)[0])
    shaper.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    shaper.shape(*random_batches(seed=1, steps=1)[0])
    with pytest.raises(OSError, match="disk full"):
        shaper.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        MEDSShaper.load(path)


@pytest.fixture
def saved(tmp_path):
    shaper = MEDSShaper()
    for b in random_batches(seed=2, steps=2):
        shaper.shape(*b)
    path = tmp_path / "state.npz"
    shaper.save(path)
    return path


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_corrupt(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptFileError, match="state.npz"):
        MEDSShaper.load(saved)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes_are_corrupt(tmp_path, seed):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    with pytest.raises(CorruptFileError):
        MEDSShaper.load(path)


def test_flipped_bytes_inside_an_array_are_corrupt(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("rows.npy")
    # flip a byte in the middle of the stored rows (past the local header): the CRC check fails
    start = info.header_offset + 30 + len(info.filename) + info.file_size // 2
    data[start] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        MEDSShaper.load(saved)


def rewrite(path, meta_update=None, drop=None, replace=None):
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(meta_update or {})
    arrays["meta"] = np.array(json.dumps(meta))
    for name in drop or []:
        arrays.pop(name)
    arrays.update(replace or {})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def test_wrong_version_is_refused(saved):
    rewrite(saved, meta_update={"format_version": "3"})
    with pytest.raises(CorruptFileError, match="version '3'"):
        MEDSShaper.load(saved)


@pytest.mark.parametrize(
    "change",
    [
        {"drop": ["rows"]},
        {"drop": ["meta"]},
        {"drop": ["bucket_sizes"]},
        {"replace": {"rows": np.zeros((2, 2))}},
        {"replace": {"rows": np.zeros((60, 5), dtype=np.float32)}},
        {"replace": {"rows": np.full((60, 5), np.nan, dtype=np.float32)}},
        {"replace": {"rows": np.ones((60, 5), dtype=np.int64)}},
        {"replace": {"bucket_sizes": np.array([0, 60, 0, 0, 0, 0], dtype=np.int64)}},
        {"replace": {"bucket_sizes": np.array([-5, 65, 0, 0, 0, 0], dtype=np.int64)}},
        {"replace": {"bucket_sizes": np.array([1], dtype=np.int64)}},
        {"meta_update": {"bucket_keys": [["a", "yes"]]}},
        {"meta_update": {"config": {"alpha": -1.0}}},
        {"meta_update": {"dim": "five"}},
    ],
)
def test_inconsistent_contents_are_corrupt(saved, change):
    rewrite(saved, **change)
    with pytest.raises(CorruptFileError):
        MEDSShaper.load(saved)


def test_single_npy_file_is_corrupt(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.arange(5))
    with pytest.raises(CorruptFileError, match="not a readable MEDS state file"):
        MEDSShaper.load(path)


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as handle:
        np.savez(
            handle,
            meta=np.array(json.dumps({"format_version": "2", "kind": "MEDSShaper"})),
            rows=np.array([object()], dtype=object),
        )
    with pytest.raises(CorruptFileError):
        MEDSShaper.load(path)
