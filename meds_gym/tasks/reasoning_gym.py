"""reasoning-gym's procedural tasks as a problem source (the optional ``reasoning-gym`` extra).

`reasoning-gym <https://pypi.org/project/reasoning-gym/>`_ generates puzzles, algorithmic, logic,
arithmetic and induction tasks procedurally and scores answers with each task's own
``score_answer`` (partial credit for some). Nothing is downloaded at run time.

A :class:`ReasoningGymSource` generates ``size`` entries of one task, or of a weighted mix of
tasks (reasoning-gym's ``composite`` dataset: each index draws its task from the weights), when it
is built, and keeps them:

* problem ids are ``"reasoning_gym/<task>/<seed>/<index>/<digest>"``, where the digest is a
  SHA-256 of (task, seed, index, question, answer): the same settings give the same ids in every
  process, and an id from a different task version or config is unknown rather than silently
  pointing at another problem (the tasks of :data:`HASH_SEED_DEPENDENT_TASKS` generate other
  problems in another process unless ``PYTHONHASHSEED`` is fixed; the source warns);
* the source scores answers through reasoning-gym (``score_answer`` hook of
  :class:`meds_gym.envs.ReasoningEnv`), and puts the task name and the entry's metadata, made
  JSON-safe, in the env's ``info`` (``problem_info`` hook);
* its ``charset`` is the project's :data:`meds_gym.charset.TEXT_CHARSET` plus every character
  of the generated questions and answers, so that tasks whose questions hold emoji, box drawings or
  other symbols outside the project charset keep their exact text and still lie in the env's
  observation space (nothing is replaced or dropped);
* a scorer that raises on an answer it cannot read scores it 0 (:class:`ScorerErrors`).

Example:
    >>> source = ReasoningGymSource("chain_sum", size=4, seed=0)  # doctest: +SKIP
    >>> problem = source[0]  # doctest: +SKIP
    >>> source.score_answer(problem, problem.answer)  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from typing import Any

from meds_gym.charset import TEXT_CHARSET
from meds_gym.errors import (
    InvalidArgumentError,
    MissingExtraError,
    UnknownProblemError,
    invalid_type,
)
from meds_gym.tasks.base import Problem

logger = logging.getLogger(__name__)

EXTRA = "reasoning-gym"
"""The optional extra that installs reasoning-gym: ``pip install 'meds-gym[reasoning-gym]'``."""

ID_PREFIX = "reasoning_gym"
"""First part of every problem id of a :class:`ReasoningGymSource`."""

HASH_SEED_DEPENDENT_TASKS: frozenset[str] = frozenset(
    {
        "isomorphic_strings",
        "knight_swap",
        "list_functions",
        "polynomial_multiplication",
        "ransom_note",
        "word_ladder",
    }
)
"""Tasks whose generated problems depend on Python's string-hash seed (reasoning-gym 0.1.25
iterates over sets of strings): the same seed gives other problems, hence other problem ids, in
another process unless ``PYTHONHASHSEED`` is fixed (found by generating every task under two hash
seeds)."""

_COMPOSITE = "composite"
_RESERVED_CONFIG_KEYS = ("size", "seed")


class ScorerErrors(str, Enum):
    """What a reasoning-gym scorer that raises on an answer means."""

    WRONG = "wrong"
    """The answer scores 0 (logged once per task). Some scorers parse the answer and raise on
    text they cannot read (``prime_factorization`` calls ``int`` on it): a garbage answer is a
    wrong answer, not a crash."""
    RAISE = "raise"
    """The exception propagates (to debug a scorer)."""


def _reasoning_gym() -> Any:
    """The ``reasoning_gym.factory`` module, or a :class:`MissingExtraError` naming the extra."""
    try:
        from reasoning_gym import factory
    except ImportError as error:
        raise MissingExtraError("reasoning-gym tasks", EXTRA, "reasoning-gym") from error
    return factory


def reasoning_gym_task_names() -> list[str]:
    """Sorted names of every reasoning-gym task (without its ``composite`` mixer).

    Raises:
        MissingExtraError: If reasoning-gym is not installed.
    """
    return sorted(name for name in _reasoning_gym().DATASETS if name != _COMPOSITE)


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: dicts with string keys, lists, str, int, finite float, bool, None.

    Tuples and sets become lists (sets sorted by their JSON text), dataclasses dicts, numpy
    scalars and arrays Python numbers and lists, non-finite floats their name (``"nan"``,
    ``"inf"``), and anything else its ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return json_safe(tolist())
    return str(value)


def _problem_id(task: str, seed: int, index: int, question: str, answer: str | None) -> str:
    payload = json.dumps([task, seed, index, question, answer], ensure_ascii=True)
    digest = hashlib.sha256(payload.encode("ascii")).hexdigest()[:12]
    return f"{ID_PREFIX}/{task}/{seed}/{index}/{digest}"


def _parse_tasks(task: Any) -> dict[str, float]:
    """Task name -> weight, from one name, a sequence of names or a mapping of weights."""
    expected = "a reasoning-gym task name, a list of names, or a dict of name -> weight"
    if isinstance(task, str):
        weights = {task: 1.0}
    elif isinstance(task, Mapping):
        weights = {}
        for name, weight in task.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise invalid_type(f"task[{name!r}]", "a positive number (a weight)", weight)
            if not (math.isfinite(weight) and weight > 0):
                raise InvalidArgumentError(f"task[{name!r}]", "a positive finite weight", weight)
            weights[name] = float(weight)
    elif isinstance(task, Sequence):
        weights = {name: 1.0 for name in task}
        if len(weights) != len(task):
            raise InvalidArgumentError("task", "distinct task names", task)
    else:
        raise invalid_type("task", expected, task)
    if not weights:
        raise InvalidArgumentError("task", expected, task)
    known = reasoning_gym_task_names()
    for name in weights:
        if not isinstance(name, str):
            raise invalid_type("task", expected + " (names are str)", name)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = "Did you mean " + ", ".join(repr(c) for c in close) + "? " if close else ""
            raise InvalidArgumentError(
                "task",
                "the name of a reasoning-gym task",
                name,
                fix=hint + "reasoning_gym_task_names() lists them all.",
            )
    return weights


def _task_config(name: str, config: Any) -> dict[str, Any]:
    """Validate one task's config dict (fields of its reasoning-gym config class)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise invalid_type(f"config for {name!r}", "a dict of config field -> value", config)
    reserved = [key for key in _RESERVED_CONFIG_KEYS if key in config]
    if reserved:
        raise InvalidArgumentError(
            f"config for {name!r}",
            "a dict without 'size' or 'seed'",
            dict(config),
            fix="Pass size= and seed= to the source (or gym.make) instead.",
        )
    return dict(config)


