r"""meds-gym envs over OpenEnv, both ways: serve a registered id, and train against a served env.

**Serve.** ``python -m meds_gym.integrations.openenv serve meds_gym/Arithmetic-v0 --port 8000``
serves a registered meds-gym id (keyword arguments of ``gym.make`` with ``--env-kwargs``, a JSON
object) as an OpenEnv environment on ``127.0.0.1`` (``--host 0.0.0.0`` to listen on every
interface). The action is :class:`TextAction` (the response text); the observation is
:class:`TextObservation`: the prompt, then, after the one step of an episode, the reward,
``done`` and the env's step ``info`` as ``metadata`` (``problem_id``, ``correct``,
``parsed_answer``, ``gold_answer``, ...). ``reset`` accepts ``problem_id=`` or ``index=`` to
pick the problem, and ``seed=``. Each WebSocket session (each client) gets its own env, so
concurrent clients never see each other's episodes; the sessions share one verdict cache. The
problems are listed by OpenEnv's task API (one split, :data:`SPLIT`; each task holds the
problem's id, question, gold answer and error modes), which also gives the answer anchor.

**Wrap.** :class:`OpenEnvTextEnv` is a Gymnasium env over such a server, and a
:class:`~meds_gym.envs.ProblemEnv` like :class:`~meds_gym.envs.ReasoningEnv`: the same
observations, rewards and ``info`` keys, the problem list in ``source``, reset by problem. So
:class:`~meds_gym.meds.MEDSRewardWrapper`, the SB3 wrapper and the bundled agent
(``python -m agents.ppo --env-url http://127.0.0.1:8000``) train against a served env; MEDS runs
in the client's process, where the policy's logits are.

**Failures are errors, never rewards.** A server that cannot be reached, does not answer within
``timeout_s``, closes the connection or reports an error raises :class:`RemoteEnvError`, which
says what was being done and why. ``reset`` is retried (``reset_retries`` times, on a new
connection) because starting an episode twice is harmless; ``step`` is not, since the server may
already have scored the response, and a reward the server did not send is never made up.

Needs the ``openenv`` extra (``pip install 'meds-gym[openenv]'``).

Example (a server running in another shell)::

    from meds_gym.integrations.openenv import OpenEnvTextEnv
    from meds_gym.meds import MEDSConfig, MEDSRewardWrapper

    env = MEDSRewardWrapper(OpenEnvTextEnv("http://127.0.0.1:8000"), MEDSConfig())
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step({"text": response, "features": fp})
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, Any, SupportsFloat

import gymnasium as gym
import numpy as np

import meds_gym  # noqa: F401  (registers the meds_gym/* env ids)
from meds_gym.charset import TEXT_CHARSET, text_space
from meds_gym.envs import ReasoningEnv, VerdictCache, problem_env
from meds_gym.errors import (
    InvalidArgumentError,
    MissingExtraError,
    RemoteEnvError,
    UnknownProblemError,
)
from meds_gym.tasks.base import Problem
from meds_gym.verifiers import AnswerAnchor, parse_anchor

try:
    import httpx
    import tyro
    from fastapi import FastAPI
    from openenv.core.client_types import StepResult
    from openenv.core.env_client import EnvClient
    from openenv.core.env_server.http_server import create_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State
    from pydantic import Field
    from websockets.exceptions import WebSocketException
except ImportError as exc:
    raise MissingExtraError("OpenEnv serving and clients", "openenv", "openenv") from exc

SPLIT = "default"
"""The one task-API split of a served env (all its problems, in the env's order)."""

RESET_OPTIONS = ("problem_id", "index")
"""The keys of ``reset(options=...)``, sent to the server as reset arguments."""


class TextAction(Action):
    """A response to the episode's problem."""

    text: str = Field(description="The full response text.")


class TextObservation(Observation):
    """The prompt at reset; after the step, the empty prompt with reward, done and the verdict."""

    prompt: str = Field(default="", description="The problem's prompt ('' after the step).")


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain, and other non-JSON values as text."""

    def default(obj: Any) -> Any:
        if isinstance(obj, (np.generic, np.ndarray)):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def _task(problem: Problem) -> dict[str, Any]:
    """A problem as a task of OpenEnv's task API."""
    task = _jsonable(dataclasses.asdict(problem))
    assert isinstance(task, dict)
    return task


class MEDSEnvironment(Environment[TextAction, TextObservation, State]):
    """One session's meds-gym env as an OpenEnv ``Environment`` (the server makes one a session).

    Args:
        env: A :class:`~meds_gym.envs.ProblemEnv` (for example ``gym.make`` of a meds-gym id).

    Raises:
        TypeError: If ``env`` is not a :class:`~meds_gym.envs.ProblemEnv`.
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, env: gym.Env[str, str]) -> None:
        super().__init__()
        self._problems = problem_env(env)
        self._env = env
        self._state = State()

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        problem_id: str | None = None,
        index: int | None = None,
        **kwargs: Any,
    ) -> TextObservation:
        """Start an episode: on ``problem_id`` or the ``index``-th problem, else on a random one.

        Raises:
            InvalidArgumentError: For an argument other than these, or both ``problem_id`` and
                ``index``.
        """
        if kwargs:
            raise InvalidArgumentError(
                "reset arguments", "seed, episode_id, problem_id or index", sorted(kwargs)
            )
        options = {
            key: value
            for key, value in (("problem_id", problem_id), ("index", index))
            if value is not None
        }
        prompt, info = self._env.reset(seed=seed, options=options or None)
        self._state = State(
            episode_id=episode_id or uuid.uuid4().hex,
            step_count=0,
            problem_id=info["problem_id"],
        )
        return TextObservation(prompt=prompt, done=False, reward=None, metadata=_jsonable(info))

    def step(
        self, action: TextAction, timeout_s: float | None = None, **kwargs: Any
    ) -> TextObservation:
        """Score the response; the observation carries the reward and the step ``info``."""
        prompt, reward, terminated, truncated, info = self._env.step(action.text)
        self._state.step_count += 1
        return TextObservation(
            prompt=prompt,
            done=bool(terminated or truncated),
            reward=float(reward),
            metadata=_jsonable({**info, "truncated": bool(truncated)}),
        )

    @property
    def state(self) -> State:
        """The episode id, steps taken and the episode's ``problem_id``."""
        return self._state

    def close(self) -> None:
        """Close the env."""
        self._env.close()

    # OpenEnv's task API (discovery only): one split holding every problem.

    def list_splits(self) -> list[dict[str, Any]]:
        """The one split, with its size and the env's answer anchor."""
        return [
            {
                "name": SPLIT,
                "type": "train",
                "num_tasks": len(self._problems.source),
                "answer_anchor": self._problems.answer_anchor.setting,
            }
        ]

    def num_tasks(self, split: str) -> int:
        """Number of problems."""
        self._check_split(split)
        return len(self._problems.source)

    def get_task(self, split: str, index: int) -> dict[str, Any]:
        """The ``index``-th problem (``IndexError`` when out of range)."""
        self._check_split(split)
        if not 0 <= index < len(self._problems.source):
            raise IndexError(index)
        return _task(self._problems.source[index])

    def get_task_range(
        self, split: str, start: int | None = None, stop: int | None = None
    ) -> list[dict[str, Any]]:
        """The problems ``[start, stop)`` (slice semantics)."""
        self._check_split(split)
        source = self._problems.source
        return [_task(source[i]) for i in range(len(source))[start:stop]]

    def list_tasks(self, split: str) -> list[dict[str, Any]]:
        """Every problem."""
        return self.get_task_range(split)

    @staticmethod
    def _check_split(split: str) -> None:
        if split != SPLIT:
            raise InvalidArgumentError("split", f"{SPLIT!r} (a served env has one split)", split)


def make_app(
    env_id: str, env_kwargs: Mapping[str, Any] | None = None, max_sessions: int = 256
) -> FastAPI:
    """The OpenEnv FastAPI app that serves ``gym.make(env_id, **env_kwargs)``, one per session.

    Args:
        env_id: A registered meds-gym text env id (``meds_gym/Arithmetic-v0``, ...).
        env_kwargs: Keyword arguments of ``gym.make``.
        max_sessions: Most concurrent WebSocket sessions (clients); the bundled agent with MEDS
            holds one per rollout of a batch, plus two.

    Returns:
        The FastAPI app (run it with ``uvicorn``, or use :func:`serve`).

    Raises:
        TypeError: If the id is not a text env with a problem list.
        InvalidArgumentError: If ``max_sessions`` < 1 (and as ``gym.make`` raises).
    """
    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
        raise InvalidArgumentError("max_sessions", "an int >= 1", max_sessions)
    kwargs = dict(env_kwargs or {})
    first = MEDSEnvironment(gym.make(env_id, **kwargs))  # a bad id or argument fails here, once
    if isinstance(first._problems, ReasoningEnv) and "verdict_cache" not in kwargs:
        kwargs["verdict_cache"] = VerdictCache()  # shared by the sessions
    first.close()

    def factory() -> MEDSEnvironment:
        return MEDSEnvironment(gym.make(env_id, **kwargs))

    return create_app(
        factory,
        TextAction,
        TextObservation,
        env_name=env_id.split("/")[-1],
        max_concurrent_envs=max_sessions,
    )


def serve(
    env_id: Annotated[str, tyro.conf.Positional],
    host: str = "127.0.0.1",
    port: int = 8000,
    env_kwargs: str = "{}",
    max_sessions: int = 256,
    log_level: str = "warning",
) -> None:
    """Serve a registered meds-gym env id over OpenEnv until interrupted.

    Args:
        env_id: A registered meds-gym text env id, such as ``meds_gym/Arithmetic-v0``.
        host: Interface to listen on (``0.0.0.0``: every interface).
        port: TCP port.
        env_kwargs: Keyword arguments of ``gym.make``, a JSON object, e.g.
            ``'{"num_problems": 32, "incorrect_reward": -1}'``.
        max_sessions: Most concurrent clients (each has its own env).
        log_level: ``uvicorn``'s log level.
    """
    import uvicorn

    try:
        kwargs = json.loads(env_kwargs)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError("env_kwargs", "a JSON object", env_kwargs) from exc
    if not isinstance(kwargs, dict):
        raise InvalidArgumentError("env_kwargs", "a JSON object", env_kwargs)
    app = make_app(env_id, kwargs, max_sessions)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class _TextEnvClient(EnvClient[TextAction, TextObservation, State]):
    """OpenEnv's WebSocket client, typed for :class:`TextAction` and :class:`TextObservation`."""

    def _step_payload(self, action: TextAction) -> dict[str, Any]:
        return {"text": action.text}

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[TextObservation]:
        fields = payload.get("observation", {})
        observation = TextObservation(
            prompt=fields.get("prompt", ""),
            done=payload.get("done", False),
            reward=payload.get("reward"),
            metadata=payload.get("metadata") or fields.get("metadata") or {},
        )
        return StepResult(observation=observation, reward=observation.reward, done=observation.done)

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State(**payload)


class RemoteProblemSource:
    """The problems of a served env (a :class:`~meds_gym.tasks.base.ProblemSource`), read once.

    Args:
        name: The served env's name.
        tasks: The task API's tasks, in the server's order.
    """

    def __init__(self, name: str, tasks: Iterable[Mapping[str, Any]]) -> None:
        self._name = name
        self._problems = [
            Problem(
                problem_id=str(task["problem_id"]),
                question=str(task["question"]),
                answer=str(task["answer"]),
                error_modes=dict(task.get("error_modes") or {}),
                metadata=dict(task.get("metadata") or {}),
            )
            for task in tasks
        ]
        self._by_id = {problem.problem_id: problem for problem in self._problems}

    @property
    def name(self) -> str:
        """The served env's name."""
        return self._name

    def __len__(self) -> int:
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        return self._problems[index]

    def get(self, problem_id: str) -> Problem:
        """The problem with this id; raises :class:`~meds_gym.errors.UnknownProblemError`."""
        if problem_id not in self._by_id:
            raise UnknownProblemError(problem_id, list(self._by_id), self._name)
        return self._by_id[problem_id]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._problems)


