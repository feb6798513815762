"""What every agent entry point builds the same way: the env, the model, the evaluation samples.

``agents.ppo`` (training), ``agents.evaluate``, ``agents.compare`` and ``experiments/reproduce.py``
all describe their env with an :class:`EnvSpec`, find their model with :func:`resolve_model_path`
(the tiny model warmed up on the env's own toy task, or a model directory) and evaluate a policy by
sampling every problem of an env with :func:`sample_every_problem`; each then summarises the
samples its own way.

Example:
    >>> from agents.run_setup import EnvSpec
    >>> spec = EnvSpec("meds_gym/AddSub-v0", num_problems=4)
    >>> spec.kwargs(split="test")
    {'num_problems': 4, 'difficulty': 1, 'seed': 0, 'answer_anchor': 'boxed', 'split': 'test'}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.envs import TOY_ENV_IDS, VerdictCache, problem_env
from meds_gym.errors import InvalidArgumentError
from meds_gym.tasks.base import Problem

from .policy import prompt_text, sample_responses, score_responses
from .tiny_model import TinyModelConfig, tiny_model_path


@dataclass(frozen=True)
class EnvSpec:
    """Which env a run uses: a registered id and the arguments that pick its problems."""

    env_id: str
    """A registered meds-gym env id."""
    num_problems: int = 32
    """Problems of a toy task (toy env ids only)."""
    difficulty: int = 1
    """Difficulty of a toy task (toy env ids only)."""
    task_seed: int = 0
    """Seed of the toy task's problem set (toy env ids only)."""
    data_path: str | None = None
    """Local data file of a benchmark env id (other ids only)."""
    answer_anchor: str = "boxed"
    """Where the final answer starts (``boxed``, ``answer_tag`` or a regex with one group)."""
    incorrect_reward: float = 0.0
    """The env's reward of a wrong answer (a right one scores 1)."""
    env_url: str | None = None
    """The base URL of an OpenEnv server that serves ``env_id`` (``python -m
    meds_gym.integrations.openenv serve``): the run then steps that server's env, and ``env_id``
    and the fields above only name the run and pick the tiny model (the server's own arguments
    decide its problems and rewards). None: ``gym.make`` the env in this process."""

    @classmethod
    def of(cls, args: Any) -> EnvSpec:
        """The spec of a script's arguments (``env_id``, ``num_problems``, ... that it has)."""
        fields = {
            f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
        }
        return cls(**fields)

    @property
    def is_toy(self) -> bool:
        """Whether the id is a procedural toy task (which has splits and known error modes)."""
        return self.env_id in TOY_ENV_IDS

    def kwargs(
        self, split: str | None = None, verdict_cache: VerdictCache | None = None
    ) -> dict[str, Any]:
        """The keyword arguments of ``gym.make(self.env_id, ...)``.

        Args:
            split: Toy tasks: ``"train"`` or ``"test"``; None leaves the env's default (train).
                Ignored for other ids, which have no split.
            verdict_cache: A cache shared by several envs of one run (each distinct answer of a
                problem is then verified once); None: each env verifies on its own.

        Returns:
            The toy task's ``num_problems``, ``difficulty`` and ``seed``, or the benchmark's
            ``data_path``; then ``answer_anchor``, ``incorrect_reward`` unless it is the env's
            default 0, and ``verdict_cache`` and ``split`` if given.
        """
        kwargs: dict[str, Any] = (
            {
                "num_problems": self.num_problems,
                "difficulty": self.difficulty,
                "seed": self.task_seed,
            }
            if self.is_toy
            else {"data_path": self.data_path}
        )
        kwargs["answer_anchor"] = self.answer_anchor
        if self.incorrect_reward != 0.0:
            kwargs["incorrect_reward"] = self.incorrect_reward
        if verdict_cache is not None:
            kwargs["verdict_cache"] = verdict_cache
        if split is not None and self.is_toy:
            kwargs["split"] = split
        return kwargs

    @property
    def has_splits(self) -> bool:
        """Whether the run can make the env's test split (a toy task made in this process)."""
        return self.is_toy and self.env_url is None

    def make(self, split: str | None = None, verdict_cache: VerdictCache | None = None) -> Any:
        """``gym.make`` the env (see :meth:`kwargs` for the arguments), or connect to ``env_url``.

        A served env has one set of problems, so ``split`` and ``verdict_cache`` do not apply to
        it (the server keeps its own verdict cache).
        """
        if self.env_url is not None:
            from meds_gym.integrations.openenv import OpenEnvTextEnv

            return OpenEnvTextEnv(self.env_url)
        return gym.make(self.env_id, **self.kwargs(split, verdict_cache))

    def tiny_config(
        self, tiny: TinyModelConfig, prompt_format: str | None = None
    ) -> TinyModelConfig:
        """``tiny`` warmed up on this env's toy task: its own problems, or fresh ones.

        With ``tiny.fresh_problems`` 0 the warm-up covers this env's problems (same family, size,
        difficulty and task seed). With N > 0 it covers N problems of task seed
        ``task_seed + 1`` and never a question among this env's ``num_problems`` training and
        test problems (:attr:`TinyModelConfig.fresh_problems`).

        Args:
            tiny: The architecture and warm-up; its task fields are replaced.
            prompt_format: The run's prompt format; None keeps ``tiny.prompt_format``.

        Raises:
            InvalidArgumentError: If the env is not a toy task (the tiny model knows no other).
        """
        if not self.is_toy:
            raise InvalidArgumentError(
                "model_path",
                "a model directory (the tiny model is built for the toy envs "
                f"{sorted(TOY_ENV_IDS)})",
                None,
            )
        problems: dict[str, Any] = (
            {
                "num_problems": tiny.fresh_problems,
                "task_seed": self.task_seed + 1,
                "exclude_seed": self.task_seed,
                "exclude_problems": self.num_problems,
            }
            if tiny.fresh_problems
            else {"num_problems": self.num_problems, "task_seed": self.task_seed}
        )
        return dataclasses.replace(
            tiny,
            task=TOY_ENV_IDS[self.env_id],
            difficulty=self.difficulty,
            prompt_format=tiny.prompt_format if prompt_format is None else prompt_format,
            **problems,
        )


