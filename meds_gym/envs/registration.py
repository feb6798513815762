"""Factories behind the registered ``meds_gym/<Name>-v0`` ids, and their registration."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from meds_gym.envs.reasoning_env import ReasoningEnv
from meds_gym.errors import InvalidArgumentError

TOY_ENV_IDS: dict[str, str] = {
    "meds_gym/Arithmetic-v0": "arithmetic",
    "meds_gym/AddSub-v0": "addsub",
    "meds_gym/Modular-v0": "modular",
}
"""Registered toy-task ids -> task family (see :data:`meds_gym.tasks.TOY_TASKS`)."""

BENCHMARK_ENV_IDS: dict[str, str] = {
    "meds_gym/MATH500-v0": "math500",
    "meds_gym/AIME24-v0": "aime24",
    "meds_gym/AMC23-v0": "amc23",
    "meds_gym/Minerva-v0": "minerva",
    "meds_gym/OlympiadBench-v0": "olympiadbench",
    "meds_gym/GSM8K-v0": "gsm8k",
}
"""Registered benchmark ids -> benchmark name (see :func:`meds_gym.tasks.load_benchmark`)."""

DATASET_ENV_ID = "meds_gym/Dataset-v0"

REASONING_GYM_ENV_ID = "meds_gym/ReasoningGym-v0"
"""reasoning-gym's procedural tasks (``reasoning-gym`` extra); see ``make_reasoning_gym_env``."""

TRAP_GRID_ENV_ID = "meds_gym/TrapGrid-v0"
"""A non-text grid world with several recurring failure modes (for MEDS beyond text)."""


def make_toy_env(
    task: str,
    num_problems: int = 1000,
    difficulty: int = 1,
    seed: int = 0,
    split: str = "train",
    **env_kwargs: Any,
) -> ReasoningEnv:
    """A :class:`ReasoningEnv` over a procedural toy task.

    Args:
        task: Task family, a key of :data:`meds_gym.tasks.TOY_TASKS`.
        num_problems: Size of the problem set.
        difficulty: Difficulty knob of the family.
        seed: Seed of the problem set (not of the episode order, which ``reset(seed=)`` sets).
        split: ``"train"`` or ``"test"``: disjoint problem sets of the same task and seed.
        **env_kwargs: Passed to :class:`ReasoningEnv`.
    """
    from meds_gym.tasks import TOY_TASKS

    if task not in TOY_TASKS:
        raise InvalidArgumentError("task", f"one of {sorted(TOY_TASKS)}", task)
    source = TOY_TASKS[task](
        num_problems=num_problems, difficulty=difficulty, seed=seed, split=split
    )
    return ReasoningEnv(source, **env_kwargs)


def make_benchmark_env(
    benchmark: str,
    data_path: str | os.PathLike[str] | None = None,
    on_bad_row: str = "raise",
    **env_kwargs: Any,
) -> ReasoningEnv:
    """A :class:`ReasoningEnv` over a benchmark read from a local file; nothing is downloaded.

    Args:
        benchmark: Benchmark name (``"math500"``, ``"gsm8k"``, ...).
        data_path: A local JSON Lines, JSON or Parquet file in the benchmark's public format, or a
            directory written by ``datasets.Dataset.save_to_disk`` (needs the ``datasets`` extra).
        on_bad_row: ``"raise"`` (stop at the first row that cannot be used) or ``"skip"`` (drop
            such rows; ``env.unwrapped.source.skipped`` lists them with their reasons).
        **env_kwargs: Passed to :class:`ReasoningEnv`.
    """
    from meds_gym.tasks import load_benchmark

    if data_path is None:
        raise InvalidArgumentError(
            "data_path",
            f"the path of a local {benchmark} file (JSONL, JSON or Parquet)",
            data_path,
            fix=f'Pass it to gym.make, e.g. gym.make(..., data_path="{benchmark}.jsonl").',
        )
    return ReasoningEnv(load_benchmark(benchmark, data_path, on_bad_row=on_bad_row), **env_kwargs)


