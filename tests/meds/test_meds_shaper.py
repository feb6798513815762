import math
import warnings

import hdbscan
import numpy as np
import pytest

from meds_gym.errors import InvalidArgumentError, UnknownProblemError
from meds_gym.meds import (
    NOT_ASSIGNED,
    MEDSConfig,
    MEDSShaper,
    NoiseVote,
    PenaltyTarget,
    mixed_groups,
    validate_batch,
)


def deg(*angles):
    """Unit 2-D vectors at the given angles (degrees): cosine distance is then set by the angle."""
    rad = np.deg2rad(np.asarray(angles, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def snapshot(memory):
    state = {}
    for key in memory.keys():
        b = memory.bucket(*key)
        state[key] = (b.rows.copy(), b.labels.copy(), b.mst.copy())
    return memory.dim, state


def assert_same_state(a, b):
    assert a[0] == b[0]
    assert list(a[1]) == list(b[1])
    for key in a[1]:
        for x, y in zip(a[1][key], b[1][key], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)


# ---------------------------------------------------------------- hand-computed scenario
def test_three_step_hand_computed_scenario():
    # alpha=0.1, beta=0.15: the cap is reached at n >= 4 (0.1*ln 5 = 0.1609 > 0.15).
    shaper = MEDSShaper(MEDSConfig(alpha=0.1, beta=0.15))

    # Step 1, first visit of problem "p": 5 wrong rollouts, mode A near 0 degrees (3 rows) and
    # mode B near 90 degrees (2 rows). Nothing is stored yet, so nothing is assigned: n = 0.
    out1 = shaper.shape(["p"] * 5, [False] * 5, [0.0] * 5, deg(0, 1, 2, 90, 91))
    assert out1.penalties.tolist() == [0.0] * 5
    assert out1.clusters.tolist() == [NOT_ASSIGNED] * 5
    labels = shaper.memory.bucket("p", False).labels
    # HDBSCAN (min_cluster_size=2) finds A = rows 0..2 and B = rows 3..4.
    assert labels[0] == labels[1] == labels[2] >= 0 and labels[3] == labels[4] >= 0
    assert labels[0] != labels[3]

    # Step 2: rollouts qA (0.5 deg), qB (90.5 deg), qC (200 deg), a correct one and one without
    # a fingerprint.
    #   qA: 3 nearest stored rows are A, A, A -> n = |A| = 3 -> 0.1*ln 4 = 0.138629
    #   qB: nearest B (0.5), B (0.5), then A at 2 deg (88.5) -> vote B -> n = 2 -> 0.1*ln 3
    #   qC: nearest B at 91 (109 deg), B at 90 (110), A at 0 (160) -> vote B -> n = 2 -> 0.1*ln 3
    #       (qB of this same batch is not in the memory yet: assign before learn)
    #   correct rollout: never penalised; the missing fingerprint: never penalised.
    feats2 = [deg(0.5)[0], deg(90.5)[0], deg(200)[0], deg(0.5)[0], None]
    out2 = shaper.shape(
        ["p"] * 5, [False, False, False, True, False], [0.0, 0.0, 0.0, 1.0, 0.0], feats2
    )
    np.testing.assert_allclose(
        out2.penalties, [0.1 * math.log(4), 0.1 * math.log(3), 0.1 * math.log(3), 0.0, 0.0]
    )
    assert out2.cluster_sizes.tolist() == [3, 2, 2, 0, 0]
    assert out2.clusters[0] == labels[0] and out2.clusters[1] == out2.clusters[2] == labels[3]
    assert out2.clusters[3] == out2.clusters[4] == NOT_ASSIGNED
    np.testing.assert_allclose(
        out2.shaped_rewards, [-0.1 * math.log(4)] + [-0.1 * math.log(3)] * 2 + [1.0, 0.0]
    )
    # The wrong bucket now holds A x4, B x3 and the lone qC (noise); the correct bucket 1 row.
    assert len(shaper.memory.bucket("p", False)) == 8
    assert len(shaper.memory.bucket("p", True)) == 1
    lab = shaper.memory.bucket("p", False).labels
    assert lab[7] == -1 and lab[5] == lab[0] and lab[6] == lab[3]

    # Step 3:
    #   qA at 1.4 deg: A, A, A -> n = 4 -> 0.1*ln 5 = 0.1609, capped at beta = 0.15
    #   qB at 90.2 deg: B, B, B -> n = 3 -> 0.1*ln 4
    #   qC2 at 201 deg: qC (noise, 1 deg), B at 91 (110), B at 90.5 (110.5) -> vote B -> n = 3
    out3 = shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(1.4, 90.2, 201))
    np.testing.assert_allclose(out3.penalties, [0.15, 0.1 * math.log(4), 0.1 * math.log(4)])
    assert out3.cluster_sizes.tolist() == [4, 3, 3]
    assert len(shaper.memory.bucket("p", False)) == 11


def test_noise_vote_count_noise_and_no_penalty():
    # min_cluster_size=3: A (3 rows near 0 deg) and B (3 rows near 80 deg) are clusters; the two
    # rows at 180 and 200 deg form a group smaller than 3, so they are noise.
    rows = deg(0, 1, 2, 80, 81, 82, 180, 200)
    query = deg(190)  # nearest: 180 (10 deg), 200 (10 deg), then B at 82 (108): -1, -1, B -> -1
    results = {}
    for vote in NoiseVote:
        shaper = MEDSShaper(MEDSConfig(min_cluster_size=3, noise_vote=vote))
        shaper.shape(["p"] * 8, [False] * 8, [0.0] * 8, rows)
        lab = shaper.memory.bucket("p", False).labels
        assert lab[6] == lab[7] == -1 and lab[0] >= 0 and lab[3] >= 0 and lab[0] != lab[3]
        results[vote] = shaper.shape(["p"], [False], [0.0], query)
    counted = results[NoiseVote.COUNT_NOISE]
    assert counted.clusters.tolist() == [-1] and counted.cluster_sizes.tolist() == [2]
    assert counted.penalties[0] == pytest.approx(0.1 * math.log(3))  # 2 stored noise rows
    free = results[NoiseVote.NO_PENALTY]
    assert free.clusters.tolist() == [-1] and free.cluster_sizes.tolist() == [0]
    assert free.penalties.tolist() == [0.0]


def test_single_stored_row_is_noise_and_counts_one():
    # The reference labels a one-row bucket [-1]: a later wrong rollout votes noise with n = 1.
    shaper = MEDSShaper()
    shaper.shape(["p"], [False], [0.0], deg(0))
    out = shaper.shape(["p"], [False], [0.0], deg(0))
    assert out.clusters.tolist() == [-1] and out.cluster_sizes.tolist() == [1]
    assert out.penalties[0] == pytest.approx(0.1 * math.log(2))
    out = shaper.shape(["p"], [False], [0.0], deg(0))  # now 2 rows: a fitted bucket
    assert out.clusters.tolist() != [NOT_ASSIGNED]


def test_buckets_are_separate_per_problem_and_correctness():
    shaper = MEDSShaper()
    shaper.shape(["p", "p", "q"], [False, False, False], [0.0] * 3, deg(0, 1, 0))
    # "q" has 1 stored row (noise, n = 1); a correct rollout of "p" uses the empty (p, True)
    # bucket and is not penalised anyway.
    out = shaper.shape(["q", "p"], [False, True], [0.0, 1.0], deg(0, 0))
    assert out.penalties.tolist() == [pytest.approx(0.1 * math.log(2)), 0.0]
    assert sorted(shaper.memory.keys()) == [("p", False), ("p", True), ("q", False)]


# ---------------------------------------------------------------- reference parity
def reference_vote(rows, labels, query, k):
    """The authors' kNN vote: brute-force cosine neighbours, then np.unique + argmax."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    dist = 1.0 - unit @ (query / np.linalg.norm(query))
    nearest = np.argsort(dist, kind="stable")[: min(k, len(rows))]
    values, counts = np.unique(labels[nearest], return_counts=True)
    tied = int((counts == counts.max()).sum())  # labels sharing the top vote count
    return int(values[np.argmax(counts)]), tied


class ReferenceMEDS:
    """The slow obvious path, written after the authors' code (Linxi000/MEDS,
    recipe/MEDS/layer_logits_utils.py): raw vectors per (problem, correct) key, labels of the last
    fit, a vote against them before the step's rows are appended, then an `hdbscan` package refit
    of every touched key on the L2-normalised rows; fewer than 2 rows are labelled -1.
    """

    def __init__(self, alpha, beta, k):
        self.alpha, self.beta, self.k = alpha, beta, k
        self.rows, self.labels = {}, {}
        self.ties = self.three_way_ties = self.one_row_votes = 0

    def step(self, pids, correct, rewards, feats, kept=None):
        keep = np.ones(len(pids), bool) if kept is None else np.asarray(kept)
        pen = np.zeros(len(pids))
        sizes = np.zeros(len(pids), dtype=np.int64)
        for i, (pid, ok) in enumerate(zip(pids, correct, strict=True)):
            key = (pid, ok)
            if ok or not keep[i] or key not in self.rows:
                continue
            stored = np.array(self.rows[key], dtype=np.float64)
            label, tied = reference_vote(stored, self.labels[key], feats[i].astype(np.float64), 3)
            self.ties += tied > 1
            self.three_way_ties += tied == 3
            self.one_row_votes += len(stored) == 1
            n = int(np.sum(self.labels[key] == label))
            sizes[i] = n
            pen[i] = min(self.alpha * math.log(n + 1), self.beta)
        touched = []
        for i, (pid, ok) in enumerate(zip(pids, correct, strict=True)):
            if keep[i]:
                self.rows.setdefault((pid, ok), []).append(feats[i])
                touched.append((pid, ok))
        for key in dict.fromkeys(touched):
            x = np.array(self.rows[key], dtype=np.float64)
            if len(x) < 2:
                self.labels[key] = np.full(len(x), -1)
                continue
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            self.labels[key] = (
                hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, cluster_selection_method="eom")
                .fit(x)
                .labels_
            )
        return np.asarray(rewards) - pen, pen, sizes


def same_partition(a, b):
    """Whether two labelings make the same clusters and noise (cluster numbers may differ)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist())) and all(
        (x == -1) == (y == -1) for x, y in pairs
    )


