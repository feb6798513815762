import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import meds_gym
from meds_gym.envs import (
    BENCHMARK_ENV_IDS,
    SYSTEM_INSTRUCTION,
    TEXT_CHARSET,
    TOY_ENV_IDS,
    ReasoningEnv,
)
from meds_gym.errors import InvalidArgumentError, UnknownProblemError
from meds_gym.tasks import ArithmeticTask
from tests.conftest import BENCHMARK_FILES, benchmark_file


def boxed(answer: str) -> str:
    return f"Let me think. The final answer is \\boxed{{{answer}}}."


def gold(env: gym.Env, problem_id: str) -> str:
    return env.unwrapped.source.get(problem_id).answer


@pytest.mark.parametrize("env_id", sorted(TOY_ENV_IDS))
def test_toy_envs_pass_check_env(env_id):
    check_env(gym.make(env_id).unwrapped)


@pytest.mark.parametrize("env_id", sorted(BENCHMARK_ENV_IDS))
def test_benchmark_envs_pass_check_env(env_id, tmp_path):
    name = BENCHMARK_ENV_IDS[env_id]
    if name == "aime24":  # no AIME24 file is bundled: same fields as AMC23
        path = tmp_path / "aime24.jsonl"
        path.write_text(
            '{"id": 0, "problem": "Find 1+1.", "answer": "2", "solution": "1+1=2"}\n'
            '{"id": 1, "problem": "Find 2+2.", "answer": "4", "solution": "2+2=4"}\n'
        )
    else:
        path = benchmark_file(name)
    env = gym.make(env_id, data_path=str(path))
    check_env(env.unwrapped)


def test_dataset_env_passes_check_env(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"q": "What is 2+2?", "a": "4"}\n{"q": "What is 3*3?", "a": "9"}\n')
    env = gym.make("meds_gym/Dataset-v0", data_path=str(path), question_field="q", answer_field="a")
    check_env(env.unwrapped)
    obs, info = env.reset(options={"index": 1})
    assert "3*3" in obs
    _, reward, *_ = env.step(boxed("9"))
    assert reward == 1.0


def test_make_works_offline_with_no_arguments():
    env = gym.make("meds_gym/Arithmetic-v0")
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and obs in env.observation_space
    assert SYSTEM_INSTRUCTION in obs
    assert info["messages"][0] == {"role": "system", "content": SYSTEM_INSTRUCTION}
    assert info["messages"][1]["role"] == "user"
    assert info["messages"][1]["content"] == info["question"]


def test_correct_and_wrong_answers():
    env = gym.make("meds_gym/Arithmetic-v0")
    _, info = env.reset(seed=1)
    pid = info["problem_id"]
    answer = gold(env, pid)
    obs, reward, terminated, truncated, info = env.step(boxed(answer))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["correct"] is True and info["is_success"] is True
    assert info["parsed_answer"] == answer and info["gold_answer"] == answer
    assert info["problem_id"] == pid and obs == ""

    env.reset(options={"problem_id": pid})
    _, reward, terminated, _, info = env.step(boxed(str(int(answer) + 1)))
    assert (reward, terminated, info["correct"]) == (0.0, True, False)
    assert info["parsed_answer"] == str(int(answer) + 1)


def test_rewards_are_configurable():
    env = gym.make("meds_gym/Arithmetic-v0", correct_reward=2.5, incorrect_reward=-1.0)
    _, info = env.reset(seed=3)
    _, reward, *_ = env.step("no answer here")
    assert reward == -1.0
    env.reset(options={"problem_id": info["problem_id"]})
    _, reward, *_ = env.step(boxed(gold(env, info["problem_id"])))
    assert reward == 2.5


def test_same_seed_same_problems_and_rewards():
    def run(seed):
        env = gym.make("meds_gym/AddSub-v0")
        env.reset(seed=seed)
        out = []
        for _ in range(20):
            obs, info = env.reset()
            _, reward, *_ = env.step(boxed("7"))
            out.append((obs, info["problem_id"], reward))
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_problem_ids_are_stable_across_instances():
    a = gym.make("meds_gym/Modular-v0", difficulty=2, seed=4)
    b = gym.make("meds_gym/Modular-v0", difficulty=2, seed=4)
    for index in (0, 7, 99):
        oa, ia = a.reset(options={"index": index})
        ob, ib = b.reset(options={"index": index})
        assert (oa, ia["problem_id"]) == (ob, ib["problem_id"])
        oc, ic = a.reset(options={"problem_id": ia["problem_id"]})
        assert oc == oa


def test_group_sampling_revisits_the_same_problem():
    env = gym.make("meds_gym/Arithmetic-v0")
    _, info = env.reset(seed=0)
    pid = info["problem_id"]
    for _ in range(4):
        _, again = env.reset(options={"problem_id": pid})
        assert again["problem_id"] == pid