def make_dataset_env(
    data_path: str | os.PathLike[str] | None = None,
    question_field: str | None = None,
    answer_field: str | Sequence[str] = "answer",
    answer_extractor: str = "raw",
    id_field: str | None = None,
    name: str = "dataset",
    dataset: Any = None,
    prompt_template: str | None = None,
    on_bad_row: str = "raise",
    **env_kwargs: Any,
) -> ReasoningEnv:
    """A :class:`ReasoningEnv` over any question/answer dataset on the user's disk or in memory.

    Args:
        data_path: A local JSON Lines, JSON or Parquet file, or a ``save_to_disk`` directory.
        question_field: The one field holding the question (``"question"`` when neither this nor
            ``prompt_template`` is given).
        answer_field: Field holding the gold answer (or a solution it is extracted from).
        answer_extractor: How the gold answer is read from ``answer_field``: ``"raw"`` (as is),
            ``"boxed"`` (last ``\\boxed{}``) or ``"gsm8k"`` (text after ``####``).
        id_field: Optional field with a stable row id (otherwise the row index is used).
        name: Prefix of the problem ids.
        dataset: Instead of ``data_path``, a ``datasets.Dataset`` (or a ``DatasetDict`` with one
            split) already in memory, for example built with ``datasets.Dataset.from_list`` or
            returned by ``datasets.load_dataset`` on the user's machine.
        prompt_template: Instead of ``question_field``, a ``str.format`` template that builds the
            question from any fields of each row, such as ``"{Body} {Question}"``. The observation
            is that question followed by the system instruction, as for every id.
        on_bad_row: ``"raise"`` (stop at the first row that cannot be used, naming file, line and
            field) or ``"skip"`` (drop such rows, log one warning with their count and reasons;
            ``env.unwrapped.source.skipped`` lists them).
        **env_kwargs: Passed to :class:`ReasoningEnv`.

    Raises:
        InvalidArgumentError: If ``question_field`` is not one field name (use ``prompt_template``
            to combine fields), or another argument is invalid.
        DataFileError: If the data cannot be read or (with ``on_bad_row="raise"``) a row is bad.

    Example:
        >>> import gymnasium as gym, meds_gym
        >>> import datasets  # doctest: +SKIP
        >>> rows = [{"Body": "Ann has 3 apples.", "Question": "How many?", "Answer": "3"}]
        >>> env = gym.make("meds_gym/Dataset-v0", dataset=datasets.Dataset.from_list(rows),
        ...                prompt_template="{Body} {Question}", answer_field="Answer",
        ...                on_bad_row="skip")  # doctest: +SKIP
        >>> env.reset(seed=0)[1]["question"]  # doctest: +SKIP
        'Ann has 3 apples. How many?'
    """
    from meds_gym.tasks import DatasetSource

    if (data_path is None) == (dataset is None):
        raise InvalidArgumentError(
            "data_path",
            "exactly one of data_path= (a local file) or dataset= (a Dataset)",
            data_path,
        )
    if question_field is not None and not isinstance(question_field, str):
        # A list used to be read as candidates and silently gave the first field (issue 13).
        raise InvalidArgumentError(
            "question_field",
            "one field name (a str)",
            question_field,
            fix="To build the question from several fields, pass a template over them instead, "
            'for example prompt_template="{Body} {Question}".',
        )
    if question_field is None and prompt_template is None:
        question_field = "question"
    loader_kwargs: dict[str, Any] = {
        "name": name,
        "question_field": question_field,
        "answer_field": answer_field,
        "answer_extractor": answer_extractor,
        "id_field": id_field,
        "prompt_template": prompt_template,
        "on_bad_row": on_bad_row,
    }
    if dataset is not None:
        source = DatasetSource.from_hf(dataset, **loader_kwargs)
    elif os.path.isdir(data_path):  # type: ignore[arg-type]
        source = DatasetSource.from_hf(data_path, **loader_kwargs)
    else:
        source = DatasetSource.from_file(data_path, **loader_kwargs)  # type: ignore[arg-type]
    return ReasoningEnv(source, **env_kwargs)


def register_envs() -> None:
    """Register every ``meds_gym/<Name>-v0`` id with Gymnasium (idempotent)."""
    for env_id, task in TOY_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=f"{__name__}:make_toy_env", kwargs={"task": task})
    for env_id, benchmark in BENCHMARK_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=f"{__name__}:make_benchmark_env",
                kwargs={"benchmark": benchmark},
            )
    if DATASET_ENV_ID not in gym.registry:
        gym.register(DATASET_ENV_ID, entry_point=f"{__name__}:make_dataset_env")
    if REASONING_GYM_ENV_ID not in gym.registry:
        gym.register(
            REASONING_GYM_ENV_ID,
            entry_point="meds_gym.envs.reasoning_gym_env:make_reasoning_gym_env",
        )
    if TRAP_GRID_ENV_ID not in gym.registry:
        gym.register(TRAP_GRID_ENV_ID, entry_point="meds_gym.envs.trap_grid:TrapGridEnv")