def _config_error(name: str, config: Mapping[str, Any], error: Exception) -> InvalidArgumentError:
    factory = _reasoning_gym()
    config_cls = factory.DATASETS[name][1]
    fields = sorted(
        f.name for f in dataclasses.fields(config_cls) if f.name not in ("size", "seed")
    )
    return InvalidArgumentError(
        f"config for {name!r}",
        f"fields of reasoning-gym's {config_cls.__name__} ({', '.join(fields)}) with valid values "
        f"({type(error).__name__}: {error})",
        dict(config),
    )


def _build_dataset(
    factory: Any,
    weights: Mapping[str, float],
    configs: Mapping[str, dict[str, Any]],
    size: int,
    seed: int,
) -> Any:
    """The reasoning-gym dataset: one task's own, or a ``composite`` over the mix."""
    for name, config in configs.items():
        try:  # building a dataset generates nothing; it validates the config
            dataset = factory.create_dataset(name, size=size, seed=seed, **config)
        except (TypeError, ValueError, AssertionError) as error:
            raise _config_error(name, config, error) from error
    if len(weights) == 1:
        return dataset
    from reasoning_gym.composite import DatasetSpec

    specs = [
        DatasetSpec(name=name, weight=weight, config=dict(configs[name]))
        for name, weight in weights.items()
    ]
    return factory.create_dataset(_COMPOSITE, size=size, seed=seed, datasets=specs)


