"""The envs' text spaces: cheap to copy into a vector env, independent once copied."""

import copy
import pickle

import gymnasium as gym
import pytest

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.charset import TEXT_CHARSET, CharsetText, text_space


def test_a_deep_copy_shares_the_character_tables_and_owns_its_generator():
    space = text_space(32, TEXT_CHARSET)
    space.seed(3)
    twin = copy.deepcopy(space)
    assert twin == space
    assert twin.character_list is space.character_list
    assert twin.character_set is space.character_set
    assert twin.np_random is not space.np_random
    expected = copy.deepcopy(space).sample()
    twin.sample()
    twin.sample()
    assert space.sample() == expected  # sampling the copy left the original's generator alone


def test_each_env_gets_its_own_space():
    a, b = text_space(16, TEXT_CHARSET), text_space(16, TEXT_CHARSET)
    assert a is not b and a.np_random is not b.np_random
    a.seed(0)
    b.seed(0)
    assert a.sample() == b.sample()
    a.seed(1)
    assert [a.sample() for _ in range(3)] != [b.sample() for _ in range(3)]


def test_a_space_survives_pickling_for_async_vector_envs():
    space = text_space(8, frozenset("0123456789"))
    loaded = pickle.loads(pickle.dumps(space))
    assert isinstance(loaded, CharsetText) and loaded == space
    assert loaded.contains("42") and not loaded.contains("x")


@pytest.mark.parametrize("env_id", ["meds_gym/Arithmetic-v0", "meds_gym/AddSub-v0"])
def test_a_vector_env_batches_the_text_spaces_without_copying_the_tables(env_id):
    vector = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * 4)
    single = vector.single_observation_space
    batched = vector.observation_space.spaces
    assert all(isinstance(s, CharsetText) and s == single for s in batched)
    assert all(s.character_list is batched[0].character_list for s in batched)
    assert len({id(s.np_random) for s in batched}) == len(batched)
    assert vector.action_space.contains(tuple(["\\boxed{7}"] * 4))
    vector.close()
