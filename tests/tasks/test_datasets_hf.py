"""Hugging Face datasets already on disk, through the loaders and the registered env ids."""

import gymnasium as gym
import pytest

import meds_gym  # noqa: F401
from meds_gym.errors import DataFileError, InvalidArgumentError
from meds_gym.tasks import DatasetSource, load_benchmark

datasets = pytest.importorskip("datasets", reason="the `datasets` extra is not installed")

ROWS = [
    {"problem": "What is 2+2?", "answer": "4", "id": "a"},
    {"problem": "What is 3*3?", "answer": "9", "id": "b"},
]


def test_dataset_object_and_saved_folder_give_the_same_problems(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "saved"))
    kwargs = dict(name="toy", question_field="problem", answer_field="answer", id_field="id")
    from_object = DatasetSource.from_hf(ds, **kwargs)
    from_folder = DatasetSource.from_hf(str(tmp_path / "saved"), **kwargs)
    assert [p.problem_id for p in from_object] == ["toy/a", "toy/b"]
    assert list(from_object) == list(from_folder)
    assert from_folder.get("toy/b").answer == "9"


def test_dataset_env_from_saved_folder_and_object(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "saved"))
    for kwargs in ({"data_path": str(tmp_path / "saved")}, {"dataset": ds}):
        env = gym.make(
            "meds_gym/Dataset-v0", question_field="problem", answer_field="answer", **kwargs
        )
        obs, info = env.reset(options={"index": 1})
        assert "3*3" in obs
        _, reward, *_ = env.step("\\boxed{9}")
        assert reward == 1.0


def test_benchmark_from_saved_dataset_dict_needs_a_split(tmp_path):
    dd = datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(ROWS), "train": datasets.Dataset.from_list(ROWS)}
    )
    dd.save_to_disk(str(tmp_path / "amc"))
    with pytest.raises(InvalidArgumentError, match="split"):
        load_benchmark("amc23", tmp_path / "amc")
    source = load_benchmark("amc23", tmp_path / "amc", split="test")
    assert len(source) == 2 and source[0].answer == "4"


def test_saved_dataset_without_the_answer_field_names_it(tmp_path):
    ds = datasets.Dataset.from_list([{"problem": "What is 2+2?"}])
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataFileError, match="answer"):
        DatasetSource.from_hf(
            str(tmp_path / "saved"), name="x", question_field="problem", answer_field="answer"
        )