class ReasoningGymSource:
    """A reasoning-gym task (or a weighted mix of tasks) as a :class:`ProblemSource`.

    The entries are generated at construction (``size`` of them) and kept: reasoning-gym
    generates each entry from ``(seed, index)``, so the same arguments give the same problems and
    problem ids in every process.

    Args:
        task: A task name (``"chain_sum"``), a list of names (equal weights), or a dict of name ->
            positive weight: a mix in which each index draws its task from the weights, exactly as
            reasoning-gym's ``composite`` dataset does (task ``i`` of the mix is generated with
            seed ``seed + i + 1``).
        size: Number of problems.
        seed: Seed of the generator.
        config: For one task, its reasoning-gym config fields (``{"min_terms": 2}``); for a mix,
            a dict of task name -> such a dict (tasks left out use their defaults). ``size`` and
            ``seed`` are arguments of their own.
        scorer_errors: What a scorer that raises on an answer means (:class:`ScorerErrors`).

    Raises:
        MissingExtraError: If reasoning-gym is not installed.
        InvalidArgumentError: For an unknown task, a bad weight, size or seed, or a config that
            reasoning-gym rejects (the message lists the task's config fields).
    """

    def __init__(
        self,
        task: str | Sequence[str] | Mapping[str, float],
        *,
        size: int = 500,
        seed: int = 0,
        config: Mapping[str, Any] | None = None,
        scorer_errors: str | ScorerErrors = ScorerErrors.WRONG,
    ) -> None:
        factory = _reasoning_gym()
        weights = _parse_tasks(task)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidArgumentError("size", "a positive integer", size)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidArgumentError("seed", "an integer in [0, 2**32)", seed)
        try:
            self.scorer_errors = ScorerErrors(scorer_errors)
        except ValueError:
            raise InvalidArgumentError(
                "scorer_errors",
                "one of " + ", ".join(repr(e.value) for e in ScorerErrors),
                scorer_errors,
            ) from None
        if config is not None and not isinstance(config, Mapping):
            raise invalid_type("config", "a dict", config)
        self.tasks: dict[str, float] = weights
        """Task name -> weight (one task: weight 1)."""
        self.size = size
        self.seed = seed
        mix = len(weights) > 1
        if mix:
            unknown = sorted(set(config or {}) - set(weights))
            if unknown:
                raise InvalidArgumentError(
                    "config",
                    "a dict of task name -> config dict, naming only tasks of the mix "
                    f"({', '.join(weights)})",
                    dict(config or {}),
                    fix=f"Remove {', '.join(repr(u) for u in unknown)} or add it to task=.",
                )
            configs = {name: _task_config(name, (config or {}).get(name)) for name in weights}
        else:
            (name,) = weights
            configs = {name: _task_config(name, config)}
        self.config: dict[str, dict[str, Any]] = configs
        """Task name -> the config fields given (defaults left out)."""
        unstable = sorted(HASH_SEED_DEPENDENT_TASKS.intersection(weights))
        if unstable and os.environ.get("PYTHONHASHSEED", "random") == "random":
            warnings.warn(
                f"reasoning-gym generates {', '.join(unstable)} from Python's string-hash seed, "
                "so another process gets other problems and problem ids for the same seed "
                "(group sampling across processes fails with UnknownProblemError). Set "
                "PYTHONHASHSEED=0 in the environment of every process.",
                stacklevel=2,
            )
        self._dataset = _build_dataset(factory, weights, configs, size, seed)
        self._entries: list[dict[str, Any]] = []
        self._problems: list[Problem] = []
        self._by_id: dict[str, int] = {}
        chars: set[str] = set()
        for index in range(size):
            entry = self._dataset[index]
            self._entries.append(entry)
            problem = self._problem(index, entry)
            self._problems.append(problem)
            self._by_id[problem.problem_id] = index
            chars.update(problem.question, problem.answer)
        self.charset: frozenset[str] = TEXT_CHARSET | frozenset(chars)
        """Characters of the env's text spaces: the project charset plus every character of the
        questions and gold answers."""
        self._warned_scorer_error: set[str] = set()

    def _problem(self, index: int, entry: Mapping[str, Any]) -> Problem:
        metadata = entry.get("metadata") or {}
        # A mix records each entry's task in its metadata, as reasoning-gym's composite does.
        task = str(metadata["source_dataset"]) if len(self.tasks) > 1 else next(iter(self.tasks))
        question = str(entry["question"])
        answer = entry.get("answer")
        # Tasks with many valid answers (graph colouring, Rubik's cube, ...) have no single gold
        # answer: only their scorer can tell; the problem's answer is then "".
        gold = "" if answer is None else str(answer)
        return Problem(
            problem_id=_problem_id(
                task, self.seed, index, question, None if answer is None else gold
            ),
            question=question,
            answer=gold,
            metadata={
                "task": task,
                "index": index,
                "has_gold_answer": answer is not None,
                "reasoning_gym": json_safe(metadata),
            },
        )

    # -- ProblemSource -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``"reasoning_gym/<task>"``, or ``"reasoning_gym/mix"`` for several tasks."""
        return (
            f"{ID_PREFIX}/{next(iter(self.tasks))}" if len(self.tasks) == 1 else f"{ID_PREFIX}/mix"
        )

    def __len__(self) -> int:
        """Number of problems (``size``)."""
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        """The problem at ``index``."""
        return self._problems[index]

    def __iter__(self) -> Iterator[Problem]:
        """Problems in index order."""
        return iter(self._problems)

    def get(self, problem_id: str) -> Problem:
        """The problem with this id.

        Raises:
            UnknownProblemError: If no problem of this source has that id (an id from another
                seed, size, config or reasoning-gym version).
        """
        index = self._by_id.get(problem_id) if isinstance(problem_id, str) else None
        if index is None:
            raise UnknownProblemError(
                problem_id, list(self._by_id)[:1000], self.name, num_known=len(self)
            )
        return self._problems[index]

    # -- hooks of ReasoningEnv -----------------------------------------------------------------

    def entry(self, problem: Problem) -> dict[str, Any]:
        """The reasoning-gym entry (question, answer, metadata) behind a problem of this source."""
        index = self._by_id.get(problem.problem_id)
        if index is None:
            raise UnknownProblemError(problem.problem_id, list(self._by_id)[:1000], self.name)
        return self._entries[index]

    def score_answer(self, problem: Problem, answer: str | None) -> float:
        """reasoning-gym's score of ``answer`` for ``problem``, in [0, 1].

        Args:
            problem: A problem of this source.
            answer: The extracted final answer; None (no answer found) scores 0 without calling
                the scorer.

        Returns:
            The task's own score (1 for a correct answer; some tasks give partial credit).
        """
        if answer is None:
            return 0.0
        entry = self.entry(problem)
        try:
            score = float(self._dataset.score_answer(answer, entry))
        except Exception as error:  # the scorer could not read the answer
            if self.scorer_errors is ScorerErrors.RAISE:
                raise
            task = str(problem.metadata.get("task", self.name))
            if task not in self._warned_scorer_error:
                self._warned_scorer_error.add(task)
                logger.warning(
                    "reasoning-gym's %s scorer raised %s on an answer (%s); such answers score 0. "
                    "Pass scorer_errors='raise' to see the traceback.",
                    task,
                    type(error).__name__,
                    error,
                )
            return 0.0
        if not math.isfinite(score):
            return 0.0
        return min(1.0, max(0.0, score))

    def problem_info(self, problem: Problem) -> dict[str, Any]:
        """``{"task": name, "metadata": the entry's metadata as JSON data}`` for the env's info.

        The metadata is a fresh copy on every call: a caller may keep or modify what it gets.
        """
        metadata = copy.deepcopy(problem.metadata["reasoning_gym"])
        return {"task": problem.metadata["task"], "metadata": metadata}