def resolve_model_path(
    spec: EnvSpec,
    model_path: str | None,
    tiny: TinyModelConfig,
    prompt_format: str | None = None,
    cache_dir: str | None = None,
) -> str:
    """The model a run loads: ``model_path``, or the tiny model of the env's task (built if new).

    Args:
        spec: The run's env.
        model_path: A local model directory; None: the tiny model.
        tiny: The tiny model's architecture and warm-up (see :meth:`EnvSpec.tiny_config`).
        prompt_format: The run's prompt format; None keeps ``tiny.prompt_format``.
        cache_dir: Cache of tiny models (None: ``$MEDS_GYM_CACHE`` or ``~/.cache/meds_gym``).

    Returns:
        The model directory.

    Raises:
        InvalidArgumentError: If ``model_path`` is None and the env is not a toy task.
    """
    if model_path is not None:
        return model_path
    return str(tiny_model_path(spec.tiny_config(tiny, prompt_format), cache_dir))


@dataclass(frozen=True)
class ProblemSamples:
    """``n`` scored responses to every problem of an env, problem after problem."""

    n: int
    """Responses per problem."""
    problems: list[Problem]
    """(P,) the env's problems, in order."""
    problem_ids: list[str]
    """(P * n,) problem of each response: ``n`` consecutive rows per problem."""
    answers: list[str | None]
    """(P * n,) the final answer the env parsed (None: no answer)."""
    correct: list[bool]
    """(P * n,) the env's verdicts."""

    @property
    def correct_counts(self) -> list[int]:
        """(P,) correct responses per problem."""
        return [sum(self.correct[i : i + self.n]) for i in range(0, len(self.correct), self.n)]

    @property
    def response_problems(self) -> list[Problem]:
        """(P * n,) the problem of each response."""
        return [problem for problem in self.problems for _ in range(self.n)]


def sample_every_problem(
    model: Any,
    tokenizer: Any,
    env: Any,
    n: int,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    prompt_format: str = "chat",
    problems_per_batch: int = 16,
) -> ProblemSamples:
    """Sample ``n`` responses to every problem of ``env`` and score them with it.

    The problems are sampled ``problems_per_batch`` at a time, in index order: a decoding step
    costs about as much for 8 rows as for 128 on a small model, so batching problems makes
    evaluation several times faster (64 problems x 8 responses on the 6-layer tiny model, one
    thread: 11.5 s one problem at a time, 3.9 s sixteen at a time). The draws depend on the
    batch size, as they do in any batched sampler; each batch size gives the same samples on
    every run with the same seed.

    Args:
        model: The causal LM (put in eval mode here).
        tokenizer: Its tokenizer, padding on the left.
        env: A :class:`~meds_gym.envs.ProblemEnv` (or a wrapper of one).
        n: Responses per problem.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.
        seed: Seed of the sampling (torch's global generator is reseeded).
        prompt_format: How observations become prompts (:data:`agents.policy.PROMPT_FORMATS`).
        problems_per_batch: Problems sampled together (``problems_per_batch * n`` rows).

    Returns:
        The responses' problems, parsed answers and verdicts.
    """
    import torch

    if n < 1:
        raise InvalidArgumentError("n", "an int >= 1", n)
    if problems_per_batch < 1:
        raise InvalidArgumentError("problems_per_batch", "an int >= 1", problems_per_batch)
    torch.manual_seed(seed)
    source = problem_env(env).source
    model.eval()
    problems, ids, answers, verdicts = [], [], [], []
    for start in range(0, len(source), problems_per_batch):
        prompts, batch_ids = [], []
        for index in range(start, min(start + problems_per_batch, len(source))):
            obs, info = env.reset(options={"index": index})
            prompts.append(prompt_text(tokenizer, obs, info, prompt_format))
            batch_ids.append(info["problem_id"])
        batch = sample_responses(model, tokenizer, prompts, n, max_new_tokens, temperature)
        rows = [pid for pid in batch_ids for _ in range(n)]  # grouped by prompt, in order
        _, correct, parsed = score_responses(env, rows, batch.texts)
        problems += [source.get(pid) for pid in batch_ids]
        ids += rows
        answers += parsed
        verdicts += correct
    return ProblemSamples(n, problems, ids, answers, verdicts)