_TRANSPORT_ERRORS = (OSError, WebSocketException, httpx.HTTPError)
"""What a lost, refused or timed-out connection raises (``TimeoutError`` is an ``OSError``)."""


class OpenEnvTextEnv(gym.Env[str, str]):
    """A meds-gym env served over OpenEnv, as a Gymnasium env (and a ProblemEnv).

    Observations, rewards and ``info`` are the served env's (see :class:`ReasoningEnv
    <meds_gym.envs.ReasoningEnv>`): ``reset`` gives the prompt and ``problem_id``, ``question``,
    ``messages``; ``step`` gives ``("", reward, True, False, info)`` with ``problem_id``,
    ``correct``, ``is_success``, ``parsed_answer``, ``gold_answer``. ``source`` lists the served
    problems (read from the server on first use) and ``answer_anchor`` is the server's.

    Args:
        base_url: The server, e.g. ``"http://127.0.0.1:8000"``.
        timeout_s: Seconds to wait for each answer of the server.
        connect_timeout_s: Seconds to wait for a connection.
        reset_retries: Further tries of a failed ``reset``, each on a new connection, after
            0.5 s, 1 s, 2 s, ... (``step`` is never retried).
        max_prompt_length: Maximum observation length in characters (observation space).
        max_response_length: Maximum response length in characters (action space).
        charset: Characters of the text spaces (default :data:`~meds_gym.charset.TEXT_CHARSET`).

    Raises:
        InvalidArgumentError: If an argument is out of range.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        reset_retries: int = 2,
        max_prompt_length: int = 8192,
        max_response_length: int = 32768,
        charset: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidArgumentError("base_url", "an http:// or https:// URL", base_url)
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(name, "a positive number of seconds", value)
        if (
            isinstance(reset_retries, bool)
            or not isinstance(reset_retries, int)
            or reset_retries < 0
        ):
            raise InvalidArgumentError("reset_retries", "an int >= 0", reset_retries)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reset_retries = reset_retries
        text_charset = frozenset(TEXT_CHARSET if charset is None else charset)
        self.observation_space = text_space(max_prompt_length, text_charset)
        self.action_space = text_space(max_response_length, text_charset)
        self._client = self._connect()
        self._source: RemoteProblemSource | None = None
        self._anchor: AnswerAnchor | None = None
        self._running = False

    def _connect(self) -> Any:
        """A new synchronous OpenEnv client (it connects on its first message)."""
        return _TextEnvClient(
            base_url=self.base_url,
            connect_timeout_s=self.connect_timeout_s,
            message_timeout_s=self.timeout_s,
        ).sync()

    def _remote(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()``, with a failure of the connection or the server as :class:`RemoteEnvError`."""
        try:
            return call()
        except _TRANSPORT_ERRORS as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else "lost the connection"
            if isinstance(exc, (ConnectionRefusedError, httpx.ConnectError)) or (
                isinstance(exc, ConnectionError) and "Failed to connect" in str(exc)
            ):
                reason = "could not connect"
            detail = str(exc) or type(exc).__name__
            raise RemoteEnvError(
                f"{what} on the OpenEnv server {self.base_url} failed: {reason} ({detail}). "
                "Is the server running (python -m meds_gym.integrations.openenv serve ...)?"
            ) from exc
        except RuntimeError as exc:  # OpenEnv's client raises the server's error this way
            raise RemoteEnvError(
                f"{what}: the OpenEnv server {self.base_url} reported an error: {exc}"
            ) from exc

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of one HTTP request to the server (task API)."""

        def call() -> Any:
            response = httpx.request(
                method,
                self.base_url + path,
                json=body,
                timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            )
            response.raise_for_status()
            return response.json()

        return self._remote(f"{method} {path}", call)

    def _read_problems(self) -> None:
        """Read the problem list and the answer anchor from the task API."""
        (name,) = self._http("GET", "/list_environments")
        (split,) = self._http("GET", f"/{name}/splits")
        tasks = self._http("POST", f"/{name}/task_range", {"split": split["name"]})["tasks"]
        self._source = RemoteProblemSource(name, tasks)
        self._anchor = parse_anchor(split["answer_anchor"])

    @property
    def source(self) -> RemoteProblemSource:
        """The served problems (read from the server on first use)."""
        if self._source is None:
            self._read_problems()
        assert self._source is not None
        return self._source

    @property
    def answer_anchor(self) -> AnswerAnchor:
        """The served env's answer anchor (read from the server on first use)."""
        if self._anchor is None:
            self._read_problems()
        assert self._anchor is not None
        return self._anchor

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on the server (retried on a new connection when that fails).

        Args:
            seed: Seeds the served env's problem draw (and ``self.np_random``).
            options: ``{"problem_id": id}`` or ``{"index": i}`` to pick the problem.

        Returns:
            The prompt and the served env's reset ``info``.

        Raises:
            InvalidArgumentError: For options other than those.
            RemoteEnvError: If every try failed, or the server refused the reset.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        if set(options) - set(RESET_OPTIONS):
            raise InvalidArgumentError(
                "options", f"a dict with at most one of the keys {RESET_OPTIONS}", options
            )
        arguments = {**options, **({} if seed is None else {"seed": seed})}
        self._running = False
        for attempt in range(self.reset_retries + 1):
            try:
                result = self._remote("reset", lambda: self._client.reset(**arguments))
                break
            except RemoteEnvError as exc:
                if attempt == self.reset_retries or not isinstance(
                    exc.__cause__, _TRANSPORT_ERRORS
                ):
                    raise
                self._close_client()
                time.sleep(0.5 * 2**attempt)
                self._client = self._connect()
        self._running = True
        return result.observation.prompt, dict(result.observation.metadata)

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Send the response; the server scores it (never retried: it may have scored it).

        Returns:
            ``(prompt, reward, terminated, truncated, info)`` as the served env gives them
            (``("", reward, True, False, info)`` for a meds-gym env).

        Raises:
            RuntimeError: If no episode is running (call ``reset`` first).
            RemoteEnvError: If the server cannot be reached, times out, goes away, reports an
                error or sends no reward.
        """
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the response text), not {type(action)}")
        if not self._running:
            raise RuntimeError("step() called without a running episode: call reset() first.")
        self._running = False
        result = self._remote("step", lambda: self._client.step(TextAction(text=action)))
        info = dict(result.observation.metadata)
        if result.reward is None:
            raise RemoteEnvError(
                f"step: the OpenEnv server {self.base_url} sent no reward (metadata {info})."
            )
        truncated = bool(info.pop("truncated", False))
        terminated = bool(result.done) and not truncated
        return result.observation.prompt, float(result.reward), terminated, truncated, info

    def _close_client(self) -> None:
        """Close the connection; one already lost has nothing left to close."""
        try:
            self._client.close()
        except (*_TRANSPORT_ERRORS, RuntimeError):
            pass

    def close(self) -> None:
        """Close the connection (the server then closes this session's env)."""
        self._close_client()
        super().close()


def main() -> None:
    """``python -m meds_gym.integrations.openenv serve ENV_ID [--port ...]``."""
    tyro.extras.subcommand_cli_from_dict({"serve": serve})


if __name__ == "__main__":
    main()
