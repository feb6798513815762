r"""A single-turn ``verifiers`` taskset as a meds-gym text env, scored by its own reward functions.

`verifiers <https://pypi.org/project/verifiers/>`_ (built against 0.4.0; its stack lives in
``verifiers.v1``) describes an environment's data as a ``Taskset`` that yields typed tasks, each
scored by its ``@vf.reward`` functions (weighted, summed into the trace's reward).
:class:`VerifiersSource` turns such a taskset into a :class:`~meds_gym.tasks.base.ProblemSource`
and :func:`verifiers_env` into a :class:`~meds_gym.envs.ReasoningEnv`, so that

* the env's reward is the taskset's reward: each response is written into a ``verifiers`` trace
  (the task's prompt, then the response as the assistant's reply) and scored by the task's
  reward functions, exactly as ``verifiers`` scores a rollout; async reward functions run on an
  event loop of the source's own (in a thread), so ``step`` stays synchronous, also when it is
  called from code that runs an event loop;
* correctness is read from the reward with a threshold: ``reward >= threshold`` is correct,
  where ``threshold`` defaults to the top of ``reward_range`` (full credit, as
  ``score == 1`` for reasoning-gym tasks). A task scored right/wrong (1 / 0) needs no setting;
  one with partial credit or a weighted sum sets ``reward_range`` and, if partial credit should
  count as right, ``threshold``;
* MEDS shapes it as any other env: :class:`~meds_gym.meds.MEDSRewardWrapper` reads
  ``info["correct"]`` and ``info["parsed_answer"]``, the bundled agent fingerprints the token of
  the answer anchor.

**The answer anchor.** ``verifiers.v1`` tasks declare no answer parser: their reward functions
read the reply themselves (its bundled helpers ``extract_boxed_answer`` and
``verify_boxed_math_answer`` read the last ``\boxed{}``). The anchor, which gives
``info["parsed_answer"]`` and the fingerprint's position, is therefore read from the tasks'
instructions: ``boxed`` when a system prompt or prompt mentions ``\boxed``, else ``answer_tag``
when one mentions ``<answer>``, else ``boxed``; pass ``answer_anchor=`` to set it. When all
tasks share one system prompt, that prompt is the anchor's instruction (the system message of
the env's chat form and the last line of its plain-text prompt).

**What is supported.** Single-turn tasks scored from the reply: a task that needs a container or
a runtime to score, plugs in LLM judges or declares tools is rejected when the source is built,
with a message that names it; so is a taskset without an end (pass ``max_tasks``).

Example (a taskset ``MyTaskset`` of arithmetic tasks, see the README's verifiers section)::

    env = verifiers_env(MyTaskset(vf.TasksetConfig(id="arith")))
    env = MEDSRewardWrapper(env, MEDSConfig(alpha=0.05, beta=0.1))
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import sys
import threading
import weakref
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meds_gym.charset import TEXT_CHARSET
from meds_gym.envs.reasoning_env import ReasoningEnv
from meds_gym.errors import InvalidArgumentError, MissingExtraError, UnknownProblemError
from meds_gym.tasks.base import Problem
from meds_gym.verifiers import AnswerAnchor, parse_anchor

_FEATURE = "verifiers tasksets as meds-gym envs (Python >= 3.11)"
if sys.version_info < (3, 11):  # pragma: no cover - the extra's marker skips older Pythons
    raise MissingExtraError(_FEATURE, "verifiers", "verifiers")
try:
    import verifiers.v1 as vf
    from verifiers.v1.graph import MessageNode
    from verifiers.v1.state import state_cls
    from verifiers.v1.trace import AgentInfo, TraceTask
    from verifiers.v1.types import AssistantMessage, SystemMessage, UserMessage
except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
    raise MissingExtraError(_FEATURE, "verifiers", "verifiers") from exc

DEFAULT_SCORE_TIMEOUT = 60.0
"""Seconds allowed to a task's reward functions on one response, unless the task sets its own
``timeout.scoring``."""


class _Runner:
    """Runs a source's reward coroutines to completion from synchronous code.

    They run on an event loop of the source's own in the calling thread (one loop per thread,
    kept between calls: reward functions may hold loop-bound clients or locks), so reward
    functions that need the main thread still get it (math-verify's timeouts, and with them
    ``verifiers``' ``verify_boxed_math_answer``, use ``signal.alarm``). Where the calling thread
    already runs a loop (a notebook, async code), a new loop cannot run there: the coroutine
    then runs in a worker thread, where such reward functions score every answer 0.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """The coroutine's result; raises what it raises, or ``TimeoutError`` after ``timeout``."""
        bounded = asyncio.wait_for(coroutine, timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = getattr(self._local, "loop", None)
            if loop is None:
                loop = self._local.loop = asyncio.new_event_loop()
                weakref.finalize(self, loop.close)
            return loop.run_until_complete(bounded)
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, bounded).result()


def _anchor_from_instructions(texts: Sequence[str]) -> AnswerAnchor:
    r"""``boxed`` if a text mentions ``\boxed``, else ``answer_tag`` if one names ``<answer>``."""
    if any("\\boxed" in text for text in texts):
        return AnswerAnchor.boxed()
    if any("<answer>" in text for text in texts):
        return AnswerAnchor.answer_tag()
    return AnswerAnchor.boxed()


def _needs_runtime(fn: Any) -> bool:
    """Whether a scoring function needs a runtime (``verifiers`` skips it without one)."""
    parameter = inspect.signature(fn).parameters.get("runtime")
    return parameter is not None and parameter.default is inspect.Parameter.empty


class VerifiersSource:
    """The tasks of a single-turn ``verifiers.v1`` taskset as problems, scored by their rewards.

    Problem ids are the tasks' ``id`` when every task has one and they are unique, else
    ``<name>/<index>`` (the task's position in the taskset): the same in every process that
    loads the same taskset. A problem's question is the task's prompt text, its answer the
    task data's ``answer_field`` (shown in ``info["gold_answer"]``; the reward functions decide
    what is right), its metadata the task and its index.

    The env reads two hooks (see :class:`~meds_gym.envs.ReasoningEnv`): ``score_response``,
    the task's reward mapped from ``reward_range`` to [0, 1], and ``correct_threshold``, the
    threshold mapped the same way.

    Args:
        taskset: A ``verifiers.v1.Taskset`` (or a view of one: ``taskset.take(100)``).
        answer_field: The task data's field of the gold answer; a task without it has ``""``.
        reward_range: ``(low, high)``: the least and the most reward a response can get (the sum
            of the weighted reward functions). A reward outside it is an error.
        threshold: The least reward that is correct; None for ``high`` (full credit).
        answer_anchor: Where the final answer starts (``"boxed"``, ``"answer_tag"``, a regex or
            an :class:`~meds_gym.verifiers.AnswerAnchor`); None reads it from the tasks'
            instructions (see the module doc).
        name: Name of the source, for ids and messages; None for the taskset's config id, else
            its class name.
        max_tasks: Read at most this many tasks (needed for a taskset without an end).
        score_timeout: Seconds allowed to the reward functions on one response when the task
            sets no ``timeout.scoring``.

    Raises:
        InvalidArgumentError: For a bad argument, an empty taskset, a taskset without an end and
            no ``max_tasks``, tasks with different system prompts, or a task that is not
            single-turn and scored from the reply (it needs a container or a runtime to score,
            has LLM judges or tools, has no reward function or no prompt).
        TypeError: If ``taskset`` is not a ``verifiers.v1.Taskset``.
    """

    def __init__(
        self,
        taskset: vf.Taskset,
        *,
        answer_field: str = "answer",
        reward_range: tuple[float, float] = (0.0, 1.0),
        threshold: float | None = None,
        answer_anchor: str | AnswerAnchor | None = None,
        name: str | None = None,
        max_tasks: int | None = None,
        score_timeout: float = DEFAULT_SCORE_TIMEOUT,
    ) -> None:
        if not isinstance(taskset, vf.Taskset):
            raise TypeError(
                f"`taskset` must be a verifiers.v1.Taskset; received {type(taskset).__name__}."
            )
        low, high = (float(x) for x in reward_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InvalidArgumentError(
                "reward_range", "(low, high) with finite low < high", reward_range
            )
        threshold = high if threshold is None else float(threshold)
        if not low < threshold <= high:
            raise InvalidArgumentError(
                "threshold", f"a reward in ({low}, {high}] (the reward_range)", threshold
            )
        if not score_timeout > 0:
            raise InvalidArgumentError(
                "score_timeout", "a positive number of seconds", score_timeout
            )
        if max_tasks is not None:
            if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
                raise InvalidArgumentError("max_tasks", "None or an int >= 1", max_tasks)
            taskset = taskset.take(max_tasks)
        elif not taskset.bounded:
            raise InvalidArgumentError(
                "max_tasks",
                "an int >= 1 for a taskset without an end",
                max_tasks,
                fix="Pass max_tasks=N to read its first N tasks.",
            )
        self.name: str = name or taskset.config.id or type(taskset).__name__
        self.reward_range = (low, high)
        """The least and the most reward of a response."""
        self.threshold = threshold
        """The least reward that is correct."""
        self.correct_threshold = (threshold - low) / (high - low)
        """The threshold as a score in (0, 1] (the env's ``correct_threshold`` hook)."""
        self.score_timeout = float(score_timeout)
        self._tasks: list[Any] = list(taskset)
        if not self._tasks:
            raise InvalidArgumentError("taskset", "a taskset with at least one task", taskset)
        for task in self._tasks:
            self._check_single_turn(task)
        if type(taskset).toolsets(taskset.config):
            raise InvalidArgumentError(
                "taskset", "a taskset without shared tools (single-turn tasks only)", taskset
            )

        ids = [task.data.id for task in self._tasks]
        if all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids):
            problem_ids = [str(i) for i in ids]
        else:
            problem_ids = [f"{self.name}/{index}" for index in range(len(self._tasks))]
        system_prompts = {task.data.system_prompt for task in self._tasks}
        if len(system_prompts) > 1:
            raise InvalidArgumentError(
                "taskset",
                "tasks that share one system prompt (it becomes the prompt's instruction)",
                sorted(str(p) for p in system_prompts)[:3],
            )
        system_prompt = system_prompts.pop()
        self._problems = [
            Problem(
                problem_id=problem_id,
                question=task.data.prompt_text,
                answer=str(getattr(task.data, answer_field, None) or ""),
                metadata={"task": type(task).__name__, "index": index},
            )
            for index, (problem_id, task) in enumerate(zip(problem_ids, self._tasks, strict=True))
        ]
        self._by_id = {problem.problem_id: index for index, problem in enumerate(self._problems)}
        if answer_anchor is None:
            texts = [system_prompt or ""] + [p.question for p in self._problems]
            anchor = _anchor_from_instructions(texts)
        else:
            anchor = parse_anchor(answer_anchor)
        if system_prompt:
            anchor = dataclasses.replace(anchor, instruction_text=system_prompt)
        self.answer_anchor: AnswerAnchor = anchor
        """Where the final answer starts; its instruction is the tasks' system prompt, if any."""
        chars = {c for p in self._problems for c in p.question + p.answer}
        self.charset: frozenset[str] = (
            TEXT_CHARSET | frozenset(chars) | frozenset(anchor.instruction)
        )
        """Characters of the env's text spaces: the project charset plus every character of the
        prompts, the gold answers and the instruction."""
        self._runner = _Runner()

    def _check_single_turn(self, task: Any) -> None:
        """Reject a task that cannot be scored from its reply alone."""
        where = f"task {task.data.idx} ({type(task).__name__})"
        rewards = task.hooks("reward")
        problems = []
        if task.NEEDS_CONTAINER:
            problems.append("needs a container")
        if [fn.__name__ for fn in rewards if _needs_runtime(fn)]:
            problems.append("has reward functions that need a runtime")
        if task.config.judges:
            problems.append("plugs in LLM judges")
        if type(task).toolsets(task.config):
            problems.append("declares tools")
        if not rewards:
            problems.append("has no reward function")
        if task.data.prompt is None:
            problems.append("has no prompt")
        if problems:
            raise InvalidArgumentError(
                "taskset",
                "single-turn tasks scored from the reply by their reward functions",
                f"{where}: " + ", ".join(problems),
            )

    # -- ProblemSource --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of tasks."""
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        """The problem of the task at ``index``."""
        return self._problems[index]

    def get(self, problem_id: str) -> Problem:
        """The problem with this id; raises :class:`~meds_gym.errors.UnknownProblemError`."""
        return self._problems[self._index(problem_id)]

    def _index(self, problem_id: str) -> int:
        index = self._by_id.get(problem_id)
        if index is None:
            raise UnknownProblemError(problem_id, self._by_id, self.name)
        return index

    def __iter__(self) -> Iterator[Problem]:
        """The problems in task order."""
        return iter(self._problems)

    def task(self, problem_id: str) -> Any:
        """The ``verifiers`` task of a problem."""
        return self._tasks[self._index(problem_id)]

    # -- scoring --------------------------------------------------------------------------------

    def reward(self, problem: Problem, response: str) -> tuple[float, dict[str, float]]:
        """The task's reward of ``response`` and each reward function's (unweighted) score.

        Raises:
            RuntimeError: If a reward function raised, or the reward is not finite.
            TimeoutError: If the reward functions took longer than the task's
                ``timeout.scoring`` (else ``score_timeout``) seconds.
        """
        task = self.task(problem.problem_id)
        trace = vf.Trace(
            task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
            state=state_cls(type(task))(),
            agent=AgentInfo(config=vf.AgentConfig(), name="meds-gym", trainable=False),
        )
        prompt = task.data.prompt
        messages: list[Any] = []
        if task.data.system_prompt:
            messages.append(SystemMessage(content=task.data.system_prompt))
        messages.extend([UserMessage(content=prompt)] if isinstance(prompt, str) else prompt)
        messages.append(AssistantMessage(content=response))
        for position, message in enumerate(messages):
            trace.nodes.append(
                MessageNode(
                    parent=position - 1 if position else None,
                    message=message,
                    sampled=position == len(messages) - 1,
                )
            )
        trace.is_completed = trace.ok = True
        timeout = task.data.timeout.scoring or self.score_timeout
        try:
            self._runner.run(task.score(trace), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: the reward functions of {problem.problem_id} took more than "
                f"{timeout} s; raise the task's timeout.scoring or score_timeout."
            ) from None
        except Exception as error:
            raise RuntimeError(
                f"{self.name}: scoring {problem.problem_id} failed: {error}"
            ) from error
        reward = float(trace.reward)
        if not math.isfinite(reward):
            raise RuntimeError(f"{self.name}: the reward of {problem.problem_id} is {reward}.")
        scores = {k: float(v.score) for k, v in trace.rewards.items() if v is not None}
        return reward, scores

    def score_response(self, problem: Problem, response: str) -> float:
        """The task's reward of ``response`` mapped from ``reward_range`` to [0, 1].

        Raises:
            RuntimeError: If the reward lies outside ``reward_range`` (or scoring failed, see
                :meth:`reward`).
        """
        reward, _ = self.reward(problem, response)
        low, high = self.reward_range
        if not low <= reward <= high:
            raise RuntimeError(
                f"{self.name}: the reward of {problem.problem_id} is {reward}, outside "
                f"reward_range={self.reward_range}; pass the taskset's real reward_range."
            )
        return (reward - low) / (high - low)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_runner"]  # event loops do not pickle; each copy starts its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runner = _Runner()


def verifiers_env(
    taskset: vf.Taskset,
    *,
    answer_field: str = "answer",
    reward_range: tuple[float, float] = (0.0, 1.0),
    threshold: float | None = None,
    answer_anchor: str | AnswerAnchor | None = None,
    name: str | None = None,
    max_tasks: int | None = None,
    score_timeout: float = DEFAULT_SCORE_TIMEOUT,
    **env_kwargs: Any,
) -> ReasoningEnv:
    """A :class:`~meds_gym.envs.ReasoningEnv` over a single-turn ``verifiers.v1`` taskset.

    Its reward is the taskset's reward (``correct_reward`` and ``incorrect_reward`` default to
    ``reward_range``'s high and low; other values rescale it linearly), ``info["correct"]`` is
    ``reward >= threshold``, ``info["score"]`` the reward mapped to [0, 1] and
    ``info["parsed_answer"]`` the answer under the anchor.

    Args:
        taskset: A ``verifiers.v1.Taskset``.
        answer_field: See :class:`VerifiersSource`.
        reward_range: See :class:`VerifiersSource`.
        threshold: See :class:`VerifiersSource`.
        answer_anchor: See :class:`VerifiersSource`.
        name: See :class:`VerifiersSource`.
        max_tasks: See :class:`VerifiersSource`.
        score_timeout: See :class:`VerifiersSource`.
        **env_kwargs: More arguments of :class:`~meds_gym.envs.ReasoningEnv` (``verdict_cache``,
            ``max_response_length``, ...).

    Returns:
        The env (a ``gymnasium.Env[str, str]``).
    """
    source = VerifiersSource(
        taskset,
        answer_field=answer_field,
        reward_range=reward_range,
        threshold=threshold,
        answer_anchor=answer_anchor,
        name=name,
        max_tasks=max_tasks,
        score_timeout=score_timeout,
    )
    low, high = source.reward_range
    env_kwargs.setdefault("correct_reward", high)
    env_kwargs.setdefault("incorrect_reward", low)
    return ReasoningEnv(source, answer_anchor=source.answer_anchor, **env_kwargs)
