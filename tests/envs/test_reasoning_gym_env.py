"""meds_gym/ReasoningGym-v0: reasoning-gym tasks as envs, mixes, stable ids, and answer anchors."""

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import meds_gym  # noqa: F401  (registers the ids)
from meds_gym.envs import TEXT_CHARSET, ReasoningEnv
from meds_gym.errors import InvalidArgumentError, MissingExtraError, UnknownProblemError
from meds_gym.verifiers import AnswerAnchor

ENV_ID = "meds_gym/ReasoningGym-v0"
README = Path(__file__).resolve().parents[2] / "README.md"

needs_reasoning_gym = pytest.mark.skipif(
    find_spec("reasoning_gym") is None,
    reason="reasoning-gym is not installed: pip install 'meds-gym[reasoning-gym]'",
)

# Every task of reasoning-gym 0.1.25 (the pinned version); all of them pass check_env.
ALL_TASKS = """
ab acre advanced_geometry aiw arc_1d arc_agi base_conversion basic_arithmetic bf binary_alternation
binary_matrix bitwise_arithmetic boxnet caesar_cipher calendar_arithmetic chain_sum circuit_logic
codeio coin_flip color_cube_rotation complex_arithmetic count_bits count_primes countdown
course_schedule cryptarithm decimal_arithmetic decimal_chain_sum dice emoji_mystery
family_relationships figlet_font fraction_simplification futoshiki game_of_life
game_of_life_halting gcd graph_color group_anagrams gsm_symbolic intermediate_integration
isomorphic_strings jugs kakurasu knight_swap knights_knaves largest_island lcm leg_counting
letter_counting letter_jumble list_functions mahjong_puzzle manipulate_matrix maze mini_sudoku
modulo_grid n_queens needle_haystack number_filtering number_format number_sequence number_sorting
palindrome_generation palindrome_partitioning path_star polynomial_equations
polynomial_multiplication pool_matrix power_function prime_factorization products
propositional_logic puzzle24 quantum_lock ransom_note rearc rectangle_count rotate_matrix
rotten_oranges rubiks_cube rush_hour self_reference sentence_reordering shortest_path
simple_equations simple_geometry simple_integration sokoban spell_backward spiral_matrix
string_insertion string_manipulation string_splitting string_synthesis sudoku survo syllogism
time_intervals tower_of_hanoi tsumego word_ladder word_sequence_reversal word_sorting zebra_puzzles
""".split()
# Tasks whose generation takes seconds: run with the slow tests.
SLOW_TASKS = {
    "arc_agi",
    "group_anagrams",
    "knight_swap",
    "puzzle24",
    "quantum_lock",
    "zebra_puzzles",
}
# Tasks with many valid answers and no single gold answer: only their scorer can tell.
NO_GOLD_TASKS = {"boxnet", "graph_color", "propositional_logic", "rubiks_cube", "rush_hour"}
# game_of_life_halting scores bool(answer) == bool(gold) on strings, so any non-empty answer is
# "right"; the empty answer is its only wrong one.
WRONG_ANSWERS = {"game_of_life_halting": ""}


def task_params():
    return [
        pytest.param(task, marks=[pytest.mark.slow] if task in SLOW_TASKS else [], id=task)
        for task in ALL_TASKS
    ]


def make(task="basic_arithmetic", **kwargs):
    kwargs.setdefault("size", 8)
    return gym.make(ENV_ID, task=task, **kwargs)


# -- every task: check_env, the gold answer scores 1, a wrong answer less -------------------------


@needs_reasoning_gym
def test_task_list_is_reasoning_gyms():
    from meds_gym.tasks.reasoning_gym import reasoning_gym_task_names

    assert reasoning_gym_task_names() == sorted(ALL_TASKS)


