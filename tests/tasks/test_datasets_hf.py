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


def test_dataset_object_through_dataset_env_with_template_and_skip():
    # The documented way to use a dataset already in memory: gym.make(..., dataset=ds).
    ds = datasets.Dataset.from_list(
        [
            {"Body": "Ann has 3 apples.", "Question": "How many?", "Answer": "3"},
            {"Body": "Bo has no pens.", "Question": "How many?", "Answer": ""},
        ]
    )
    env = gym.make(
        "meds_gym/Dataset-v0",
        dataset=ds,
        prompt_template="{Body} {Question}",
        answer_field="Answer",
        on_bad_row="skip",
    )
    source = env.unwrapped.source
    assert len(source) == 1
    assert [(row.line, row.field, row.reason) for row in source.skipped] == [
        (2, "Answer", "gold answer is empty")
    ]
    obs, info = env.reset(seed=0)
    assert info["question"] == "Ann has 3 apples. How many?"
    assert env.step("\\boxed{3}")[1] == 1.0
    with pytest.raises(DataFileError, match=r"dataset 'dataset', line 2, field 'Answer'"):
        gym.make("meds_gym/Dataset-v0", dataset=ds, prompt_template="{Body}", answer_field="Answer")


def test_damaged_saved_folder_is_a_data_file_error(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "saved"))
    for arrow in (tmp_path / "saved").glob("*.arrow"):
        arrow.write_bytes(b"not an arrow file")
    with pytest.raises(DataFileError, match="saved"):
        DatasetSource.from_hf(
            str(tmp_path / "saved"), name="x", question_field="problem", answer_field="answer"
        )
    (tmp_path / "saved" / "dataset_info.json").write_text("{oops")
    with pytest.raises(DataFileError, match="not a readable datasets save_to_disk folder"):
        load_benchmark("amc23", tmp_path / "saved")


def test_recursion_while_decoding_dataset_rows_is_a_data_file_error(monkeypatch):
    ds = datasets.Dataset.from_list(ROWS)

    def too_deep(self):
        yield ROWS[0]
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(datasets.Dataset, "__iter__", too_deep)
    with pytest.raises(DataFileError, match=r"dataset 'x', line 2: row nested too deeply"):
        DatasetSource.from_hf(ds, name="x", question_field="problem", answer_field="answer")