def clustered_batch(rng, problems, per_problem, dim, centres):
    pids, correct, feats = [], [], []
    for p in problems:
        for _ in range(per_problem):
            c = centres[p][rng.integers(len(centres[p]))]
            pids.append(p)
            correct.append(bool(rng.random() < 0.4))
            feats.append(c + rng.normal(scale=0.05, size=dim))
    return pids, np.array(correct), np.array(feats, dtype=np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shaper_matches_reference_path_over_many_steps(seed):
    rng = np.random.default_rng(seed)
    dim, problems = 6, ["a", "b", "c", "d"]
    centres = {p: rng.normal(size=(3, dim)) for p in problems}
    shaper = MEDSShaper(MEDSConfig(alpha=0.1, beta=0.2))
    ref = ReferenceMEDS(0.1, 0.2, 3)
    for _ in range(6):
        visited = list(rng.choice(problems, size=3, replace=False))
        pids, correct, feats = clustered_batch(rng, visited, 8, dim, centres)
        rewards = correct.astype(float)
        out = shaper.shape(pids, correct, rewards, feats)
        ref_shaped, ref_pen, ref_sizes = ref.step(pids, correct.tolist(), rewards, feats)
        np.testing.assert_array_equal(out.cluster_sizes, ref_sizes)
        # Penalties within 1 ulp of the reference's math.log(n + 1), whose last bit varies by CPU.
        np.testing.assert_array_max_ulp(out.penalties, np.asarray(ref_pen), maxulp=1)
        np.testing.assert_allclose(out.shaped_rewards, ref_shaped, rtol=0, atol=1e-16)
    for key, rows in ref.rows.items():
        np.testing.assert_array_equal(shaper.memory.bucket(*key).rows, np.array(rows))


def run_groups_of_four(seed):
    """One multi-step scenario; returns the reference (with its tie and one-row counts)."""
    rng = np.random.default_rng(100 + seed)
    dim, problems = 5, [f"q{i}" for i in range(8)]
    centres = {p: rng.normal(size=(4, dim)) for p in problems}
    shaper = MEDSShaper(MEDSConfig(alpha=0.1, beta=0.2))
    ref = ReferenceMEDS(0.1, 0.2, 3)
    shaped_rows = 0
    for _ in range(40):
        visited = list(rng.choice(problems, size=4, replace=False))
        pids, correct, feats = [], [], []
        for p in visited:
            for _ in range(4):  # one group: 4 rollouts of problem p
                pids.append(p)
                correct.append(bool(rng.random() < 0.5))
                mode = centres[p][rng.integers(4)]
                feats.append(mode + rng.normal(scale=rng.choice([0.02, 0.6]), size=dim))
        correct = np.array(correct)
        feats = np.array(feats, dtype=np.float32)
        kept = mixed_groups(pids, correct)
        rewards = correct.astype(float)
        out = shaper.shape(pids, correct, rewards, feats, kept=kept)
        want, want_pen, want_sizes = ref.step(pids, correct.tolist(), rewards, feats, kept=kept)
        np.testing.assert_array_equal(out.cluster_sizes, want_sizes)
        np.testing.assert_array_max_ulp(out.penalties, np.asarray(want_pen), maxulp=1)
        np.testing.assert_allclose(out.shaped_rewards, want, rtol=0, atol=1e-16)
        assert (out.clusters[~kept] == NOT_ASSIGNED).all()
        shaped_rows += int(kept.sum())
    assert shaped_rows > 0
    assert sorted(shaper.memory.keys()) == sorted(ref.rows)
    for key, rows in ref.rows.items():
        np.testing.assert_array_equal(shaper.memory.bucket(*key).rows, np.array(rows))
        ours, theirs = shaper.memory.bucket(*key).labels, ref.labels[key]
        assert same_partition(ours, theirs)
    return ref


def test_every_shaped_reward_equals_the_reference_with_groups_of_four():
    """Groups of 4 rollouts through DAPO's filter, many steps: one-row buckets and three-way vote
    ties happen, and every shaped reward equals the reference's (ties included, none excluded)."""
    refs = [run_groups_of_four(seed) for seed in range(4)]
    assert sum(r.three_way_ties for r in refs) > 0  # the scenarios exercised both rules
    assert sum(r.one_row_votes for r in refs) > 0


# ---------------------------------------------------------------- input validation
def filled_shaper():
    shaper = MEDSShaper()
    shaper.shape(["p"] * 4, [False, False, True, False], [0.0, 0.0, 1.0, 0.0], deg(0, 1, 2, 90))
    return shaper


GOOD = (["p", "p"], [False, True], [0.0, 1.0], deg(3, 4))


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((GOOD[0], GOOD[1], GOOD[2], np.array([[1.0, np.nan], [1.0, 0.0]])), r"features\[0\]"),
        ((GOOD[0], GOOD[1], GOOD[2], np.array([[1.0, 0.0], [np.inf, 0.0]])), r"features\[1\]"),
        ((GOOD[0], GOOD[1], GOOD[2], [deg(1)[0], np.array([1.0, 2.0, 3.0])]), r"features\[1\]"),
        ((GOOD[0], GOOD[1], GOOD[2], np.ones((2, 3))), "features"),  # memory dimension is 2
        ((GOOD[0], GOOD[1], GOOD[2], np.ones((3, 2))), "features"),
        ((GOOD[0], GOOD[1], GOOD[2], [deg(1)[0]]), "features"),
        ((GOOD[0], GOOD[1], GOOD[2], np.zeros((2, 2))), r"features\[0\]"),
        ((GOOD[0], GOOD[1], GOOD[2], [deg(1)[0], "abc"]), r"features\[1\]"),
        ((GOOD[0], GOOD[1], GOOD[2], "abc"), "features"),
        ((GOOD[0], [False], GOOD[2], GOOD[3]), "correct"),
        ((GOOD[0], [False, 2], GOOD[2], GOOD[3]), r"correct\[1\]"),
        ((GOOD[0], [0, 1], GOOD[2], GOOD[3]), r"correct\[0\]"),
        ((GOOD[0], [0.0, 1.0], GOOD[2], GOOD[3]), r"correct\[0\]"),
        ((GOOD[0], ["False", "True"], GOOD[2], GOOD[3]), r"correct\[0\]"),
        ((GOOD[0], np.array([0, 1]), GOOD[2], GOOD[3]), "correct"),
        ((GOOD[0], "TF", GOOD[2], GOOD[3]), "correct"),
        ((GOOD[0], GOOD[1], [0.0, np.nan], GOOD[3]), r"rewards\[1\]"),
        ((GOOD[0], GOOD[1], [np.inf, 0.0], GOOD[3]), r"rewards\[0\]"),
        ((GOOD[0], GOOD[1], [0.0], GOOD[3]), "rewards"),
        ((GOOD[0], GOOD[1], ["a", "b"], GOOD[3]), "rewards"),
        (([1, "p"], GOOD[1], GOOD[2], GOOD[3]), r"problem_ids\[0\]"),
        (("pp", GOOD[1], GOOD[2], GOOD[3]), "problem_ids"),
        ((["p", None], GOOD[1], GOOD[2], GOOD[3]), r"problem_ids\[1\]"),
    ],
)
def test_rejected_input_names_argument_and_leaves_memory_unchanged(args, name):
    shaper = filled_shaper()
    before = snapshot(shaper.memory)
    with pytest.raises(InvalidArgumentError, match=rf"`{name}` must be .*received"):
        shaper.shape(*args)
    assert_same_state(before, snapshot(shaper.memory))
    # the shaper still works afterwards, and the good batch is accepted
    shaper.shape(*GOOD)
    assert len(shaper.memory.bucket("p", False)) == 4