@needs_reasoning_gym
@pytest.mark.filterwarnings("ignore:reasoning-gym generates")  # the PYTHONHASHSEED warning
@pytest.mark.parametrize("task", task_params())
def test_task_passes_check_env_and_scores_through_step(task):
    env = make(task, size=3, seed=0)
    check_env(env.unwrapped)
    anchor = env.unwrapped.answer_anchor
    for index in range(3):
        _, info = env.reset(options={"index": index})
        problem = env.unwrapped.problem
        assert info["task"] == task
        wrong = anchor.format_answer(WRONG_ANSWERS.get(task, "zzqx wrong"))
        _, reward, terminated, _, info = env.step("Thinking it over. " + wrong)
        assert terminated and reward < 1.0 and info["correct"] is False
        assert reward == info["score"]
        if task in NO_GOLD_TASKS:
            assert problem.answer == "" and info["gold_answer"] == ""
            continue
        env.reset(options={"index": index})
        _, reward, _, _, info = env.step(
            "Thinking it over. " + anchor.format_answer(problem.answer)
        )
        assert reward == 1.0 and info["correct"] is True and info["is_success"] is True
        assert info["parsed_answer"] == problem.answer.strip()


# -- scoring ------------------------------------------------------------------------------------


@needs_reasoning_gym
def test_response_without_the_anchor_scores_zero():
    env = make()
    env.reset(seed=0)
    gold = env.unwrapped.problem.answer
    _, reward, _, _, info = env.step(f"The answer is {gold}.")
    assert reward == 0.0 and info["parsed_answer"] is None and info["correct"] is False


@needs_reasoning_gym
@pytest.mark.parametrize(
    ("anchor", "write"),
    [
        pytest.param("answer_tag", "<answer>{}</answer>", id="answer-tag"),
        pytest.param(r"ANSWER: (\S+)", "ANSWER: {}", id="regex"),
    ],
)
def test_other_anchors_ask_for_and_read_their_format(anchor, write):
    env = make("chain_sum", answer_anchor=anchor)
    obs, info = env.reset(seed=0)
    instruction = env.unwrapped.answer_anchor.instruction
    assert obs.endswith(instruction) and info["messages"][0]["content"] == instruction
    gold = env.unwrapped.problem.answer
    assert env.step("so " + write.format(gold))[1] == 1.0
    env.reset(seed=0)
    assert env.step("so \\boxed{" + gold + "}")[1] == 0.0  # the boxed format is not this anchor


@needs_reasoning_gym
@pytest.mark.parametrize("task", ["basic_arithmetic", "emoji_mystery", "word_sorting", "maze"])
def test_reward_is_reasoning_gyms_own_score_of_the_extracted_answer(task):
    from reasoning_gym import create_dataset

    reference = create_dataset(task, size=4, seed=5)
    env = make(task, size=4, seed=5, answer_anchor="answer_tag")
    for index in range(4):
        entry = reference[index]
        for answer in (entry["answer"], entry["answer"] + "1", entry["answer"][:-1], "x"):
            env.reset(options={"index": index})
            _, reward, _, _, info = env.step(f"so <answer> {answer} </answer>")
            expected = reference.score_answer(answer.strip(), entry)
            assert reward == info["score"] == expected
            assert info["correct"] is (expected == 1.0)


@needs_reasoning_gym
def test_partial_credit_is_the_reward_and_not_correct():
    env = make("emoji_mystery", size=4, correct_reward=2.0, incorrect_reward=-1.0)
    env.reset(seed=0)
    source = env.unwrapped.source
    problem = env.unwrapped.problem
    partial = source.score_answer(problem, "zz")
    assert 0.0 < partial < 1.0  # emoji_mystery gives partial credit
    _, reward, _, _, info = env.step("\\boxed{zz}")
    assert info["score"] == partial and info["correct"] is False
    assert reward == pytest.approx(-1.0 + partial * 3.0)


