"""A ``verifiers.v1`` taskset built here from four arithmetic rows, as a meds-gym env with MEDS."""

from __future__ import annotations

import asyncio
import math
import pickle
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

if sys.version_info < (3, 11):
    pytest.skip("verifiers needs Python >= 3.11", allow_module_level=True)
vf = pytest.importorskip("verifiers.v1")

from meds_gym.errors import InvalidArgumentError, UnknownProblemError  # noqa: E402
from meds_gym.integrations.verifiers import VerifiersSource, verifiers_env  # noqa: E402
from meds_gym.meds import ClusterMethod, MEDSConfig, MEDSRewardWrapper  # noqa: E402
from meds_gym.tasks import ArithmeticTask  # noqa: E402
from meds_gym.verifiers import AnchorKind  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"

ROWS = [(p.question, p.answer) for p in ArithmeticTask(num_problems=4, seed=0)]
"""(question, answer): ``Compute 7 + 3 * 6 - 6.``, ``19``, ..."""


class ArithData(vf.TaskData):
    answer: str


class ArithTask(vf.Task[ArithData]):
    """Right or wrong: the last ``\\boxed{}`` equals the answer (async, as verifiers wants)."""

    @vf.reward
    async def correct(self, trace) -> float:
        return vf.verify_boxed_math_answer(trace.last_reply, self.data.answer)


class ArithTaskset(vf.Taskset[ArithTask]):
    """The rows, with durable ids if ``ids`` and a system prompt if ``system_prompt``."""

    def __init__(self, config, rows=ROWS, ids=False, system_prompt=None):
        super().__init__(config)
        self.rows, self.ids, self.system = rows, ids, system_prompt

    def load(self):
        for i, (question, answer) in enumerate(self.rows):
            data = ArithData(
                prompt=question,
                answer=answer,
                id=f"row-{i}" if self.ids else None,
                system_prompt=self.system,
            )
            yield ArithTask(data)


def taskset(**kwargs) -> ArithTaskset:
    return ArithTaskset(vf.TasksetConfig(id="arith"), **kwargs)


def step(env, index, response):
    env.reset(options={"index": index})
    _, reward, terminated, truncated, info = env.step(response)
    assert terminated and not truncated
    return reward, info


def test_right_and_wrong_answers_get_the_tasksets_reward_and_verdict():
    env = verifiers_env(taskset())
    obs, info = env.reset(seed=0, options={"index": 1})
    assert info["problem_id"] == "arith/1" and info["question"] == ROWS[1][0]
    assert obs.startswith(ROWS[1][0]) and "\\boxed{}" in obs
    reward, info = step(env, 1, f"3 * 4 = 12, 3 + 12 - 8 = 7, so \\boxed{{{ROWS[1][1]}}}")
    assert (reward, info["correct"], info["parsed_answer"], info["score"]) == (1.0, True, "7", 1.0)
    assert info["gold_answer"] == "7"
    reward, info = step(env, 1, "left to right: \\boxed{13}")
    assert (reward, info["correct"], info["parsed_answer"]) == (0.0, False, "13")
    reward, info = step(env, 1, "no answer")
    assert (reward, info["correct"], info["parsed_answer"]) == (0.0, False, None)
    # The agent's -1 / +1 scale rescales the taskset's reward linearly.
    env = verifiers_env(taskset(), incorrect_reward=-1.0)
    assert step(env, 0, "\\boxed{20}")[0] == -1.0 and step(env, 0, "\\boxed{19}")[0] == 1.0


def test_problem_ids_are_task_ids_or_positions_and_reset_takes_them():
    source = VerifiersSource(taskset(ids=True))
    assert [p.problem_id for p in source] == ["row-0", "row-1", "row-2", "row-3"]
    assert source.get("row-2").answer == ROWS[2][1] and source.task("row-2").data.idx == 2
    with pytest.raises(UnknownProblemError, match="row-1"):
        source.get("row-9")
    env = verifiers_env(taskset(ids=True))
    _, info = env.reset(options={"problem_id": "row-3"})
    assert info["question"] == ROWS[3][0]
    ids = [p.problem_id for p in VerifiersSource(taskset(), name="mine")]
    assert ids == [f"mine/{i}" for i in range(4)]
    assert len(VerifiersSource(taskset().shuffle(seed=0).take(2))) == 2


class PartialTask(vf.Task[ArithData]):
    """1 for the answer, 0.5 one off, else 0; plus a weighted format reward."""

    @vf.reward
    async def closeness(self, trace) -> float:
        answer = vf.extract_boxed_answer(trace.last_reply, strict=True).strip()
        if not answer.lstrip("-").isdigit():
            return 0.0
        return {0: 1.0, 1: 0.5}.get(abs(int(answer) - int(self.data.answer)), 0.0)

    @vf.reward(weight=0.5)
    async def shows_work(self, trace) -> float:
        return float("=" in trace.last_reply)