def test_first_batch_fixes_dimension():
    shaper = MEDSShaper()
    shaper.shape(["p"], [False], [0.0], np.ones((1, 3)))
    assert shaper.memory.dim == 3
    with pytest.raises(InvalidArgumentError, match="dimension 3"):
        shaper.shape(["p"], [False], [0.0], np.ones((1, 4)))


def test_numpy_bool_flags_and_int_rewards_accepted():
    shaper = MEDSShaper()
    out = shaper.shape(
        np.array(["p", "p"]),
        np.array([True, False]),
        np.array([1, 0]),
        np.ones((2, 2), dtype=np.float32),
    )
    assert out.shaped_rewards.dtype == np.float64 and out.shaped_rewards.tolist() == [1.0, 0.0]
    out = shaper.shape(["p"], [np.bool_(False)], [0.0], [np.ones(2, dtype=np.float32)])
    assert len(out) == 1


def test_empty_batch_is_a_no_op():
    shaper = filled_shaper()
    before = snapshot(shaper.memory)
    for features in (np.zeros((0, 2)), [], None):
        out = shaper.shape([], [], [], features)
        assert len(out) == 0 and out.penalties.shape == (0,) and out.clusters.dtype == np.int64
    assert_same_state(before, snapshot(shaper.memory))
    fresh = MEDSShaper()
    fresh.shape([], np.zeros(0, dtype=bool), np.zeros(0), np.zeros((0, 5)))
    assert fresh.memory.dim is None and len(fresh.memory) == 0


