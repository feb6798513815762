"""The factory behind ``meds_gym/ReasoningGym-v0``: a :class:`ReasoningEnv` over reasoning-gym."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meds_gym.envs.reasoning_env import ReasoningEnv, prompt_template_for
from meds_gym.verifiers import AnswerAnchor, parse_anchor

_DEFAULT_MAX_PROMPT_LENGTH = 8192


def make_reasoning_gym_env(
    task: str | Sequence[str] | Mapping[str, float] = "chain_sum",
    size: int = 500,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    answer_anchor: str | AnswerAnchor = "boxed",
    scorer_errors: str = "wrong",
    **env_kwargs: Any,
) -> ReasoningEnv:
    r"""A :class:`ReasoningEnv` over reasoning-gym tasks, scored by reasoning-gym itself.

    The prompt is the task's question followed by the answer anchor's instruction; the reward is
    the task's ``score_answer`` on the answer read under that anchor (partial credit where the
    task gives it; ``info["correct"]`` is ``score == 1``), and ``info`` carries ``task`` and the
    entry's JSON-safe ``metadata``. The text spaces use the source's charset (the project charset
    plus the characters of its questions), and ``max_prompt_length`` grows to the longest prompt
    unless it is given.

    Args:
        task: A reasoning-gym task name, a list of names or a dict of name -> weight (a mix); see
            :class:`meds_gym.tasks.reasoning_gym.ReasoningGymSource`.
        size: Number of problems, generated when the env is built.
        seed: Seed of the problem set (not of the episode order, which ``reset(seed=)`` sets).
        config: The task's reasoning-gym config fields (for a mix: task name -> fields).
        answer_anchor: ``"boxed"`` (default), ``"answer_tag"``, a regex with one capture group,
            or an :class:`meds_gym.verifiers.AnswerAnchor`.
        scorer_errors: ``"wrong"`` (a scorer that raises on an answer scores it 0) or
            ``"raise"``.
        **env_kwargs: Passed to :class:`ReasoningEnv`.

    Raises:
        MissingExtraError: If reasoning-gym is not installed
            (``pip install 'meds-gym[reasoning-gym]'``).

    Example:
        >>> import gymnasium as gym, meds_gym
        >>> env = gym.make("meds_gym/ReasoningGym-v0", task="chain_sum", size=8, seed=0,
        ...                answer_anchor="answer_tag")  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> gold = env.unwrapped.problem.answer  # doctest: +SKIP
        >>> env.step(f"<answer>{gold}</answer>")[1]  # doctest: +SKIP
        1.0
    """
    from meds_gym.tasks.reasoning_gym import ReasoningGymSource

    source = ReasoningGymSource(
        task, size=size, seed=seed, config=config, scorer_errors=scorer_errors
    )
    anchor = parse_anchor(answer_anchor)
    if "max_prompt_length" not in env_kwargs:
        template = env_kwargs.get("prompt_template") or prompt_template_for(anchor)
        try:
            longest = max(len(template.format(question=p.question)) for p in source)
        except (AttributeError, IndexError, KeyError, ValueError):
            longest = 0  # a bad template: ReasoningEnv rejects it with a clear error
        env_kwargs["max_prompt_length"] = max(_DEFAULT_MAX_PROMPT_LENGTH, longest)
    return ReasoningEnv(source, answer_anchor=anchor, **env_kwargs)
