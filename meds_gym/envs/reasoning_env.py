"""A single-turn text environment over a source of problems with verifiable answers."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np

from meds_gym.charset import TEXT_CHARSET, text_space
from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.tasks.base import Problem, ProblemSource
from meds_gym.verifiers import (
    MAX_ANSWER_CHARS,
    AnchorKind,
    AnswerAnchor,
    AnswerExtractor,
    VerificationResult,
    extract_answer,
    parse_anchor,
    verify_response,
)
from meds_gym.verifiers.anchor import BOXED_INSTRUCTION

logger = logging.getLogger(__name__)

_Verdict = TypeVar("_Verdict")

SYSTEM_INSTRUCTION = BOXED_INSTRUCTION
"""The system instruction of the chat form of every prompt with the default ``\\boxed{}`` anchor
(the MEDS paper's evaluation prompt); other anchors use their own ``AnswerAnchor.instruction``."""


def prompt_template_for(anchor: AnswerAnchor) -> str:
    """The default plain-text prompt template of an anchor: the question, then its instruction."""
    return "{question}\n" + anchor.instruction.replace("{", "{{").replace("}", "}}")


DEFAULT_PROMPT_TEMPLATE = prompt_template_for(AnswerAnchor.boxed())
"""How the plain-text observation is built from a question (a ``str.format`` template)."""


MAX_CACHED_ANSWER_CHARS = MAX_ANSWER_CHARS
"""Answers longer than this many characters are verified without going through the verdict cache
(and counted neither as hits nor as misses): the equivalence check scores them wrong without
parsing them, so there is nothing to save, and leaving them out bounds the memory of an entry
(also for a source's own ``score_answer``)."""


class _Identity:
    """A hashable stand-in for an unhashable object, equal only to a stand-in of that same object.

    It keeps the object alive, so its ``id`` cannot be reused by another object while a cache key
    holds it.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


class VerdictCache:
    """A bounded LRU map from (problem, extracted answer, way of checking it) to the verdict.

    Verifying a response (a symbolic equivalence check in a worker process, or a source's own
    ``score_answer``) is the costly part of :meth:`ReasoningEnv.step`, and an RL loop that
    samples many responses per problem sees the same final answer many times. A
    :class:`ReasoningEnv` reads the final answer first (cheap string work) and looks it up here;
    only an answer it has not seen for that problem is verified.

    A key holds everything the verdict depends on, so a cache can be shared by several envs of
    one process (the sub-envs of a vector env, a scoring env and a MEDS-wrapped env over the same
    problems): the problem id and gold answer, the extracted answer, and the way it is checked
    (the extractor and the verifier timeout for the equivalence check; the source's
    ``score_answer`` hook itself for a source that scores answers). Envs with different rewards
    may share a cache: it stores verdicts, not rewards. A comparison that timed out is scored
    wrong and that verdict is kept like any other, so the same answer is not retried.

    Lookups are serialised by a lock (verification itself runs outside it), so envs stepped in
    several threads may share a cache; two threads that miss on the same answer at the same time
    may both verify it. A pickled or deep-copied cache (for example the one each worker of an
    ``AsyncVectorEnv`` receives) is an independent copy: sharing is within one process. A key of
    a source with a ``score_answer`` hook refers to the source, which stays alive while the key
    is cached.

    Args:
        maxsize: Most verdicts kept; beyond it the least recently used one is dropped.

    Raises:
        InvalidArgumentError: If ``maxsize`` is not an integer >= 1.

    Example:
        >>> from meds_gym.tasks import ArithmeticTask
        >>> cache = VerdictCache(maxsize=1024)
        >>> source = ArithmeticTask(num_problems=4, seed=0)
        >>> envs = [ReasoningEnv(source, verdict_cache=cache) for _ in range(2)]
        >>> response = f"So \\\\boxed{{{source[0].answer}}}."
        >>> for env in envs:
        ...     _ = env.reset(options={"index": 0})
        ...     _ = env.step(response)
        >>> cache.misses, cache.hits, len(cache)
        (1, 1, 1)
    """

    def __init__(self, maxsize: int = 65536) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, (int, np.integer)) or maxsize < 1:
            raise InvalidArgumentError("maxsize", "an integer >= 1", maxsize)
        self._maxsize = int(maxsize)
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def maxsize(self) -> int:
        """Most verdicts kept."""
        return self._maxsize

    @property
    def hits(self) -> int:
        """Lookups answered from the cache (since construction or the last :meth:`clear`)."""
        return self._hits

    @property
    def misses(self) -> int:
        """Lookups that had to verify (since construction or the last :meth:`clear`)."""
        return self._misses

    def __len__(self) -> int:
        """Number of verdicts held (at most :attr:`maxsize`)."""
        return len(self._entries)

    def clear(self) -> None:
        """Forget every verdict and reset :attr:`hits` and :attr:`misses` to 0."""
        with self._lock:
            self._entries.clear()
            self._hits = 0
            self._misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], _Verdict]) -> _Verdict:
        """The verdict cached under ``key``, or ``compute()``'s, which is then cached.

        A value is cached only when ``compute`` returns; an exception propagates and leaves the
        cache as it was (the lookup still counts as a miss). Cached values are returned as
        they are: store immutable values.

        Args:
            key: A hashable key that determines the verdict exactly.
            compute: Computes the verdict on a miss (called without the lock held).

        Returns:
            The cached or computed verdict.
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._hits += 1
                cached: _Verdict = self._entries[key]
                return cached
            self._misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return value

    def __repr__(self) -> str:
        return (
            f"VerdictCache(maxsize={self._maxsize}, size={len(self._entries)}, "
            f"hits={self._hits}, misses={self._misses})"
        )

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = self.__dict__.copy()
            state["_entries"] = OrderedDict(self._entries)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class ReasoningEnv(gym.Env[str, str]):
    """One problem per episode: the observation is the prompt, the action is the whole response.

    ``reset`` picks a problem (at random from ``self.np_random``, or the one named in ``options``)
    and returns its prompt. ``step`` reads the response's final answer under the env's answer
    anchor (by default the last ``\\boxed{}``), verifies it against the gold answer and ends the
    episode.

    Observation and action are strings of :data:`meds_gym.charset.TEXT_CHARSET` (or of the
    ``charset`` given). The observation after the terminal step is the empty string: a
    single-turn episode has nothing more to show. Any string is a valid action: text outside the
    charset or longer than ``max_response_length`` is still verified (the verifier bounds its own
    work) and flagged with ``info["response_overlong"]``; it is never an error.

    A source may offer these optional hooks, which the env uses when present:

    * ``score_answer(problem, answer) -> float``: the score in [0, 1] of the extracted answer
      (None when the response has no anchor), replacing the math equivalence check; the reward is
      ``incorrect_reward + score * (correct_reward - incorrect_reward)``, ``correct`` is
      ``score >= correct_threshold`` (``score == 1`` by default) and ``info["score"]`` holds the
      score;
    * ``score_response(problem, response) -> float``: the same, for a scorer that reads the whole
      response (its format or reasoning, not only the final answer); it takes precedence over
      ``score_answer``, and its scores are not cached (they depend on more than the answer);
    * ``correct_threshold``: a float in (0, 1], the least score that is correct (default 1.0);
    * ``problem_info(problem) -> dict``: extra keys for the reset and step ``info``;
    * ``charset``: the characters of the text spaces, when ``charset`` is not given.

    Verdicts are reused: ``step`` reads the final answer first and looks it up, with the problem,
    in the env's :class:`VerdictCache`, so a final answer already verified for that problem is
    not verified again (pass ``verdict_cache=False`` to verify every response, or one
    :class:`VerdictCache` to several envs to share their verdicts). The reward and ``info`` are
    the same as without the cache.

    Args:
        source: The problems (a toy task or a benchmark loader).
        correct_reward: Reward of a correct final answer.
        incorrect_reward: Reward of any other response.
        max_prompt_length: Maximum observation length in characters (observation space).
        max_response_length: Maximum response length in characters (action space).
        prompt_template: Format string with a ``{question}`` field for the plain-text observation;
            None for the question followed by the answer anchor's instruction.
        verifier_timeout: Seconds allowed to the symbolic equivalence check of one response.
        answer_anchor: Where the final answer is read from and what the prompt asks for:
            ``"boxed"``, ``"answer_tag"``, a regex with one capture group, or an
            :class:`meds_gym.verifiers.AnswerAnchor`.
        charset: Characters of the observation and action spaces; None for the source's
            ``charset`` hook, else :data:`meds_gym.charset.TEXT_CHARSET`.
        verdict_cache: Reuse of verdicts across responses with the same final answer (see
            :class:`VerdictCache`): True (the default) for a cache of this env's own, a
            :class:`VerdictCache` to share one between envs of this process (each distinct
            answer of a problem is then verified once for all of them), False or None to verify
            every response. The rewards and ``info`` are the same either way.

    Example:
        >>> import gymnasium as gym, meds_gym
        >>> env = gym.make("meds_gym/Arithmetic-v0")
        >>> obs, info = env.reset(seed=0)
        >>> gold = env.unwrapped.source.get(info["problem_id"]).answer
        >>> _, reward, terminated, truncated, info = env.step(f"So \\\\boxed{{{gold}}}.")
        >>> reward, terminated, info["correct"]
        (1.0, True, True)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        source: ProblemSource,
        *,
        correct_reward: float = 1.0,
        incorrect_reward: float = 0.0,
        max_prompt_length: int = 8192,
        max_response_length: int = 32768,
        prompt_template: str | None = None,
        verifier_timeout: float = 5.0,
        answer_anchor: str | AnswerAnchor = "boxed",
        charset: Iterable[str] | None = None,
        verdict_cache: VerdictCache | bool | None = True,
    ) -> None:
        if not isinstance(source, ProblemSource):
            raise invalid_type(
                "source", "a ProblemSource (len, [index], get(problem_id), iteration)", source
            )
        if len(source) < 1:
            raise InvalidArgumentError("source", "a source with at least one problem", source)
        for name, value in (
            ("correct_reward", correct_reward),
            ("incorrect_reward", incorrect_reward),
        ):
            if not np.isfinite(value):
                raise InvalidArgumentError(name, "a finite number", value)
        for name, length in (
            ("max_prompt_length", max_prompt_length),
            ("max_response_length", max_response_length),
        ):
            if not isinstance(length, int) or length < 1:
                raise InvalidArgumentError(name, "a positive integer", length)
        anchor = parse_anchor(answer_anchor)
        if prompt_template is None:
            prompt_template = prompt_template_for(anchor)
        if not isinstance(prompt_template, str) or "{question}" not in prompt_template:
            raise InvalidArgumentError(
                "prompt_template", "a format string containing '{question}'", prompt_template
            )
        if not verifier_timeout > 0:
            raise InvalidArgumentError(
                "verifier_timeout", "a positive number of seconds", verifier_timeout
            )
        correct_threshold = getattr(source, "correct_threshold", 1.0)
        if not 0.0 < correct_threshold <= 1.0:
            raise InvalidArgumentError(
                f"{source.name}.correct_threshold", "a score in (0, 1]", correct_threshold
            )

        self.source = source
        self.correct_reward = float(correct_reward)
        self.incorrect_reward = float(incorrect_reward)
        self.prompt_template = prompt_template
        self.max_prompt_length = max_prompt_length
        self.max_response_length = max_response_length
        self.verifier_timeout = float(verifier_timeout)
        self.correct_threshold = float(correct_threshold)
        """The least score that is correct, for a source that scores responses itself."""
        self.answer_anchor = anchor
        if charset is None:
            charset = getattr(source, "charset", None) or TEXT_CHARSET
        text_charset = frozenset(charset)
        if not text_charset or not all(isinstance(c, str) and len(c) == 1 for c in text_charset):
            raise InvalidArgumentError("charset", "a non-empty collection of characters", charset)
        self.observation_space = text_space(max_prompt_length, text_charset)
        self.action_space = text_space(max_response_length, text_charset)
        if verdict_cache is True:
            verdict_cache = VerdictCache()
        elif verdict_cache is False:
            verdict_cache = None
        elif verdict_cache is not None and not isinstance(verdict_cache, VerdictCache):
            raise invalid_type(
                "verdict_cache", "a VerdictCache, True, False or None", verdict_cache
            )
        self.verdict_cache: VerdictCache | None = verdict_cache
        """The cache of verdicts this env reads and fills, or None when it verifies every
        response."""
        self._problem: Problem | None = None
        self._warned_overlong_prompt = False

    @property
    def problem(self) -> Problem | None:
        """The problem of the current episode, or None before ``reset`` and after the last step."""
        return self._problem

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on one problem.

        Args:
            seed: Seeds ``self.np_random``, which picks the problem when ``options`` names none.
            options: ``{"problem_id": id}`` to revisit a problem (group sampling), or
                ``{"index": i}`` for the i-th problem of the source.

        Returns:
            The prompt text and an info dict with ``problem_id``, ``question`` and ``messages``
            (the chat form: system instruction, then the question).
        """
        super().reset(seed=seed)
        if options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(
                "options",
                "None or a dict with at most one of the keys 'problem_id', 'index'",
                options,
            )
        options = options or {}
        unknown = set(options) - {"problem_id", "index"}
        if unknown:
            raise InvalidArgumentError(
                "options", "a dict with at most one of the keys 'problem_id', 'index'", options
            )
        if "problem_id" in options and "index" in options:
            raise InvalidArgumentError(
                "options", "either 'problem_id' or 'index', not both", options
            )
        if "problem_id" in options:
            problem = self.source.get(options["problem_id"])
        elif "index" in options:
            index = options["index"]
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise invalid_type("options['index']", "an int", index)
            if not 0 <= index < len(self.source):
                raise InvalidArgumentError(
                    "options['index']", f"an index in [0, {len(self.source)})", index
                )
            problem = self.source[int(index)]
        else:
            problem = self.source[int(self.np_random.integers(len(self.source)))]
        self._problem = problem

        prompt = self.prompt_template.format(question=problem.question)
        if len(prompt) > self.max_prompt_length and not self._warned_overlong_prompt:
            self._warned_overlong_prompt = True
            logger.warning(
                "Prompt of %s has %d characters, more than max_prompt_length=%d: the observation "
                "lies outside observation_space. Raise max_prompt_length.",
                problem.problem_id,
                len(prompt),
                self.max_prompt_length,
            )
        info = {
            "problem_id": problem.problem_id,
            "question": problem.question,
            "messages": [
                {"role": "system", "content": self.answer_anchor.instruction},
                {"role": "user", "content": problem.question},
            ],
        }
        info.update(self._problem_info(problem))
        return prompt, info

    def _problem_info(self, problem: Problem) -> dict[str, Any]:
        """Extra info keys from the source's optional ``problem_info`` hook."""
        hook = getattr(self.source, "problem_info", None)
        return {} if hook is None else dict(hook(problem))

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Score a response and end the episode.

        Args:
            action: The full response text. Its final answer is read under the env's answer
                anchor (by default the content of its last ``\\boxed{}``); a response without
                one is wrong.

        Returns:
            ``("", reward, True, False, info)`` with ``info`` holding ``problem_id``, ``correct``,
            ``is_success`` (same as ``correct``, for wrappers that look for it), ``parsed_answer``
            (None if no answer was found), ``gold_answer`` and ``response_overlong``, plus
            ``score`` for a source that scores answers itself and the source's ``problem_info``.

        Raises:
            TypeError: If ``action`` is not a string.
            RuntimeError: If no episode is running (call ``reset`` first).
        """
        if not isinstance(action, str):
            raise invalid_type("action", "a str (the response text)", action)
        if self._problem is None:
            raise RuntimeError(
                "step() called without a running episode: call reset() first (each episode is a "
                "single step)."
            )
        problem, self._problem = self._problem, None
        extra: dict[str, Any] = {}
        score_response = getattr(self.source, "score_response", None)
        score_answer = getattr(self.source, "score_answer", None)
        if score_response is not None or score_answer is not None:
            parsed = self.answer_anchor.extract(action)
            if score_response is not None:
                score = self._checked_score(problem, score_response(problem, action))
            else:
                assert score_answer is not None  # one of the two hooks, checked above
                score = self._score(problem, parsed, score_answer)
            correct = score >= self.correct_threshold
            reward = self.incorrect_reward + score * (self.correct_reward - self.incorrect_reward)
            extra["score"] = score
        else:
            result = self._verify(problem, action)
            parsed, correct = result.parsed_answer, result.correct
            reward = self.correct_reward if correct else self.incorrect_reward
        info = {
            "problem_id": problem.problem_id,
            "correct": correct,
            "is_success": correct,
            "parsed_answer": parsed,
            "gold_answer": problem.answer,
            "response_overlong": len(action) > self.max_response_length,
            **extra,
        }
        info.update(self._problem_info(problem))
        return "", reward, True, False, info

    def _score(
        self, problem: Problem, parsed: str | None, score_answer: Callable[..., Any]
    ) -> float:
        """The source's score of an extracted answer, from the verdict cache when it has it."""

        def compute() -> float:
            return self._checked_score(problem, score_answer(problem, parsed))

        cache = self.verdict_cache
        if cache is None or parsed is None or len(parsed) > MAX_CACHED_ANSWER_CHARS:
            return compute()
        try:
            hash(score_answer)
            scorer: Hashable = score_answer
        except TypeError:
            scorer = _Identity(score_answer)
        # A bound method is equal to another only for the same source object (by identity).
        key = ("score", scorer, problem.problem_id, problem.answer, parsed)
        return cache.get_or_compute(key, compute)

    def _checked_score(self, problem: Problem, score: Any) -> float:
        """A source's score as a float, checked to lie in [0, 1]."""
        score = float(score)
        if not 0.0 <= score <= 1.0:
            raise RuntimeError(
                f"{self.source.name} scored {problem.problem_id} {score!r}; a score must lie in "
                "[0, 1]."
            )
        return score

    def _verify(self, problem: Problem, action: str) -> VerificationResult:
        """The equivalence verdict on a response, from the verdict cache when it has it.

        The boxed anchor verifies the whole response with the ``"boxed"`` extractor; the other
        anchors read their answer first and verify it with the ``"raw"`` extractor. Either way
        :func:`verify_response`'s verdict depends only on ``extract_answer(text, extractor)``,
        the gold answer and the timeout, so that is what keys the cache; a miss runs the same
        :func:`verify_response` call as an env without a cache.
        """
        if self.answer_anchor.kind is AnchorKind.BOXED:
            response, extractor = action, AnswerExtractor.BOXED
        else:
            answer = self.answer_anchor.extract(action)
            if answer is None:
                return VerificationResult(correct=False, parsed_answer=None)
            response, extractor = answer, AnswerExtractor.RAW

        def compute() -> VerificationResult:
            return verify_response(
                response,
                problem.answer,
                extractor=extractor,
                timeout_seconds=self.verifier_timeout,
            )

        cache = self.verdict_cache
        if cache is None:
            return compute()
        parsed = extract_answer(response, extractor)
        if parsed is None or len(parsed) > MAX_CACHED_ANSWER_CHARS:
            return compute()  # no answer: nothing to compare, nothing worth caching
        key = (
            "verify",
            extractor.value,
            self.verifier_timeout,
            problem.problem_id,
            problem.answer,
            parsed,
        )
        return cache.get_or_compute(key, compute)