def test_missing_fingerprints_are_not_stored_or_penalised():
    shaper = filled_shaper()
    before = snapshot(shaper.memory)
    nan_row = np.full(2, np.nan)
    for feats in (None, [None, None], np.stack([nan_row, nan_row]), [nan_row, None]):
        out = shaper.shape(["p", "p"], [False, False], [0.0, 0.0], feats)
        assert out.penalties.tolist() == [0.0, 0.0]
        assert out.clusters.tolist() == [NOT_ASSIGNED] * 2
    assert_same_state(before, snapshot(shaper.memory))
    # a mixed batch stores only the rows that have a fingerprint
    shaper.shape(["p", "p", "new"], [False] * 3, [0.0] * 3, [None, deg(5)[0], nan_row])
    assert len(shaper.memory.bucket("p", False)) == 4 and ("new", False) not in shaper.memory


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_feature_arrays_of_any_float_dtype_give_owned_float32_rows(dtype):
    features = np.array([[1.5, -2.0], [np.nan, np.nan], [0.25, 3.0]], dtype=dtype)
    batch = validate_batch(["p", "p", "p"], [False] * 3, [0.0] * 3, features)
    assert batch.present.tolist() == [0, 2]  # the all-NaN row has no fingerprint
    assert batch.rows.dtype == np.float32 and batch.rows.flags.c_contiguous
    np.testing.assert_array_equal(batch.rows, features[[0, 2]].astype(np.float32))
    assert not np.shares_memory(batch.rows, features)  # the batch owns its rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([np.inf, 1.0], "finite float32"),
        ([1.0, np.nan], "finite float32"),
        ([0.0, -0.0], "a non-zero"),
    ],
)
def test_bad_feature_rows_are_named_in_either_float_dtype(dtype, row, message):
    features = np.array([[1.0, 2.0], row], dtype=dtype)
    with pytest.raises(InvalidArgumentError, match=rf"`features\[1\]` must be {message}"):
        validate_batch(["p", "p"], [False, False], [0.0, 0.0], features)