class PartialTaskset(vf.Taskset[PartialTask]):
    def load(self):
        for question, answer in ROWS:
            yield PartialTask(ArithData(prompt=question, answer=answer))


def test_non_binary_reward_reads_correctness_with_the_threshold():
    tasks = PartialTaskset(vf.TasksetConfig(id="partial"))
    strict = verifiers_env(tasks, reward_range=(0.0, 1.5))
    lenient = verifiers_env(tasks, reward_range=(0.0, 1.5), threshold=1.0)
    for response, reward, strict_ok, lenient_ok in (
        ("7 + 18 - 6 = 19 \\boxed{19}", 1.5, True, True),
        ("7 + 18 - 6 = 20 \\boxed{20}", 1.0, False, True),  # one off, work shown
        ("\\boxed{20}", 0.5, False, False),
        ("\\boxed{54}", 0.0, False, False),
    ):
        got, info = step(strict, 0, response)
        assert got == pytest.approx(reward) and info["correct"] is strict_ok
        assert info["score"] == pytest.approx(reward / 1.5)
        got, info = step(lenient, 0, response)
        assert got == pytest.approx(reward) and info["correct"] is lenient_ok
    # The reward must lie in the declared range: never silently clipped.
    narrow = verifiers_env(tasks)
    with pytest.raises(RuntimeError, match=r"1\.5, outside reward_range=\(0\.0, 1\.0\)"):
        step(narrow, 0, "= \\boxed{19}")


def test_the_anchor_and_instruction_come_from_the_tasks_answer_format():
    tag = "Think, then give the final answer as <answer>N</answer>."
    env = verifiers_env(taskset(system_prompt=tag))
    assert env.answer_anchor.kind is AnchorKind.ANSWER_TAG
    obs, info = env.reset(options={"index": 0})
    assert info["messages"] == [
        {"role": "system", "content": tag},
        {"role": "user", "content": ROWS[0][0]},
    ]
    assert obs == f"{ROWS[0][0]}\n{tag}"
    _, info = step(env, 0, "<answer>19</answer>")
    assert info["parsed_answer"] == "19" and not info["correct"]  # the task reads \boxed{} only
    boxed = verifiers_env(taskset(system_prompt="Reply with \\boxed{N}."))
    assert boxed.answer_anchor.kind is AnchorKind.BOXED
    assert verifiers_env(taskset()).answer_anchor.kind is AnchorKind.BOXED  # no format: boxed
    forced = verifiers_env(taskset(system_prompt=tag), answer_anchor="boxed")
    assert forced.answer_anchor.kind is AnchorKind.BOXED


class Exact(vf.Task[ArithData]):
    """Right or wrong by string comparison, after yielding to the event loop once."""

    @vf.reward
    async def exact(self, trace) -> float:
        await asyncio.sleep(0)
        return float(vf.extract_boxed_answer(trace.last_reply, strict=True) == self.data.answer)


def test_async_rewards_run_also_under_a_running_event_loop():
    env = verifiers_env(OneOf(Exact))

    async def inside_a_loop():
        return step(env, 0, "\\boxed{19}")

    reward, info = asyncio.run(inside_a_loop())
    assert reward == 1.0 and info["correct"]
    assert step(env, 0, "\\boxed{19}")[0] == 1.0  # and from sync code again


def test_a_pickled_source_scores_the_same():
    source = VerifiersSource(taskset())
    copy = pickle.loads(pickle.dumps(source))
    for s in (source, copy):
        assert s.reward(s[3], "\\boxed{22}") == (1.0, {"correct": 1.0})


class NeedsRuntime(vf.Task[ArithData]):
    @vf.reward
    async def from_a_file(self, trace, runtime) -> float:
        return 1.0


class NoReward(vf.Task[ArithData]):
    pass


class Raises(vf.Task[ArithData]):
    @vf.reward
    async def broken(self, trace) -> float:
        raise ValueError("cannot read the reply")


class Slow(vf.Task[ArithData]):
    @vf.reward
    async def waits(self, trace) -> float:
        await asyncio.sleep(30)
        return 1.0


