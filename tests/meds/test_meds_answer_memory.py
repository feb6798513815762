"""The answer-string memory (``ClusterMethod.ANSWER``): MEDS's penalty, clusters by final answer."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import meds_gym  # noqa: F401  (registers the env ids)
from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds import (
    NOT_ASSIGNED,
    ClusterMethod,
    MEDSConfig,
    MEDSEpisodeRewardWrapper,
    MEDSRewardWrapper,
    MEDSShaper,
    MEDSVectorRewardWrapper,
    answer_key,
    meds_penalty,
)
from meds_gym.meds.persistence import atomic_savez

ANSWER = MEDSConfig(cluster_method=ClusterMethod.ANSWER)


def test_answer_key_folds_notation_not_values():
    assert answer_key(" $+007.0$ ") == answer_key("7") == "7"
    assert answer_key("－３") == "-3"  # fullwidth minus and digit (NFKC)
    assert answer_key("-0") == "0"
    assert answer_key("x + 1") == answer_key("x+1")
    assert answer_key("1/2") != answer_key("0.5")  # two strings a model writes: two habits
    assert answer_key(None) is None and answer_key(" . ") is None


def test_penalty_counts_earlier_same_answer_wrong_rollouts():
    shaper = MEDSShaper(ANSWER)
    ids = ["p"] * 5
    correct = [False, False, False, True, False]
    answers = ["5", "05", "6", "7", None]
    first = shaper.shape(ids, correct, [0.0, 0, 0, 1, 0], None, answers=answers)
    assert (first.penalties == 0).all() and (first.clusters == NOT_ASSIGNED).all()
    second = shaper.shape(ids, correct, [0.0, 0, 0, 1, 0], None, answers=answers)
    # "5" and "05" are one answer, stored twice; "6" once; right and unanswered never penalised.
    assert second.cluster_sizes.tolist() == [2, 2, 1, 0, 0]
    np.testing.assert_allclose(second.penalties, meds_penalty(np.array([2, 2, 1, 0, 0]), 0.1, 0.2))
    assert second.clusters[0] == second.clusters[1] != second.clusters[2]
    assert second.clusters[3] == second.clusters[4] == NOT_ASSIGNED
    # Another problem has its own memory.
    other = shaper.shape(["q"], [False], [0.0], None, answers=["5"])
    assert other.penalties.tolist() == [0.0]


def test_kept_and_training_are_respected():
    shaper = MEDSShaper(ANSWER)
    shaper.shape(["p"] * 2, [False] * 2, [0.0] * 2, None, answers=["5", "5"], kept=[True, False])
    assert shaper.memory.answers("p", False) == ("5",)
    shaper.training = False
    out = shaper.shape(["p"], [False], [0.0], None, answers=["5"])
    assert out.cluster_sizes.tolist() == [1]
    assert shaper.memory.answers("p", False) == ("5",)  # frozen


def test_save_load_round_trip_and_crafted_files(tmp_path):
    shaper = MEDSShaper(ANSWER)
    shaper.shape(["p", "p", "q"], [False, True, False], [0.0, 1, 0], None, answers=["5", "7", "x"])
    path = tmp_path / "answers.npz"
    shaper.save(path)
    loaded = MEDSShaper.load(path)
    assert loaded.config == ANSWER and loaded.memory.state() == shaper.memory.state()
    a = shaper.shape(["p"], [False], [0.0], None, answers=["5"])
    b = loaded.shape(["p"], [False], [0.0], None, answers=["5"])
    assert a.penalties.tolist() == b.penalties.tolist() and a.penalties[0] > 0
    meta = {"kind": "MEDSShaper", "config": ANSWER.to_dict(), "bucket_keys": [["p", False]],
            "dim": None}  # fmt: skip
    rows = np.zeros((0, 1), np.float32)
    for answers in ([["5", "5"]], [["5"]] * 2, [[" 5"]], [[5]], "5"):
        atomic_savez(path, {**meta, "answers": answers},
                     {"rows": rows, "bucket_sizes": np.array([1], np.int64)})  # fmt: skip
        with pytest.raises(CorruptFileError):
            MEDSShaper.load(path)


def test_bad_answers_are_rejected_before_anything_changes():
    shaper = MEDSShaper(ANSWER)
    for bad in ("5", ["5"], [5, "6"]):
        with pytest.raises(InvalidArgumentError, match="answers"):
            shaper.shape(["p", "p"], [False, False], [0.0, 0.0], None, answers=bad)
    assert shaper.memory.n_rows == 0
    with pytest.raises(InvalidArgumentError, match="`answers` must be None unless"):
        MEDSShaper().shape(["p"], [False], [0.0], [[1.0, 0.0]], answers=["5"])


@given(st.lists(st.sampled_from(["1", "01", "2", " 2 ", "x", None]), min_size=1, max_size=12))
def test_cluster_size_is_the_count_of_earlier_equal_keys(answers):
    shaper = MEDSShaper(ANSWER)
    ids, wrong = ["p"] * len(answers), [False] * len(answers)
    shaper.shape(ids, wrong, [0.0] * len(answers), None, answers=answers)
    out = shaper.shape(ids, wrong, [0.0] * len(answers), None, answers=answers)
    keys = [answer_key(a) for a in answers]
    assert out.cluster_sizes.tolist() == [keys.count(k) if k else 0 for k in keys]


def test_wrappers_read_the_envs_parsed_answer():
    env = MEDSRewardWrapper(gym.make("meds_gym/Arithmetic-v0", num_problems=1), ANSWER)
    penalties = []
    for _ in range(3):
        _, info = env.reset(seed=0)
        wrong = str(int(env.unwrapped.source.get(info["problem_id"]).answer) + 1)
        # Features are ignored; the parsed answer (not the text around it) is the key.
        action = {"text": f"I think \\boxed{{{wrong}}}.", "features": [1.0, 2.0]}
        _, _, _, _, info = env.step(action if penalties else f"\\boxed{{ {wrong} }}")
        penalties.append(info["meds"]["penalty"])
    assert penalties[0] == 0 < penalties[1] < penalties[2]
    venv = gym.vector.SyncVectorEnv(
        [lambda: gym.make("meds_gym/Arithmetic-v0", num_problems=1)] * 2,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    vec = MEDSVectorRewardWrapper(venv, ANSWER)
    vec.reset(seed=0)
    for _ in range(2):
        _, _, _, _, info = vec.step(["\\boxed{-1}", "\\boxed{-1}"])
    assert info["meds"]["cluster_size"].tolist() == [2, 2]


def test_episode_wrapper_takes_the_answer_from_feature_fn():
    env = MEDSEpisodeRewardWrapper(
        gym.make("FrozenLake-v1", is_slippery=False),
        lambda t: "x".join(map(str, t.actions)),
        ANSWER,
        is_correct=lambda reward, info: reward > 0,
    )
    sizes = []
    for _ in range(2):
        env.reset(seed=0)
        _, _, terminated, _, info = env.step(0)
        while not terminated:
            _, _, terminated, truncated, info = env.step(0)
            terminated = terminated or truncated
        sizes.append(info["meds"]["cluster_size"])
    assert sizes == [0, 1]
    bad = MEDSEpisodeRewardWrapper(
        gym.make("FrozenLake-v1", is_slippery=False), lambda t: [1.0, 2.0], ANSWER,
        is_correct=lambda reward, info: reward > 0,
    )  # fmt: skip
    bad.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match="answer"):
        for _ in range(200):
            bad.step(0)