def test_frozen_mode_assigns_but_never_stores():
    shaper = filled_shaper()
    before = snapshot(shaper.memory)
    shaper.training = False
    first = shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(0.5, 0.5, 0.5))
    second = shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(0.5, 0.5, 0.5))
    assert first.penalties.tolist() == second.penalties.tolist()
    assert first.penalties[0] > 0  # assigned against the stored memory
    assert_same_state(before, snapshot(shaper.memory))
    shaper.training = True
    shaper.shape(["p"], [False], [0.0], deg(0.5))
    assert len(shaper.memory.bucket("p", False)) == 4
    with pytest.raises(InvalidArgumentError, match="`training`"):
        shaper.training = "no"  # type: ignore[assignment]


# ---------------------------------------------------------------- config options
def test_penalize_options():
    rows = deg(0, 1, 2, 0, 1, 2)
    flags = [False, False, False, True, True, True]
    query_flags = [False, True]
    expected = {
        PenaltyTarget.WRONG: [True, False],
        PenaltyTarget.CORRECT: [False, True],
        PenaltyTarget.BOTH: [True, True],
        PenaltyTarget.NONE: [False, False],
    }
    for target, penalised in expected.items():
        shaper = MEDSShaper(MEDSConfig(penalize=target))
        shaper.shape(["p"] * 6, flags, [0.0] * 6, rows)
        out = shaper.shape(["p", "p"], query_flags, [0.0, 1.0], deg(1, 1))
        assert (out.penalties > 0).tolist() == penalised, target
        assert (out.clusters != NOT_ASSIGNED).tolist() == penalised, target
        # every mode keeps learning both buckets
        assert (
            len(shaper.memory.bucket("p", False)) == 4 and len(shaper.memory.bucket("p", True)) == 4
        )


