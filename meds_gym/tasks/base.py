"""The problem record and the problem-source protocol shared by toy tasks and benchmark loaders."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One problem with a verifiable answer.

    Example:
        >>> p = Problem(problem_id="demo/0", question="What is 2+3*4?", answer="14",
        ...             error_modes={"precedence_ignored": "20"})
        >>> p.error_modes["precedence_ignored"]
        '20'
    """

    problem_id: str
    """Stable identifier: the same problem has the same id in every process and run."""
    question: str
    """The problem statement shown to the policy (without the system instruction)."""
    answer: str
    """The gold final answer, as a string the verifier compares against (for example ``"14"``)."""
    error_modes: Mapping[str, str] = field(default_factory=dict)
    """Known mistakes for this problem: error-mode name -> the wrong answer that mistake gives.

    Empty for benchmark problems, whose error modes are unknown."""
    metadata: Mapping[str, object] = field(default_factory=dict)
    """Free-form extra data (difficulty, source row, subject, ...)."""


@runtime_checkable
class ProblemSource(Protocol):
    """A finite, indexable collection of problems with stable ids.

    Toy task generators and benchmark loaders both implement it; :class:`meds_gym.envs.ReasoningEnv`
    consumes it.
    """

    @property
    def name(self) -> str:
        """Short name used in error messages and ids (for example ``"arithmetic"``)."""
        ...

    def __len__(self) -> int:
        """Number of problems."""
        ...

    def __getitem__(self, index: int) -> Problem:
        """The problem at ``index`` (0 <= index < len)."""
        ...

    def get(self, problem_id: str) -> Problem:
        """The problem with this id; raises :class:`meds_gym.errors.UnknownProblemError`."""
        ...

    def __iter__(self) -> Iterator[Problem]:
        """Iterate over problems in index order."""
        ...