def test_non_string_action_raises_type_error_naming_parameter():
    env = ReasoningEnv(ArithmeticTask(num_problems=5))
    env.reset(seed=0)
    for bad in (42, None, b"\\boxed{1}", ["\\boxed{1}"]):
        with pytest.raises(
            TypeError, match=r"`action` must be a str.*received.*" + type(bad).__name__
        ):
            env.step(bad)


@pytest.mark.parametrize(
    "response",
    [
        "",
        "garbage !!! ###",
        "no box at all, the answer is 5",
        "\x00\x00\\boxed{\x00}",
        "\\boxed{",
        "\\boxed{}}}}",
        "数学 \\boxed{五} 🙂",
        "a" * 1_000_000,
        "\\boxed{1}" * 10_000 + "x" * 100_000,
        "\\boxed{\\frac{1}{0}}",
    ],
    ids=[
        "empty",
        "garbage",
        "no-box",
        "nul-bytes",
        "unclosed",
        "extra-braces",
        "unicode",
        "million-chars",
        "many-boxes-long-tail",
        "division-by-zero",
    ],
)
def test_bad_text_is_a_wrong_answer_not_a_crash(response):
    env = ReasoningEnv(ArithmeticTask(num_problems=5))
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(response)
    assert isinstance(info["correct"], bool)
    assert terminated and not truncated
    assert reward == (1.0 if info["correct"] else 0.0)
    assert info["response_overlong"] == (len(response) > env.action_space.max_length)


def test_unknown_problem_id_lists_closest_ids():
    env = gym.make("meds_gym/Arithmetic-v0")
    _, info = env.reset(seed=0)
    pid = info["problem_id"]
    near = pid[:-1] + ("9" if pid[-1] != "9" else "8") + "0000"
    with pytest.raises(UnknownProblemError, match="Did you mean|look like"):
        env.reset(options={"problem_id": near})


@pytest.mark.parametrize(
    "options, match",
    [
        ({"index": 10_000}, r"options\['index'\]"),
        ({"index": -1}, r"options\['index'\]"),
        ({"index": 1, "problem_id": "x"}, "not both"),
        ({"problemid": "x"}, "at most one of the keys"),
    ],
)
def test_bad_reset_options(options, match):
    env = ReasoningEnv(ArithmeticTask(num_problems=5))
    with pytest.raises(InvalidArgumentError, match=match):
        env.reset(options=options)


def test_step_before_reset_and_after_termination():
    env = ReasoningEnv(ArithmeticTask(num_problems=5))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("\\boxed{1}")
    env.reset(seed=0)
    env.step("\\boxed{1}")
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("\\boxed{1}")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"correct_reward": float("nan")}, "correct_reward"),
        ({"incorrect_reward": float("inf")}, "incorrect_reward"),
        ({"max_prompt_length": 0}, "max_prompt_length"),
        ({"max_response_length": 2.5}, "max_response_length"),
        ({"prompt_template": "no field"}, "prompt_template"),
        ({"verifier_timeout": 0}, "verifier_timeout"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ReasoningEnv(ArithmeticTask(num_problems=5), **kwargs)


def test_source_must_be_a_problem_source():
    with pytest.raises(TypeError, match="`source` must be a ProblemSource"):
        ReasoningEnv([("1+1", "2")])


def test_benchmark_env_without_data_path_says_how_to_fix():
    with pytest.raises(InvalidArgumentError, match="data_path.*gym.make"):
        gym.make("meds_gym/MATH500-v0")


@pytest.mark.parametrize("name", sorted(BENCHMARK_FILES))
def test_benchmark_questions_lie_in_the_charset(name):
    env = gym.make(f"meds_gym/{BENCHMARK_FILES[name]}-v0", data_path=str(benchmark_file(name)))
    source = env.unwrapped.source
    outside = {ch for p in source for ch in p.question if ch not in TEXT_CHARSET}
    assert not outside
    obs, _ = env.reset(options={"index": len(source) - 1})
    assert obs in env.observation_space


def test_import_does_not_pull_heavy_frameworks():
    import subprocess
    import sys

    code = (
        "import sys, meds_gym, meds_gym.envs, meds_gym.tasks, meds_gym.verifiers; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert meds_gym.__version__


def test_reset_seed_reproduces_problem_choice():
    env = ReasoningEnv(ArithmeticTask(num_problems=50))
    first = [env.reset(seed=s)[1]["problem_id"] for s in range(10)]
    second = [env.reset(seed=s)[1]["problem_id"] for s in range(10)]
    assert first == second
    assert len(set(first)) > 1
    assert np.all([pid.startswith("arithmetic/") for pid in first])