class OneOf(vf.Taskset[vf.Task]):
    def __init__(self, task_cls, infinite=False):
        super().__init__(vf.TasksetConfig(id="one"))
        self.task_cls, self.INFINITE = task_cls, infinite

    def load(self):
        while True:
            yield self.task_cls(ArithData(prompt=ROWS[0][0], answer=ROWS[0][1]))
            if not self.INFINITE:
                return


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"taskset": OneOf(NeedsRuntime)}, "need a runtime"),
        ({"taskset": OneOf(NoReward)}, "no reward function"),
        ({"taskset": OneOf(ArithTask, infinite=True)}, "max_tasks"),
        ({"reward_range": (1.0, 1.0)}, "reward_range"),
        ({"reward_range": (0.0, 1.0), "threshold": 0.0}, "threshold"),
        ({"max_tasks": 0}, "max_tasks"),
        ({"score_timeout": 0}, "score_timeout"),
    ],
)
def test_rejected_tasksets_and_arguments(kwargs, match):
    kwargs = {"taskset": OneOf(ArithTask), **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        VerifiersSource(**kwargs)


def test_not_a_taskset_and_an_infinite_one_with_max_tasks():
    with pytest.raises(TypeError, match="verifiers.v1.Taskset"):
        VerifiersSource(ROWS)
    assert len(VerifiersSource(OneOf(ArithTask, infinite=True), max_tasks=3)) == 3


def test_scoring_failures_raise_never_score_zero():
    with pytest.raises(RuntimeError, match="scoring one/0 failed.*cannot read the reply"):
        step(verifiers_env(OneOf(Raises)), 0, "\\boxed{19}")
    with pytest.raises(TimeoutError, match="took more than 0.05 s"):
        step(verifiers_env(OneOf(Slow), score_timeout=0.05), 0, "\\boxed{19}")


def test_meds_penalises_repeated_wrong_answers_of_the_verifiers_env():
    # The answer-string memory: the env's parsed answer is the key.
    env = MEDSRewardWrapper(
        verifiers_env(taskset()), MEDSConfig(cluster_method=ClusterMethod.ANSWER)
    )
    penalties = []
    for _ in range(3):
        env.reset(options={"index": 0})
        _, reward, _, _, info = env.step("precedence ignored: \\boxed{54}")
        assert info["meds"]["raw_reward"] == 0.0 and not info["correct"]
        penalties.append(info["meds"]["penalty"])
        assert reward == pytest.approx(-info["meds"]["penalty"])
    assert penalties[0] == 0.0 < penalties[1] < penalties[2]
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("\\boxed{19}")
    assert reward == 1.0 and info["meds"]["penalty"] == 0.0
    # Fingerprints (a policy's, here fixed vectors of one direction): HDBSCAN's memory.
    env = MEDSRewardWrapper(verifiers_env(taskset()), MEDSConfig(alpha=0.1, beta=0.2))
    penalties = []
    for angle in (0.0, 1.0, 2.0, 0.5):
        env.reset(options={"index": 0})
        features = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
        _, _, _, _, info = env.step({"text": "\\boxed{54}", "features": features})
        penalties.append(info["meds"]["penalty"])
    assert penalties[0] == 0.0 and all(p > 0 for p in penalties[1:])
    assert penalties == sorted(penalties)


@pytest.mark.slow
def test_the_bundled_agent_trains_against_the_verifiers_env(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from agents.ppo import main
    from agents.tiny_model import tiny_model_path
    from tests.tiny import cpu_run, learnable_tiny

    env_id = "meds_gym_test/VerifiersArith-v0"

    def make(data_path=None, **kwargs):  # the agent passes data_path for non-toy ids
        return verifiers_env(taskset(), **kwargs)

    gym.register(env_id, entry_point=make, disable_env_checker=True)
    try:
        tiny = learnable_tiny(num_problems=4)  # the rows' task (4 arithmetic problems, seed 0)
        model = tiny_model_path(tiny, tmp_path / "cache", progress=False)
        args = cpu_run(
            tmp_path,
            algorithm="meds",
            meds_cluster="answer",
            env_id=env_id,
            model_path=str(model),
            iterations=3,
            prompts_per_iteration=4,
            group_size=8,
            max_new_tokens=48,
            eval_n=0,
            seed=0,
        )
        history = main(args)
    finally:
        gym.registry.pop(env_id)
    # The warmed-up policy is sometimes right: groups are mixed, MEDS stores and penalises.
    assert len(history) == 3 and all(math.isfinite(r["charts/reward_mean"]) for r in history)
    assert history[-1]["meds/memory_rows"] > 0
    assert any(row["meds/penalised_share"] > 0 for row in history)


def test_the_readme_section_runs_as_printed(capsys):
    section = README.read_text().split("## verifiers environments", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(snippet, str(README), "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.splitlines() == [
        "6 False 0.0 0.0",
        "6 False 0.069 -0.069",
        "5 True 0.0 1.0",
    ]
