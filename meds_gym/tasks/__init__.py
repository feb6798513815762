"""Problem sources: procedural toy tasks with known error modes, and benchmark loaders."""

from meds_gym.tasks.base import Problem, ProblemSource
from meds_gym.tasks.datasets import BENCHMARKS, BenchmarkSpec, DatasetSource, load_benchmark
from meds_gym.tasks.toy import (
    TOY_TASKS,
    AddSubTask,
    ArithmeticTask,
    ModularTask,
    ProceduralTask,
    label_error_modes,
    render_solution,
)

__all__ = [
    "BENCHMARKS",
    "TOY_TASKS",
    "AddSubTask",
    "ArithmeticTask",
    "BenchmarkSpec",
    "DatasetSource",
    "ModularTask",
    "Problem",
    "ProblemSource",
    "ProceduralTask",
    "label_error_modes",
    "load_benchmark",
    "render_solution",
]
