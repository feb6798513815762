"""A single-turn text environment over a source of problems with verifiable answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from meds_gym.envs.charset import TEXT_CHARSET
from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.tasks.base import Problem, ProblemSource
from meds_gym.verifiers import (
    AnchorKind,
    AnswerAnchor,
    VerificationResult,
    parse_anchor,
    verify_response,
)
from meds_gym.verifiers.anchor import BOXED_INSTRUCTION

logger = logging.getLogger(__name__)

SYSTEM_INSTRUCTION = BOXED_INSTRUCTION
"""The system instruction of the chat form of every prompt with the default ``\\boxed{}`` anchor
(the MEDS paper's evaluation prompt); other anchors use their own ``AnswerAnchor.instruction``."""


def prompt_template_for(anchor: AnswerAnchor) -> str:
    """The default plain-text prompt template of an anchor: the question, then its instruction."""
    return "{question}\n" + anchor.instruction.replace("{", "{{").replace("}", "}}")


DEFAULT_PROMPT_TEMPLATE = prompt_template_for(AnswerAnchor.boxed())
"""How the plain-text observation is built from a question (a ``str.format`` template)."""


class ReasoningEnv(gym.Env[str, str]):
    """One problem per episode: the observation is the prompt, the action is the whole response.

    ``reset`` picks a problem (at random from ``self.np_random``, or the one named in ``options``)
    and returns its prompt. ``step`` reads the response's final answer under the env's answer
    anchor (by default the last ``\\boxed{}``), verifies it against the gold answer and ends the
    episode.

    Observation and action are strings of :data:`meds_gym.envs.charset.TEXT_CHARSET` (or of the
    ``charset`` given). The observation after the terminal step is the empty string: a
    single-turn episode has nothing more to show. Any string is a valid action: text outside the
    charset or longer than ``max_response_length`` is still verified (the verifier bounds its own
    work) and flagged with ``info["response_overlong"]``; it is never an error.

    A source may offer three optional hooks, which the env uses when present:

    * ``score_answer(problem, answer) -> float``: the score in [0, 1] of the extracted answer
      (None when the response has no anchor), replacing the math equivalence check; the reward is
      ``incorrect_reward + score * (correct_reward - incorrect_reward)``, ``correct`` is
      ``score == 1`` and ``info["score"]`` holds the score;
    * ``problem_info(problem) -> dict``: extra keys for the reset and step ``info``;
    * ``charset``: the characters of the text spaces, when ``charset`` is not given.

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
            ``charset`` hook, else :data:`meds_gym.envs.charset.TEXT_CHARSET`.

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

        self.source = source
        self.correct_reward = float(correct_reward)
        self.incorrect_reward = float(incorrect_reward)
        self.prompt_template = prompt_template
        self.max_prompt_length = max_prompt_length
        self.max_response_length = max_response_length
        self.verifier_timeout = float(verifier_timeout)
        self.answer_anchor = anchor
        if charset is None:
            charset = getattr(source, "charset", None) or TEXT_CHARSET
        text_charset = frozenset(charset)
        if not text_charset or not all(isinstance(c, str) and len(c) == 1 for c in text_charset):
            raise InvalidArgumentError("charset", "a non-empty collection of characters", charset)
        self.observation_space = spaces.Text(
            max_length=max_prompt_length, min_length=0, charset=text_charset
        )
        self.action_space = spaces.Text(
            max_length=max_response_length, min_length=0, charset=text_charset
        )
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
        score_answer = getattr(self.source, "score_answer", None)
        if score_answer is not None:
            parsed = self.answer_anchor.extract(action)
            score = float(score_answer(problem, parsed))
            if not 0.0 <= score <= 1.0:
                raise RuntimeError(
                    f"{self.source.name}.score_answer returned {score!r} for "
                    f"{problem.problem_id}; a score must lie in [0, 1]."
                )
            correct = score == 1.0
            reward = self.incorrect_reward + score * (self.correct_reward - self.incorrect_reward)
            extra["score"] = score
        else:
            if self.answer_anchor.kind is AnchorKind.BOXED:
                result = verify_response(
                    action, problem.answer, timeout_seconds=self.verifier_timeout
                )
            else:
                answer = self.answer_anchor.extract(action)
                result = (
                    VerificationResult(correct=False, parsed_answer=None)
                    if answer is None
                    else verify_response(
                        answer,
                        problem.answer,
                        extractor="raw",
                        timeout_seconds=self.verifier_timeout,
                    )
                )
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