def test_bucket_capacity_evicts_oldest_rows_first():
    cap = 5
    shaper = MEDSShaper(MEDSConfig(bucket_capacity=cap))
    angles = [0, 3, 20, 24, 50, 57, 80, 82]  # irregular gaps: no ties in the hierarchy
    shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(*angles[:3]))
    shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(*angles[3:6]))
    np.testing.assert_allclose(shaper.memory.bucket("p", False).rows, deg(*angles[1:6]), atol=1e-15)
    shaper.shape(["p"] * 2, [False] * 2, [0.0] * 2, deg(*angles[6:]))
    bucket = shaper.memory.bucket("p", False)
    np.testing.assert_allclose(bucket.rows, deg(*angles[3:]), atol=1e-15)
    # the labels are those of a fresh fit on the kept rows
    ref = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1).fit(bucket.rows.copy()).labels_
    assert len(bucket.labels) == cap
    assert _same_partition(bucket.labels, ref)
    # a batch larger than the capacity keeps its newest rows
    shaper.shape(["q"] * 7, [False] * 7, [0.0] * 7, deg(*range(7)))
    np.testing.assert_allclose(
        shaper.memory.bucket("q", False).rows, deg(2, 3, 4, 5, 6), atol=1e-15
    )


def _same_partition(a, b):
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist())) and all(
        (x == -1) == (y == -1) for x, y in pairs
    )


