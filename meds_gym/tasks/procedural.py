"""Shared machinery of the procedural toy tasks: seeding, ids, validation and problem assembly.

A procedural task family describes a problem by a small frozen *spec* (the numbers and operators),
draws that spec from a random generator seeded by ``(seed, difficulty, index, family constant)``,
and solves it with one correct procedure and several *buggy* procedures (error modes). Every buggy
procedure is a deterministic solver, so the wrong answer of each mode is known for every problem
(docs/design.md section 6).

Every family splits its problems into a ``"train"`` and a ``"test"`` set, disjoint by
construction: a question belongs to the split named by one bit of a hash of its text
(:func:`question_split`), and problem ``i`` of a split is the first spec drawn from problem
``i``'s random stream whose question falls in that split. No question can be in both sets,
whatever their sizes and seeds (issue 9: held-out evaluation).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from meds_gym.errors import InvalidArgumentError, UnknownProblemError, invalid_type
from meds_gym.tasks.base import Problem

MIN_DIFFICULTY = 1
"""Easiest supported difficulty level."""
MAX_DIFFICULTY = 5
"""Hardest supported difficulty level."""

SpecT = TypeVar("SpecT")

_ALL_IDS_LIMIT = 10_000
"""Up to this many problems, an unknown-id error compares against every known id."""

SPLITS = ("train", "test")
"""The problem splits of every procedural family; ``"train"`` is the default."""
_SPLIT_DRAWS = 1_000
"""Specs drawn at most for one problem of a split (each lands in it with probability 1/2)."""
_RECENT_PROBLEMS = 4096
"""Generated problems a task keeps for reuse (the whole set when it is no larger)."""
_SHARED_RECENT: dict[tuple[type, str], dict[int, Problem]] = {}
"""The recent problems of each (family, difficulty, seed, split), shared by its instances."""


def question_split(question: str) -> str:
    """The split a question belongs to: one bit of the BLAKE2b hash of its text.

    The same text is in the same split in every process, family and seed, so two splits can never
    share a question.

    Args:
        question: A problem's question text.

    Returns:
        ``"train"`` or ``"test"``.
    """
    digest = hashlib.blake2b(question.encode("utf-8"), digest_size=8).digest()
    return SPLITS[digest[0] & 1]


@dataclasses.dataclass(frozen=True)
class Solution:
    """A worked solution: the steps as written and the integer it ends with."""

    steps: tuple[str, ...]
    """Short plain-ASCII steps, in the order the procedure performs them (e.g. ``"3*4=12"``)."""
    answer: int
    """The final answer the procedure reaches."""


_INTEGER = re.compile(r"[+-]?[0-9]{1,60}")
"""An integer answer; longer digit strings cannot match any toy answer and are not parsed."""


def _as_integer(text: str) -> int | None:
    """``text`` as an integer after stripping whitespace, or ``None`` if it is not one."""
    match = _INTEGER.fullmatch(text.strip())
    return int(match.group(0)) if match else None


def label_error_modes(problem: Problem, answer: str) -> tuple[str, ...]:
    r"""The error modes of ``problem`` whose wrong answer equals ``answer``.

    Answers are compared as integers after stripping whitespace, so ``" 038"`` matches ``"38"``.
    Several modes can share one wrong answer; all of them are returned.

    Args:
        problem: Any problem; only its ``answer`` and ``error_modes`` are read.
        answer: A parsed final answer, e.g. the content of the last ``\boxed{}``.

    Returns:
        The matching mode names, sorted. Empty for the correct answer, for an answer no known
        mistake gives, and for text that is not an integer.

    Raises:
        TypeError: If ``problem`` is not a :class:`Problem` or ``answer`` is not a string.
    """
    if not isinstance(problem, Problem):
        raise invalid_type("problem", "a meds_gym.tasks.base.Problem", problem)
    if not isinstance(answer, str):
        raise invalid_type("answer", "a str", answer)
    value = _as_integer(answer)
    if value is None or value == _as_integer(problem.answer):
        return ()
    return tuple(
        sorted(mode for mode, wrong in problem.error_modes.items() if _as_integer(wrong) == value)
    )


def validated_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) in ``[minimum, maximum]`` and return it.

    Args:
        name: Parameter name, used in the error message.
        value: The received value; Python and NumPy integers are accepted.
        minimum: Smallest allowed value.
        maximum: Largest allowed value, or ``None`` for no upper bound.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        InvalidArgumentError: If ``value`` is not an integer or is out of range.
    """
    if maximum is None:
        expected = f"an integer >= {minimum}"
    else:
        expected = f"an integer in [{minimum}, {maximum}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(name, expected, value)
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise InvalidArgumentError(name, expected, value)
    return number