@needs_reasoning_gym
def test_scorer_that_raises_on_garbage_scores_zero_and_logs_once(caplog):
    env = make("prime_factorization", size=2)
    with caplog.at_level(logging.WARNING, logger="meds_gym.tasks.reasoning_gym"):
        for _ in range(2):
            env.reset(seed=0)
            _, reward, _, _, info = env.step("\\boxed{not a number}")
            assert reward == 0.0 and info["correct"] is False
    assert len([r for r in caplog.records if "prime_factorization scorer raised" in r.message]) == 1

    strict = make("prime_factorization", size=2, scorer_errors="raise")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="invalid literal"):
        strict.step("\\boxed{not a number}")


# -- info, charset, prompt length ---------------------------------------------------------------


@needs_reasoning_gym
def test_info_carries_the_task_and_json_safe_metadata():
    env = make("prime_factorization", size=2)  # metadata holds lists and tuples
    _, info = env.reset(seed=0)
    assert info["task"] == "prime_factorization"
    assert info["metadata"]["source_dataset"] == "prime_factorization"
    json.dumps(info["metadata"], allow_nan=False)
    _, _, _, _, step_info = env.step("\\boxed{2}")
    assert step_info["metadata"] == info["metadata"] and step_info["task"] == info["task"]
    step_info["metadata"]["number"] = -1  # the caller owns what it gets
    _, again = env.reset(seed=0)
    assert again["metadata"] == info["metadata"]


def test_json_safe():
    from meds_gym.tasks.reasoning_gym import json_safe

    value = {1: (1, 2), "s": {3, 1}, "f": float("nan"), "n": np.int64(4), "a": np.arange(2)}
    assert json_safe(value) == {"1": [1, 2], "s": [1, 3], "f": "nan", "n": 4, "a": [0, 1]}
    assert json_safe(object).startswith("<class")


@needs_reasoning_gym
def test_questions_outside_the_project_charset_keep_their_text():
    env = make("emoji_mystery", size=4)
    obs, info = env.reset(seed=0)
    assert any(c not in TEXT_CHARSET for c in info["question"])  # emoji and variation selectors
    assert obs.startswith(info["question"])  # nothing replaced or dropped
    assert env.observation_space.contains(obs)
    assert env.unwrapped.source.charset >= TEXT_CHARSET


@needs_reasoning_gym
def test_max_prompt_length_grows_to_the_longest_prompt_unless_given():
    config = {"max_rectangles": 10, "width": 120, "height": 120}
    env = make("rectangle_count", size=2, config=config)
    longest = max(len(p.question) for p in env.unwrapped.source)
    assert longest > 8192
    assert env.unwrapped.max_prompt_length > longest
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert (
        make(
            "rectangle_count", size=2, config=config, max_prompt_length=50
        ).unwrapped.max_prompt_length
        == 50
    )


# -- mixes --------------------------------------------------------------------------------------


@needs_reasoning_gym
def test_weighted_mix_is_reasoning_gyms_composite_and_scores_each_task():
    from reasoning_gym.composite import CompositeConfig, CompositeDataset, DatasetSpec

    weights = {"chain_sum": 3.0, "gcd": 1.0}
    config = {"chain_sum": {"min_terms": 3, "max_terms": 3}}
    env = make(weights, size=40, seed=7, config=config)
    source = env.unwrapped.source
    reference = CompositeDataset(
        CompositeConfig(
            size=40,
            seed=7,
            datasets=[
                DatasetSpec("chain_sum", 3.0, config["chain_sum"]),
                DatasetSpec("gcd", 1.0, {}),
            ],
        )
    )
    assert [p.question for p in source] == [reference[i]["question"] for i in range(40)]
    tasks = []
    for index in range(40):
        _, info = env.reset(options={"index": index})
        tasks.append(info["task"])
        assert info["problem_id"].startswith(f"reasoning_gym/{info['task']}/7/{index}/")
        gold = env.unwrapped.problem.answer
        assert env.step("\\boxed{" + gold + "}")[1] == 1.0
    assert set(tasks) == {"chain_sum", "gcd"} and tasks.count("chain_sum") > tasks.count("gcd")
    chain = [p for p in source if p.metadata["task"] == "chain_sum"]
    assert all(p.question.count("+") + p.question.count("-") == 2 for p in chain)  # 3 terms