def test_big_bucket_warns_once_with_consequence_and_setting():
    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=4))
    shaper.shape(["p"] * 4, [False] * 4, [0.0] * 4, deg(0, 1, 2, 3))  # 4 rows: not past it
    with pytest.warns(UserWarning, match=r"O\(N\^2\).*bucket_capacity") as record:
        shaper.shape(["p"], [False], [0.0], deg(4))
    assert len(record) == 1 and record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shaper.shape(["p"], [False], [0.0], deg(5))  # once only


def test_stats_sizes_clusters_and_eigen_ratio():
    shaper = MEDSShaper()
    shaper.shape(["p"] * 5 + ["q"], [False] * 6, [0.0] * 6, deg(0, 1, 2, 90, 91, 0))
    stats = shaper.stats()
    assert stats.rows == 6 and stats.buckets == 2 and stats.max_bucket_size == 5
    assert stats.mean_bucket_size == 3.0 and stats.clusters == 2
    rows = shaper.memory.bucket("p", False).rows
    cov = np.cov(rows.T)
    eig = np.linalg.eigvalsh(cov)
    assert stats.top1_eigen_ratio[("p", False)] == pytest.approx(eig.max() / eig.sum())
    assert math.isnan(stats.top1_eigen_ratio[("q", False)])  # one row: undefined
    empty = MEDSShaper().stats()
    assert (empty.rows, empty.buckets, empty.clusters, empty.max_bucket_size) == (0, 0, 0, 0)


def test_collapsed_bucket_has_eigen_ratio_one():
    shaper = MEDSShaper()
    t = np.linspace(0, 1, 20)[:, None]
    shaper.shape(["p"] * 20, [False] * 20, [0.0] * 20, np.hstack([1 + t, 1 + 2 * t, 1 + 3 * t]))
    # rows on one line through the origin all normalise to nearly one point; use a line that does
    # not pass through it: normalised rows then vary along one curve, mostly one direction.
    assert shaper.stats().top1_eigen_ratio[("p", False)] > 0.99


def test_bucket_access_unknown_key_and_read_only_rows():
    shaper = filled_shaper()
    with pytest.raises(UnknownProblemError, match="Did you mean"):
        shaper.memory.bucket("pp", False)
    bucket = shaper.memory.bucket("p", False)
    with pytest.raises(ValueError):
        bucket.rows[0, 0] = 5.0
    np.testing.assert_allclose(np.linalg.norm(bucket.rows, axis=1), 1.0, rtol=1e-15)


def test_config_type_checked():
    with pytest.raises(InvalidArgumentError, match="`config`"):
        MEDSShaper({"alpha": 0.1})  # type: ignore[arg-type]


def test_size_warning_points_at_the_caller():
    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=2))
    with pytest.warns(UserWarning, match="warn_bucket_size=2") as record:
        shaper.shape(["p"] * 3, [False] * 3, [0.0] * 3, deg(0, 1, 2))
    assert len(record) == 1 and record[0].filename == __file__


def test_size_warning_raised_as_error_leaves_the_memory_unchanged():
    shaper = MEDSShaper(MEDSConfig(warn_bucket_size=3))
    shaper.shape(["p"] * 2, [False] * 2, [0.0] * 2, deg(0, 1))
    before = snapshot(shaper.memory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="warn_bucket_size=3"):
            shaper.shape(["p"] * 2, [False] * 2, [0.0] * 2, deg(2, 3))
    assert_same_state(before, snapshot(shaper.memory))