def unknown_error_mode(family: type[ProceduralTask[Any]], error_mode: Any) -> InvalidArgumentError:
    """The error for an error-mode name that ``family`` does not define; lists the valid ones."""
    return InvalidArgumentError(
        "error_mode", f"None or one of {list(family.error_mode_names)}", error_mode
    )


class ProceduralTask(abc.ABC, Generic[SpecT]):
    """A seeded, lazily generated family of problems with known error modes.

    Problem ``i`` is a pure function of ``(seed, difficulty, split, i)``: it is the first spec drawn
    from ``numpy.random.default_rng([seed, difficulty, i, family_constant])`` whose question is in
    ``split`` (:func:`question_split`), so it is the same in every process and does not depend on
    which problems were generated before. Problems are made on access; nothing is materialised up
    front. The ``"train"`` and ``"test"`` splits never share a question.

    Subclasses define the spec type, how a spec is drawn, the question text and the solvers.

    Args:
        num_problems: Number of problems, at least 1.
        difficulty: Difficulty level in ``[MIN_DIFFICULTY, MAX_DIFFICULTY]``.
        seed: Non-negative integer seed.
        split: ``"train"`` (default) or ``"test"``: two disjoint problem sets of the same family,
            difficulty and seed. Test ids carry the split (``"arithmetic/d1/s0/test/3"``).

    Raises:
        InvalidArgumentError: If an argument is not an integer or is out of range, or ``split``
            is not one of :data:`SPLITS`.
    """

    name: ClassVar[str]
    """Family name: the first component of every problem id."""
    family_constant: ClassVar[int]
    """Fixed integer mixed into the seed so that families with equal seeds differ."""
    error_mode_names: ClassVar[tuple[str, ...]]
    """Every error mode the family defines, sorted; a problem lists those that change its answer."""
    spec_type: ClassVar[type[Any]]
    """The frozen dataclass that describes one problem; its fields are stored in the metadata."""

    def __init__(
        self, num_problems: int = 1000, difficulty: int = 1, seed: int = 0, split: str = "train"
    ) -> None:
        self.num_problems = validated_int("num_problems", num_problems, 1)
        self.difficulty = validated_int("difficulty", difficulty, MIN_DIFFICULTY, MAX_DIFFICULTY)
        self.seed = validated_int("seed", seed, 0)
        if not isinstance(split, str) or split not in SPLITS:
            raise InvalidArgumentError(
                "split",
                f"one of {list(SPLITS)}",
                split,
                'Train on split="train" and evaluate on split="test".',
            )
        self.split = split
        # Train ids keep the historical form; test ids name their split.
        split_part = "" if split == "train" else f"{split}/"
        self._id_prefix = f"{self.name}/d{self.difficulty}/s{self.seed}/{split_part}"
        self._id_pattern = re.compile(re.escape(self._id_prefix) + r"(0|[1-9][0-9]*)")
        # Generated problems, reused on revisits. The instances of one family, difficulty, seed
        # and split generate the same problems (the sub-envs of a vector env, the scoring and
        # the shaping envs of a training run), so they share them; a subclass with its own
        # constructor may generate from more than these and keeps its own.
        if type(self).__init__ is ProceduralTask.__init__:
            key = (type(self), self._id_prefix)
            self._recent: dict[int, Problem] = _SHARED_RECENT.setdefault(key, {})
        else:
            self._recent = {}

    # -- family hooks ------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def generate_spec(cls, rng: np.random.Generator, difficulty: int) -> SpecT:
        """Draw one problem spec at ``difficulty`` from ``rng``."""

    @classmethod
    @abc.abstractmethod
    def question_text(cls, spec: SpecT) -> str:
        """The question shown to the policy, in plain ASCII."""

    @classmethod
    @abc.abstractmethod
    def solve_correct(cls, spec: SpecT) -> Solution:
        """Solve ``spec`` with the correct procedure."""

    @classmethod
    @abc.abstractmethod
    def solve_buggy(cls, spec: SpecT, error_mode: str) -> Solution | None:
        """Solve ``spec`` with the buggy procedure ``error_mode`` (one of ``error_mode_names``).

        Returns ``None`` when the procedure does not apply to this spec (for example a borrow
        mistake on an addition).
        """

    @classmethod
    def solve(cls, spec: SpecT, error_mode: str | None = None) -> Solution | None:
        """Solve ``spec`` with the correct procedure (``None``) or the named buggy procedure.

        Returns:
            The worked solution, or ``None`` if the buggy procedure does not apply to ``spec``.

        Raises:
            InvalidArgumentError: If ``error_mode`` is not one of ``error_mode_names``.
        """
        if error_mode is None:
            return cls.solve_correct(spec)
        if error_mode not in cls.error_mode_names:
            raise unknown_error_mode(cls, error_mode)
        return cls.solve_buggy(spec, error_mode)

    # -- problem assembly --------------------------------------------------------------------

    @classmethod
    def spec_to_metadata(cls, spec: SpecT) -> dict[str, object]:
        """The spec's fields as plain values (tuples, ints, strings) for ``Problem.metadata``."""
        return {f.name: getattr(spec, f.name) for f in dataclasses.fields(cls.spec_type)}

    @classmethod
    def spec_from_metadata(cls, metadata: Mapping[str, object]) -> SpecT:
        """Rebuild the spec from ``Problem.metadata`` (lists, e.g. after JSON, become tuples).

        Raises:
            InvalidArgumentError: If a spec field is missing from the metadata.
        """
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls.spec_type):
            if f.name not in metadata:
                raise InvalidArgumentError(
                    "problem",
                    f"a {cls.name} problem whose metadata holds {f.name!r}",
                    dict(metadata),
                )
            value = metadata[f.name]
            values[f.name] = tuple(value) if isinstance(value, (list, tuple)) else value
        spec: SpecT = cls.spec_type(**values)
        return spec

    @classmethod
    def error_mode_answers(cls, spec: SpecT) -> dict[str, str]:
        """Error mode -> wrong answer, for every mode that applies and differs from the gold."""
        gold = cls.solve_correct(spec)
        answers: dict[str, str] = {}
        for mode in cls.error_mode_names:
            wrong = cls.solve_buggy(spec, mode)
            if wrong is not None and wrong.answer != gold.answer:
                answers[mode] = str(wrong.answer)
        return answers

    @classmethod
    def render_solution(cls, problem: Problem, error_mode: str | None = None) -> str:
        r"""A short worked solution of one of this family's problems, ending with ``\boxed{}``.

        The steps follow the correct procedure (``error_mode=None``) or the named buggy procedure,
        one template per family, e.g. ``"3*4=12, 7+12=19, 19-2=17. Answer: \boxed{17}"``. The
        boxed answer is ``problem.answer`` or ``problem.error_modes[error_mode]``.

        Args:
            problem: A problem made by this family (its metadata holds the spec).
            error_mode: ``None`` for the correct solution, or one of ``problem.error_modes``.

        Returns:
            Plain ASCII text.

        Raises:
            TypeError: If ``problem`` is not a :class:`Problem`.
            InvalidArgumentError: If ``problem`` was not made by this family, or ``error_mode`` is
                not ``None`` or one of ``problem.error_modes``.
        """
        if not isinstance(problem, Problem):
            raise invalid_type("problem", "a meds_gym.tasks.base.Problem", problem)
        if problem.metadata.get("family") != cls.name:
            raise InvalidArgumentError(
                "problem",
                f"a problem made by {cls.__name__} (metadata['family'] == {cls.name!r})",
                problem.problem_id,
            )
        if error_mode is None:
            expected = problem.answer
        elif isinstance(error_mode, str) and error_mode in problem.error_modes:
            expected = problem.error_modes[error_mode]
        else:
            fix = None
            if error_mode in cls.error_mode_names:
                fix = f"On {problem.problem_id!r} the mistake {error_mode!r} gives the gold answer."
            raise InvalidArgumentError(
                "error_mode",
                f"None or one of this problem's error modes {sorted(problem.error_modes)}",
                error_mode,
                fix,
            )
        spec = cls.spec_from_metadata(problem.metadata)
        try:
            solution = cls.solve(spec, error_mode)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as error:
            raise InvalidArgumentError(
                "problem", f"a {cls.name} problem with a well-formed spec", problem.problem_id
            ) from error
        if solution is None or str(solution.answer) != expected:
            raise InvalidArgumentError(
                "problem",
                f"a {cls.name} problem whose metadata agrees with its answers",
                problem.problem_id,
            )
        return f"{', '.join(solution.steps)}. Answer: \\boxed{{{solution.answer}}}"

    @staticmethod
    def label_error_modes(problem: Problem, answer: str) -> tuple[str, ...]:
        """The error modes of ``problem`` whose wrong answer equals ``answer``.

        See :func:`label_error_modes`.
        """
        return label_error_modes(problem, answer)

    def problem_id_at(self, index: int) -> str:
        """The id of problem ``index``, e.g. ``"arithmetic/d1/s0/17"``."""
        return f"{self._id_prefix}{self._checked_index(index)}"

    def _checked_index(self, index: Any) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise invalid_type("index", "an int", index)
        position = int(index)
        if position < 0:
            position += self.num_problems
        if not 0 <= position < self.num_problems:
            raise IndexError(
                f"`index` must be in [-{self.num_problems}, {self.num_problems}); received {index}."
            )
        return position

    def _make_problem(self, index: int) -> Problem:
        """The problem at a checked index, generated once and reused while it stays recent.

        An RL loop comes back to the same problems many times per step (group sampling, scoring,
        reward shaping); generating one costs about half a millisecond. Problems are frozen, so
        the same object can be handed out again.
        """
        problem = self._recent.get(index)
        if problem is None:
            if len(self._recent) >= _RECENT_PROBLEMS:
                self._recent.clear()
            problem = self._recent[index] = self._generate_problem(index)
        return problem

    def _generate_problem(self, index: int) -> Problem:
        rng = np.random.default_rng([self.seed, self.difficulty, index, self.family_constant])
        for _ in range(_SPLIT_DRAWS):
            spec = self.generate_spec(rng, self.difficulty)
            if question_split(self.question_text(spec)) == self.split:
                break
        else:  # pragma: no cover - probability 2**-1000
            raise RuntimeError(f"no {self.split} question in {_SPLIT_DRAWS} draws")
        gold = self.solve_correct(spec)
        metadata: dict[str, object] = {
            "family": self.name,
            "difficulty": self.difficulty,
            "seed": self.seed,
            "split": self.split,
            "index": index,
        }
        metadata.update(self.spec_to_metadata(spec))
        return Problem(
            problem_id=f"{self._id_prefix}{index}",
            question=self.question_text(spec),
            answer=str(gold.answer),
            error_modes=self.error_mode_answers(spec),
            metadata=metadata,
        )

    # -- ProblemSource -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of problems."""
        return self.num_problems

    def __getitem__(self, index: int) -> Problem:
        """The problem at ``index``; negative indices count from the end.

        Raises:
            TypeError: If ``index`` is not an integer.
            IndexError: If ``index`` is out of range.
        """
        return self._make_problem(self._checked_index(index))

    def __iter__(self) -> Iterator[Problem]:
        """Iterate over the problems in index order, generating each on demand."""
        for index in range(self.num_problems):
            yield self._make_problem(index)

    def get(self, problem_id: str) -> Problem:
        """The problem with this id.

        Raises:
            TypeError: If ``problem_id`` is not a string.
            UnknownProblemError: If the id is malformed, names another family, difficulty or
                seed, or its index is out of range.
        """
        if not isinstance(problem_id, str):
            raise invalid_type("problem_id", "a str", problem_id)
        match = self._id_pattern.fullmatch(problem_id)
        if match is None or int(match.group(1)) >= self.num_problems:
            raise UnknownProblemError(
                problem_id,
                self._suggestion_ids(problem_id),
                repr(self),
                num_known=self.num_problems,
            )
        return self._make_problem(int(match.group(1)))

    def _suggestion_ids(self, problem_id: str) -> list[str]:
        """Known ids to suggest from: all of them for up to ``_ALL_IDS_LIMIT`` problems.

        Larger sets offer the first ids and the id with the same trailing index, which covers
        the usual slip (another difficulty or seed) without listing a million ids.
        """
        if self.num_problems <= _ALL_IDS_LIMIT:
            return [f"{self._id_prefix}{i}" for i in range(self.num_problems)]
        ids = [f"{self._id_prefix}{i}" for i in range(_ALL_IDS_LIMIT)]
        trailing = re.search(r"[0-9]{1,18}$", problem_id)
        if trailing is not None and int(trailing.group(0)) < self.num_problems:
            ids.append(f"{self._id_prefix}{int(trailing.group(0))}")
        return ids

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_problems={self.num_problems}, "
            f"difficulty={self.difficulty}, seed={self.seed}, split={self.split!r})"
        )
