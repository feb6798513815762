r"""The procedural toy tasks, their registry, error-mode labelling and worked solutions.

The toy tasks give MEDS something to act on (docs/design.md section 6): every problem knows the
wrong answer of each common mistake of its family, so a wrong rollout can be labelled with its true
error mode, and :func:`render_solution` writes the correct or a buggy worked solution to warm a
small model up on a mixture of procedures.

Example:
    >>> task = TOY_TASKS["arithmetic"](num_problems=5, difficulty=1, seed=0)
    >>> problem = task[0]
    >>> text = render_solution(problem, "precedence_ignored")
    >>> text.endswith("\\boxed{" + problem.error_modes["precedence_ignored"] + "}")
    True
    >>> label_error_modes(problem, problem.error_modes["precedence_ignored"])
    ('precedence_ignored',)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.tasks.addsub import AddSubTask
from meds_gym.tasks.arithmetic import ArithmeticTask
from meds_gym.tasks.base import Problem
from meds_gym.tasks.modular import ModularTask
from meds_gym.tasks.procedural import ProceduralTask, label_error_modes

__all__ = [
    "TOY_TASKS",
    "AddSubTask",
    "ArithmeticTask",
    "ModularTask",
    "ProceduralTask",
    "label_error_modes",
    "render_solution",
]

TOY_TASKS: Mapping[str, type[ProceduralTask[Any]]] = MappingProxyType(
    {task.name: task for task in (ArithmeticTask, AddSubTask, ModularTask)}
)
"""Family name -> task class, e.g. ``TOY_TASKS["arithmetic"] is ArithmeticTask``."""


def render_solution(problem: Problem, error_mode: str | None = None) -> str:
    r"""A short worked solution of any toy problem, ending with ``\boxed{<answer>}``.

    Dispatches on ``problem.metadata["family"]`` to the family's
    :meth:`~meds_gym.tasks.procedural.ProceduralTask.render_solution`. The steps follow the correct
    procedure (``error_mode=None``) or the named buggy procedure, e.g.
    ``"3*4=12, 7+12=19, 19-2=17. Answer: \boxed{17}"``; the boxed answer is ``problem.answer`` or
    ``problem.error_modes[error_mode]``.

    Args:
        problem: A problem made by one of the :data:`TOY_TASKS`.
        error_mode: ``None`` for the correct solution, or one of ``problem.error_modes``.

    Returns:
        Plain ASCII text.

    Raises:
        TypeError: If ``problem`` is not a :class:`Problem`.
        InvalidArgumentError: If ``problem`` was not made by a toy task, or ``error_mode`` is
            not ``None`` or one of ``problem.error_modes``.
    """
    if not isinstance(problem, Problem):
        raise invalid_type("problem", "a meds_gym.tasks.base.Problem", problem)
    family = problem.metadata.get("family")
    task = TOY_TASKS.get(family) if isinstance(family, str) else None
    if task is None:
        raise InvalidArgumentError(
            "problem",
            f"a problem made by a toy task (metadata['family'] one of {sorted(TOY_TASKS)})",
            problem.problem_id,
        )
    return task.render_solution(problem, error_mode)
