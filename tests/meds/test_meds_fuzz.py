"""Property-based fuzzing of MEDS's public entry points: shape, the wrappers, save and load.

Every input is either handled as documented or rejected with the documented error, and a rejected
call leaves the memory bit-identical. ``HYPOTHESIS_PROFILE=fuzz`` runs 1,000 cases per test.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meds_gym  # noqa: F401  (registers the env ids)
from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds import MEDSConfig, MEDSRewardWrapper, MEDSShaper, ShapeResult
from tests.conftest import FUZZ_EXAMPLES

pytestmark = pytest.mark.fuzz

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def snapshot(shaper: MEDSShaper) -> tuple:
    memory = shaper.memory
    return memory.dim, [
        (key, memory.bucket(*key).rows.tobytes(), memory.bucket(*key).labels.tobytes())
        for key in memory.keys()
    ]


def seeded_shaper() -> MEDSShaper:
    shaper = MEDSShaper(MEDSConfig())
    rng = np.random.default_rng(0)
    for _ in range(2):
        shaper.shape(
            ["a"] * 3 + ["b"] * 3, [False, False, True] * 2, [0.0] * 6, rng.normal(size=(6, 3))
        )
    return shaper


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(0.0),
    st.just(1e-300),
    st.just(1e300),
)
rows = st.lists(values, min_size=0, max_size=4)
feature_entry = st.one_of(
    st.none(),
    rows,
    st.text(max_size=3),
    st.lists(rows, max_size=2),
)
batch_size = st.integers(min_value=0, max_value=5)


@st.composite
def batches(draw):
    n = draw(batch_size)
    pid = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=3), st.integers(), st.none())
    problem_ids = draw(st.one_of(st.lists(pid, min_size=n, max_size=n), st.text(max_size=3)))
    flag = st.one_of(st.booleans(), st.integers(0, 2), st.floats(0, 1), st.none())
    correct = draw(
        st.one_of(st.lists(flag, min_size=n, max_size=n + 1), st.just(np.zeros(n, bool)))
    )
    rewards = draw(st.one_of(st.lists(values, min_size=n, max_size=n + 1), st.text(max_size=2)))
    features = draw(
        st.one_of(
            st.none(),
            st.lists(feature_entry, min_size=n, max_size=n + 1),
            st.builds(
                lambda m, d, v: np.full((m, d), v),
                st.integers(0, n + 1),
                st.integers(0, 4),
                values.filter(lambda x: not isinstance(x, int) or abs(x) < 2**63),
            ),
        )
    )
    kept = draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=n, max_size=n + 1)))
    return problem_ids, correct, rewards, features, kept


@FUZZ
@given(batches())
def test_shape_handles_or_rejects_any_batch_and_rejections_change_nothing(batch):
    shaper = seeded_shaper()
    before = snapshot(shaper)
    problem_ids, correct, rewards, features, kept = batch
    try:
        out = shaper.shape(problem_ids, correct, rewards, features, kept=kept)
    except InvalidArgumentError:
        assert snapshot(shaper) == before
        return
    assert isinstance(out, ShapeResult) and len(out) == len(problem_ids)
    assert np.isfinite(out.shaped_rewards).all()
    assert ((out.penalties >= 0) & (out.penalties <= shaper.config.beta)).all()


@FUZZ
@given(
    st.one_of(
        st.text(max_size=12),
        st.fixed_dictionaries({"text": st.text(max_size=8), "features": feature_entry}),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        st.integers(),
        st.none(),
    )
)
def test_wrapper_step_handles_or_rejects_any_action(action):
    env = MEDSRewardWrapper(gym.make("meds_gym/Arithmetic-v0"), MEDSConfig())
    env.reset(seed=0)
    env.step({"text": "\\boxed{0}", "features": np.ones(3, np.float32)})
    env.reset(seed=0)
    before = snapshot(env.shaper)
    try:
        _, reward, terminated, _, info = env.step(action)
    except (InvalidArgumentError, TypeError):
        assert snapshot(env.shaper) == before
        return
    assert terminated and math.isfinite(float(reward))
    assert float(reward) == info["meds"]["shaped_reward"]


@pytest.fixture(scope="module")
def saved_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.npz"
        seeded_shaper().save(path)
        return path.read_bytes()


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_load_of_a_mutated_file_loads_or_is_corrupt(saved_bytes, flips, cut):
    data = bytearray(saved_bytes)
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.npz"
        path.write_bytes(bytes(data))
        try:
            loaded = MEDSShaper.load(path)
        except CorruptFileError:
            return
    out = loaded.shape(["a"], [False], [0.0], np.ones((1, loaded.memory.dim or 3)))
    assert np.isfinite(out.shaped_rewards).all()


@FUZZ
@given(st.integers(0, 3), st.integers(1, 6))
def test_save_load_round_trip_continues_identically(steps, width):
    rng = np.random.default_rng(steps * 10 + width)
    shaper = MEDSShaper(MEDSConfig())
    for _ in range(steps):
        shaper.shape(
            ["a", "a", "b"], [False, False, True], [0.0, 0.0, 1.0], rng.normal(size=(3, width))
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.npz"
        shaper.save(path)
        loaded = MEDSShaper.load(path)
    assert snapshot(loaded) == snapshot(shaper)
    batch = (["a", "b"], [False, False], [0.0, 0.0], rng.normal(size=(2, width)))
    assert shaper.shape(*batch).penalties.tobytes() == loaded.shape(*batch).penalties.tobytes()