@needs_reasoning_gym
def test_list_of_tasks_is_an_even_mix():
    source = make(["chain_sum", "gcd"], size=4).unwrapped.source
    assert source.tasks == {"chain_sum": 1.0, "gcd": 1.0} and source.name == "reasoning_gym/mix"


# -- problem ids --------------------------------------------------------------------------------

IDS_SCRIPT = """
import json, gymnasium as gym, meds_gym
ids = {}
for task in (["chain_sum", "gcd"], "basic_arithmetic"):
    env = gym.make("meds_gym/ReasoningGym-v0", task=task, size=6, seed=3)
    ids[str(task)] = [p.problem_id for p in env.unwrapped.source]
print(json.dumps(ids))
"""


@needs_reasoning_gym
def test_problem_ids_are_stable_across_processes():
    runs = []
    for hash_seed in ("1", "2"):  # ids must not depend on Python's hash()
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", IDS_SCRIPT], capture_output=True, text=True, env=env, check=True
        )
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    here = {
        str(task): [p.problem_id for p in make(task, size=6, seed=3).unwrapped.source]
        for task in (["chain_sum", "gcd"], "basic_arithmetic")
    }
    assert runs[0] == here
    assert len(set(here["basic_arithmetic"])) == 6
    assert re.fullmatch(
        r"reasoning_gym/basic_arithmetic/3/0/[0-9a-f]{12}", here["basic_arithmetic"][0]
    )


@needs_reasoning_gym
def test_ids_change_with_seed_and_config_and_unknown_ids_are_rejected():
    base = [p.problem_id for p in make("chain_sum", seed=0).unwrapped.source]
    other_seed = [p.problem_id for p in make("chain_sum", seed=1).unwrapped.source]
    config = {"min_digits": 5, "max_digits": 5}  # every question changes (1-4 digits by default)
    other_config = [p.problem_id for p in make("chain_sum", seed=0, config=config).unwrapped.source]
    assert not set(base) & set(other_seed) and not set(base) & set(other_config)

    env = make("chain_sum", seed=0)
    obs, info = env.reset(options={"problem_id": base[5]})
    assert info["problem_id"] == base[5] and env.unwrapped.problem.problem_id == base[5]
    with pytest.raises(UnknownProblemError, match="Did you mean"):
        env.reset(options={"problem_id": other_config[5]})


@needs_reasoning_gym
def test_hash_seed_dependent_tasks_warn_unless_the_hash_seed_is_fixed(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    with pytest.warns(UserWarning, match="PYTHONHASHSEED=0"):
        make("ransom_note", size=2)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make("ransom_note", size=2)


# -- rejected arguments -------------------------------------------------------------------------


@needs_reasoning_gym
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"task": "chain_sun"}, InvalidArgumentError, "Did you mean 'chain_sum'", id="typo"
        ),
        pytest.param({"task": 5}, TypeError, "`task` must be", id="task-type"),
        pytest.param({"task": []}, InvalidArgumentError, "`task` must be", id="no-task"),
        pytest.param({"task": ["gcd", "gcd"]}, InvalidArgumentError, "distinct", id="duplicate"),
        pytest.param({"task": {"gcd": 0}}, InvalidArgumentError, "positive finite", id="weight"),
        pytest.param({"task": {"gcd": "1"}}, TypeError, "a weight", id="weight-type"),
        pytest.param({"size": 0}, InvalidArgumentError, "`size` must be", id="size"),
        pytest.param({"seed": -1}, InvalidArgumentError, "`seed` must be", id="seed"),
        pytest.param({"config": {"nope": 1}}, InvalidArgumentError, "min_terms", id="field"),
        pytest.param(
            {"config": {"min_terms": 9, "max_terms": 2}}, InvalidArgumentError, "config", id="value"
        ),
        pytest.param(
            {"config": {"size": 3}}, InvalidArgumentError, "Pass size=", id="size-in-config"
        ),
        pytest.param(
            {"task": ["chain_sum", "gcd"], "config": {"lcm": {}}},
            InvalidArgumentError,
            "Remove 'lcm'",
            id="mix-config",
        ),
        pytest.param(
            {"scorer_errors": "ignore"}, InvalidArgumentError, "scorer_errors", id="policy"
        ),
        pytest.param(
            {"prompt_template": "no field"}, InvalidArgumentError, "prompt_template", id="template"
        ),
        pytest.param(
            {"answer_anchor": "(a)(b)"}, InvalidArgumentError, "answer_anchor", id="anchor"
        ),
    ],
)
def test_rejected_arguments(kwargs, error, match):
    kwargs = {"task": "chain_sum", **kwargs}
    with pytest.raises(error, match=match):
        gym.make(ENV_ID, size=kwargs.pop("size", 4), **kwargs)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym fails
    with pytest.raises(MissingExtraError, match=r"pip install 'meds-gym\[reasoning-gym\]'"):
        gym.make(ENV_ID, task="chain_sum", size=2)


