"""The contract a trainer needs of a text env beyond Gymnasium's: a problem list, reset by problem.

Gymnasium's API starts an episode on a problem of the env's choosing and says nothing of the
problems it holds. Group sampling (several responses to one problem), an error memory keyed by
problem, and an evaluation over every problem need both. :class:`ProblemEnv` names that contract
once; :class:`~meds_gym.envs.ReasoningEnv` (in this process) and
:class:`~meds_gym.integrations.openenv.OpenEnvTextEnv` (an env served over OpenEnv) meet it, and
the bundled agent uses nothing else of its env.

Example:
    >>> import gymnasium as gym, meds_gym
    >>> env = problem_env(gym.make("meds_gym/Arithmetic-v0", num_problems=4))
    >>> pid = env.source[2].problem_id
    >>> env.reset(options={"problem_id": pid})[1]["problem_id"] == pid
    True
"""

from __future__ import annotations

from typing import Any, Protocol, SupportsFloat, runtime_checkable

from meds_gym.errors import invalid_type
from meds_gym.tasks.base import ProblemSource
from meds_gym.verifiers import AnswerAnchor


@runtime_checkable
class ProblemEnv(Protocol):
    """A single-turn text env whose problems can be listed and revisited.

    * ``source`` lists the problems: ``len(source)``, ``source[i]`` and ``source.get(problem_id)``
      give :class:`~meds_gym.tasks.Problem` objects (id, question, gold answer, error modes).
    * ``reset(options={"problem_id": id})`` or ``reset(options={"index": i})`` starts an episode
      on that problem (without options: one drawn by the env); the reset ``info`` holds
      ``problem_id``, ``question`` and ``messages`` (the chat form of the prompt).
    * ``step(response)`` scores the response and ends the episode; the step ``info`` holds
      ``problem_id``, ``correct``, ``is_success``, ``parsed_answer`` and ``gold_answer``.
    * ``answer_anchor`` says where a response's final answer starts (the MEDS fingerprint reads
      the token that carries it).
    """

    @property
    def source(self) -> ProblemSource:
        """The env's problems."""
        ...

    @property
    def answer_anchor(self) -> AnswerAnchor:
        """Where a response's final answer starts."""
        ...

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode (on the problem that ``options`` names, if any)."""
        ...

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Score a response and end the episode."""
        ...


def problem_env(env: Any) -> ProblemEnv:
    """The :class:`ProblemEnv` inside ``env`` (``env`` itself, or the env its wrappers hold).

    Args:
        env: A :class:`ProblemEnv`, possibly inside Gymnasium wrappers.

    Raises:
        TypeError: If neither ``env`` nor ``env.unwrapped`` meets the contract.
    """
    inner = getattr(env, "unwrapped", env)
    if not isinstance(inner, ProblemEnv):
        raise invalid_type(
            "env",
            "a text env with a problem list (a ProblemEnv: source, answer_anchor, reset by "
            "problem id), such as ReasoningEnv or OpenEnvTextEnv",
            env,
        )
    return inner