# -- the answer anchor of any ReasoningEnv ------------------------------------------------------


def test_toy_env_with_answer_tag_anchor():
    env = gym.make("meds_gym/Arithmetic-v0", answer_anchor="answer_tag")
    obs, info = env.reset(seed=0)
    assert (
        "<answer>" in obs
        and info["messages"][0]["content"] == AnswerAnchor.answer_tag().instruction
    )
    gold = env.unwrapped.source.get(info["problem_id"]).answer
    _, reward, _, _, info = env.step(f"so <answer>{gold}</answer>")
    assert reward == 1.0 and info["parsed_answer"] == gold
    env.reset(seed=0)
    _, reward, _, _, info = env.step("so \\boxed{" + gold + "}")
    assert reward == 0.0 and info["parsed_answer"] is None


def test_toy_env_with_regex_anchor_and_default_is_boxed():
    env = gym.make("meds_gym/Arithmetic-v0", answer_anchor=r"Final: (-?\d+)")
    _, info = env.reset(seed=0)
    gold = env.unwrapped.source.get(info["problem_id"]).answer
    assert env.step(f"Final: {gold}")[1] == 1.0
    default = gym.make("meds_gym/Arithmetic-v0").unwrapped
    assert default.answer_anchor == AnswerAnchor.boxed()
    obs, _ = default.reset(seed=0)
    assert obs.endswith("\\boxed{}.")


def test_reasoning_env_charset_argument():
    from meds_gym.tasks import ArithmeticTask

    env = ReasoningEnv(ArithmeticTask(num_problems=4), charset=TEXT_CHARSET | {"\u2705"})
    assert env.action_space.contains("ok \u2705")
    with pytest.raises(InvalidArgumentError, match="`charset` must be"):
        ReasoningEnv(ArithmeticTask(num_problems=4), charset=["ab"])


# -- the README section -------------------------------------------------------------------------


def readme_section():
    return README.read_text().split("## reasoning-gym tasks", 1)[1].split("\n## ", 1)[0]


@needs_reasoning_gym
def test_readme_section_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    # The lines the README says the snippet prints: a wrong answer, the same wrong answer again
    # (penalised: one stored fingerprint, 0.1 * log 2), the gold answer, no anchor.
    assert lines == [
        "basic_arithmetic 0.0 0.0 0.0",
        "basic_arithmetic 0.0 0.069 -0.069",
        "basic_arithmetic 1.0 0.0 1.0",
        "basic_arithmetic 0.0 0.0 0.0",
    ]
    assert all(f"(`{line}`" in " ".join(readme_section().split()) for line in lines[1:3])


def test_readme_lists_the_tested_tasks():
    listed = re.findall(r"`([a-z0-9_]+)`", readme_section().split("pass `check_env`", 1)[1])
    assert sorted(set(listed)) == sorted(ALL_TASKS)
