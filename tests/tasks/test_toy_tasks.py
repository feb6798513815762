"""The toy tasks as problem sources: seeding, ids, validation, labelling and worked solutions."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.errors import InvalidArgumentError, UnknownProblemError
from meds_gym.tasks.addsub import AddSubTask
from meds_gym.tasks.arithmetic import ArithmeticTask
from meds_gym.tasks.base import Problem, ProblemSource
from meds_gym.tasks.modular import ModularTask
from meds_gym.tasks.procedural import question_split
from meds_gym.tasks.toy import TOY_TASKS, label_error_modes, render_solution

REPO_ROOT = Path(__file__).resolve().parents[2]
FAMILIES = sorted(TOY_TASKS)
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_answer(text: str) -> str:
    matches = BOXED.findall(text)
    assert matches, text
    return matches[-1]


def all_problems(family: str, difficulty: int, count: int = 200, seed: int = 0) -> list[Problem]:
    return list(TOY_TASKS[family](num_problems=count, difficulty=difficulty, seed=seed))


# -- registry and protocol ---------------------------------------------------------------------


def test_registry_maps_names_to_classes():
    assert dict(TOY_TASKS) == {
        "arithmetic": ArithmeticTask,
        "addsub": AddSubTask,
        "modular": ModularTask,
    }
    with pytest.raises(TypeError):
        TOY_TASKS["other"] = ArithmeticTask  # type: ignore[index]


@pytest.mark.parametrize("family", FAMILIES)
def test_tasks_are_problem_sources(family):
    task = TOY_TASKS[family](num_problems=7)
    assert isinstance(task, ProblemSource)
    assert task.name == family
    assert len(task) == 7
    problems = list(task)
    assert len(problems) == 7
    assert all(isinstance(p, Problem) for p in problems)
    assert problems == [task[i] for i in range(7)]
    assert list(task.error_mode_names) == sorted(task.error_mode_names)


# -- reproducibility ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    seed=st.integers(0, 2**63),
    difficulty=st.integers(1, 5),
    index=st.integers(0, 9999),
)
def test_same_arguments_same_problem(family, seed, difficulty, index):
    first = TOY_TASKS[family](num_problems=10_000, difficulty=difficulty, seed=seed)
    second = TOY_TASKS[family](num_problems=index + 1, difficulty=difficulty, seed=seed)
    # The size of the set does not matter: problem i depends on (seed, difficulty, i) only.
    assert first[index] == second[index] == second[-1]
    assert first[index].problem_id == f"{family}/d{difficulty}/s{seed}/{index}"


@settings(max_examples=20, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    order=st.permutations(list(range(12))),
)
def test_problems_do_not_depend_on_access_order(family, order):
    forward = list(TOY_TASKS[family](num_problems=12, difficulty=2, seed=5))
    task = TOY_TASKS[family](num_problems=12, difficulty=2, seed=5)
    shuffled = {i: task[i] for i in order}
    assert [shuffled[i] for i in range(12)] == forward


@pytest.mark.parametrize("family", FAMILIES)
def test_different_seeds_give_different_problems(family):
    a = [p.question for p in TOY_TASKS[family](num_problems=50, seed=0)]
    b = [p.question for p in TOY_TASKS[family](num_problems=50, seed=1)]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    assert same < 10
    assert len(set(a)) > 30  # problems within one set differ too


def test_families_with_equal_seeds_differ():
    # Same seed, difficulty and index, different family constant: unrelated draws.
    addsub = [p.question for p in AddSubTask(num_problems=30)]
    assert len(set(addsub)) > 25
    arithmetic_numbers = [p.metadata["operands"][:2] for p in ArithmeticTask(num_problems=30)]
    modular_numbers = [p.metadata["operands"][:2] for p in ModularTask(num_problems=30)]
    assert arithmetic_numbers != modular_numbers


def test_problems_are_identical_in_another_process():
    code = (
        "import json; from meds_gym.tasks.toy import TOY_TASKS\n"
        "rows = [[p.problem_id, p.question, p.answer, dict(p.error_modes)]\n"
        "        for name in sorted(TOY_TASKS) for d in (1, 5)\n"
        "        for p in TOY_TASKS[name](num_problems=20, difficulty=d, seed=123)]\n"
        "print(json.dumps(rows))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = [
        [p.problem_id, p.question, p.answer, dict(p.error_modes)]
        for name in FAMILIES
        for d in (1, 5)
        for p in TOY_TASKS[name](num_problems=20, difficulty=d, seed=123)
    ]
    assert json.loads(result.stdout) == expected


# -- train / test splits -----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("difficulty", [1, 3])
def test_train_and_test_splits_are_disjoint(family, difficulty):
    # Disjoint by construction: whatever the sizes and seeds, no question is in both splits.
    train = [p.question for s in (0, 1) for p in all_problems(family, difficulty, 300, s)]
    test = [
        p.question
        for s in (0, 1)
        for p in TOY_TASKS[family](num_problems=300, difficulty=difficulty, seed=s, split="test")
    ]
    assert not set(train) & set(test)
    assert {question_split(q) for q in train} == {"train"}
    assert {question_split(q) for q in test} == {"test"}
    assert len(set(test)) > 250  # a real problem set, not a handful repeated


def test_unsplit_construction_is_the_train_split():
    default = ArithmeticTask(num_problems=20, seed=4)
    train = ArithmeticTask(num_problems=20, seed=4, split="train")
    assert list(default) == list(train)
    assert default[3].problem_id == "arithmetic/d1/s4/3"
    assert default[3].metadata["split"] == "train"


@pytest.mark.parametrize("family", FAMILIES)
def test_test_split_ids_name_the_split_and_round_trip(family):
    test = TOY_TASKS[family](num_problems=30, difficulty=2, seed=7, split="test")
    problem = test[11]
    assert problem.problem_id == f"{family}/d2/s7/test/11"
    assert test.get(problem.problem_id) == problem
    assert problem.metadata["split"] == "test"
    assert "split='test'" in repr(test)
    train = TOY_TASKS[family](num_problems=30, difficulty=2, seed=7)
    with pytest.raises(UnknownProblemError):
        train.get(problem.problem_id)
    with pytest.raises(UnknownProblemError):
        test.get(train[11].problem_id)


@pytest.mark.parametrize("split", ["validation", "TEST", None, 1])
def test_unknown_split_is_rejected(split):
    with pytest.raises(InvalidArgumentError, match="`split` must be one of"):
        ArithmeticTask(num_problems=3, split=split)


def test_toy_env_ids_take_a_split():
    import gymnasium as gym

    import meds_gym  # noqa: F401

    env = gym.make("meds_gym/Modular-v0", num_problems=8, seed=2, split="test")
    _, info = env.reset(options={"index": 5})
    assert info["problem_id"] == "modular/d1/s2/test/5"
    env.close()


# -- ids ---------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    seed=st.integers(0, 10**6),
    difficulty=st.integers(1, 5),
    data=st.data(),
)
def test_ids_round_trip_through_get(family, seed, difficulty, data):
    task = TOY_TASKS[family](num_problems=300, difficulty=difficulty, seed=seed)
    index = data.draw(st.integers(0, 299))
    problem = task[index]
    assert task.problem_id_at(index) == problem.problem_id
    assert task.get(problem.problem_id) == problem


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_are_unique(family):
    task = TOY_TASKS[family](num_problems=100, difficulty=3, seed=9)
    ids = [p.problem_id for p in task]
    assert len(set(ids)) == 100
    assert ids[17] == f"{family}/d3/s9/17"


@pytest.mark.parametrize(
    "problem_id",
    [
        "",
        "arithmetic",
        "arithmetic/d1/s0/",
        "arithmetic/d1/s0/10",  # index == num_problems
        "arithmetic/d1/s0/-1",
        "arithmetic/d1/s0/01",  # not the canonical spelling of 1
        "arithmetic/d1/s0/1 ",
        "arithmetic/d2/s0/1",  # another difficulty
        "arithmetic/d1/s1/1",  # another seed
        "addsub/d1/s0/1",  # another family
        "arithmetic/d1/s0/1/2",
        "ARITHMETIC/d1/s0/1",
    ],
)
def test_unknown_or_malformed_ids_are_rejected(problem_id):
    task = ArithmeticTask(num_problems=10, difficulty=1, seed=0)
    with pytest.raises(UnknownProblemError, match="Unknown problem_id"):
        task.get(problem_id)


def test_unknown_id_error_suggests_close_ids():
    task = ArithmeticTask(num_problems=10)
    with pytest.raises(UnknownProblemError, match=r"Did you mean: 'arithmetic/d1/s0/"):
        task.get("arithmetic/d2/s0/3")
    with pytest.raises(KeyError):  # callers may catch the built-in class
        task.get("nope")


def test_unknown_id_error_in_a_large_set_suggests_the_same_index():
    task = ArithmeticTask(num_problems=10**6)
    with pytest.raises(UnknownProblemError, match=r"Did you mean: 'arithmetic/d1/s0/54321'"):
        task.get("arithmetic/d2/s0/54321")
    assert task.get("arithmetic/d1/s0/999999") == task[-1]


def test_get_rejects_non_string_ids():
    with pytest.raises(TypeError, match="`problem_id` must be a str"):
        ArithmeticTask(num_problems=3).get(1)  # type: ignore[arg-type]


def test_getitem_indexing_rules():
    task = AddSubTask(num_problems=5)
    assert task[-1] == task[4]
    assert task[np.int64(2)] == task[2]
    with pytest.raises(IndexError, match="`index` must be in"):
        task[5]
    with pytest.raises(IndexError, match="`index` must be in"):
        task[-6]
    with pytest.raises(TypeError, match="`index` must be an int"):
        task["1"]  # type: ignore[index]
    with pytest.raises(TypeError, match="`index` must be an int"):
        task[True]


# -- constructor validation --------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_problems": 0}, r"`num_problems` must be an integer >= 1; received 0"),
        ({"num_problems": -3}, r"`num_problems` must be an integer >= 1"),
        ({"num_problems": 2.0}, r"`num_problems` must be an integer >= 1; received 2\.0"),
        ({"num_problems": "10"}, r"`num_problems` must be an integer >= 1"),
        ({"num_problems": True}, r"`num_problems` must be an integer >= 1"),
        ({"difficulty": 0}, r"`difficulty` must be an integer in \[1, 5\]; received 0"),
        ({"difficulty": 6}, r"`difficulty` must be an integer in \[1, 5\]; received 6"),
        ({"difficulty": 1.5}, r"`difficulty` must be an integer in \[1, 5\]"),
        ({"seed": -1}, r"`seed` must be an integer >= 0; received -1"),
        ({"seed": "0"}, r"`seed` must be an integer >= 0"),
        ({"seed": None}, r"`seed` must be an integer >= 0"),
        ({"seed": 0.0}, r"`seed` must be an integer >= 0"),
    ],
)
def test_constructor_rejects_bad_arguments(family, kwargs, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        TOY_TASKS[family](**kwargs)


def test_constructor_accepts_numpy_integers():
    task = ModularTask(num_problems=np.int32(4), difficulty=np.int64(2), seed=np.uint8(7))
    assert (len(task), task.difficulty, task.seed) == (4, 2, 7)
    assert task[0] == ModularTask(num_problems=4, difficulty=2, seed=7)[0]
    assert repr(task) == "ModularTask(num_problems=4, difficulty=2, seed=7, split='train')"


# -- problem records ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_problem_records_are_well_formed(family, difficulty):
    for problem in all_problems(family, difficulty, count=100):
        assert problem.question.isascii() and problem.question.strip() == problem.question
        assert re.fullmatch(r"-?[0-9]+", problem.answer)
        assert str(int(problem.answer)) == problem.answer  # canonical integer string
        assert problem.error_modes, problem  # every problem has at least one known mistake
        for mode, wrong in problem.error_modes.items():
            assert mode in TOY_TASKS[family].error_mode_names
            assert str(int(wrong)) == wrong
            assert wrong != problem.answer
        metadata = problem.metadata
        assert metadata["family"] == family
        assert metadata["difficulty"] == difficulty
        assert metadata["seed"] == 0
        assert problem.problem_id.endswith(f"/{metadata['index']}")
        json.dumps(dict(metadata))  # plain values only


# -- label_error_modes -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_label_error_modes_on_gold_modes_and_garbage(family):
    for problem in all_problems(family, difficulty=2, count=100):
        assert label_error_modes(problem, problem.answer) == ()
        for mode, wrong in problem.error_modes.items():
            labels = label_error_modes(problem, wrong)
            expected = sorted(m for m, w in problem.error_modes.items() if w == wrong)
            assert labels == tuple(expected)
            assert mode in labels
            assert label_error_modes(problem, f"  {wrong}\n") == labels
        unused = max(int(v) for v in [problem.answer, *problem.error_modes.values()]) + 1
        assert label_error_modes(problem, str(unused)) == ()
        for garbage in ["", "   ", "abc", "1.5", "12a", "\\boxed{3}", "1e3", "--3", "9" * 5000]:
            assert label_error_modes(problem, garbage) == ()


def test_label_error_modes_compares_integers_not_strings():
    problem = Problem(
        problem_id="demo/0",
        question="?",
        answer="14",
        error_modes={"b": "20", "a": "+20", "c": "-3", "d": "7"},
    )
    assert label_error_modes(problem, "020") == ("a", "b")
    assert label_error_modes(problem, "-3") == ("c",)
    assert label_error_modes(problem, "3") == ()
    assert label_error_modes(problem, "+14") == ()  # the gold answer, however written
    assert label_error_modes(problem, " 7 ") == ("d",)


def test_label_error_modes_rejects_wrong_types():
    problem = ArithmeticTask(num_problems=1)[0]
    with pytest.raises(TypeError, match="`answer` must be a str"):
        label_error_modes(problem, 17)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`problem` must be a meds_gym.tasks.base.Problem"):
        label_error_modes("arithmetic/d1/s0/0", "17")  # type: ignore[arg-type]
    # The same function hangs off every task class.
    assert ArithmeticTask.label_error_modes(problem, problem.answer) == ()


# -- render_solution ---------------------------------------------------------------------------

TEMPLATE = re.compile(r"[^,]+(, [^,]+)*\. Answer: \\boxed\{-?[0-9]+\}")


def equation_holds(step: str) -> bool:
    left, right = step.split("=")
    assert re.fullmatch(r"-?[0-9]+([-+*][0-9]+)*", left), step
    assert re.fullmatch(r"-?[0-9]+([-+*][0-9]+)*", right), step
    return eval(left) == eval(right)  # noqa: S307 - digits and operators only, checked above


def steps_of(text: str) -> list[str]:
    return text[: text.index(". Answer: ")].split(", ")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_render_solution_boxes_the_right_answer(family, difficulty):
    task = TOY_TASKS[family]
    for problem in all_problems(family, difficulty, count=60):
        correct = render_solution(problem)
        assert boxed_answer(correct) == problem.answer
        assert TEMPLATE.fullmatch(correct), correct
        assert correct.isascii()
        assert task.render_solution(problem) == correct  # the class method agrees
        if difficulty == 1:
            assert len(correct) < 200
        # Every step of the correct procedure is a true equation.
        assert all(equation_holds(step) for step in steps_of(correct)), correct
        for mode, wrong in problem.error_modes.items():
            text = render_solution(problem, mode)
            assert boxed_answer(text) == wrong
            assert TEMPLATE.fullmatch(text), text
            assert text != correct
            assert label_error_modes(problem, boxed_answer(text)) != ()
            if difficulty == 1:
                assert len(text) < 200


def test_buggy_steps_show_the_procedure():
    # The buggy procedures write true equations (they just do the wrong ones), except the
    # arithmetic slip, whose last step is one too large.
    for family in FAMILIES:
        for problem in all_problems(family, difficulty=3, count=40):
            for mode in problem.error_modes:
                steps = steps_of(render_solution(problem, mode))
                if family == "arithmetic" and mode == "off_by_one":
                    assert all(equation_holds(step) for step in steps[:-1])
                    left, right = steps[-1].split("=")
                    assert eval(left) + 1 == int(right)  # noqa: S307
                else:
                    assert all(equation_holds(step) for step in steps), (mode, steps)


def test_render_solution_examples_by_hand():
    arithmetic = Problem(
        problem_id="arithmetic/d1/s0/0",
        question="Compute 7 + 3 * 4 - 2.",
        answer="17",
        error_modes={"precedence_ignored": "38", "sign_flipped": "21", "off_by_one": "18"},
        metadata={"family": "arithmetic", "operands": [7, 3, 4, 2], "operators": ["+", "*", "-"]},
    )
    assert render_solution(arithmetic) == "3*4=12, 7+12=19, 19-2=17. Answer: \\boxed{17}"
    assert (
        render_solution(arithmetic, "precedence_ignored")
        == "7+3=10, 10*4=40, 40-2=38. Answer: \\boxed{38}"
    )
    assert (
        render_solution(arithmetic, "sign_flipped")
        == "3*4=12, 7+12=19, 19+2=21. Answer: \\boxed{21}"
    )
    assert (
        render_solution(arithmetic, "off_by_one") == "3*4=12, 7+12=19, 19-2=18. Answer: \\boxed{18}"
    )
    addition = Problem(
        problem_id="addsub/d1/s0/0",
        question="Compute 47 + 38.",
        answer="85",
        error_modes={"carry_dropped": "75", "digit_reversed": "58"},
        metadata={"family": "addsub", "operands": [47, 38], "operator": "+"},
    )
    assert render_solution(addition) == "7+8=15, 4+3+1=8. Answer: \\boxed{85}"
    assert render_solution(addition, "carry_dropped") == "7+8=15, 4+3=7. Answer: \\boxed{75}"
    subtraction = Problem(
        problem_id="addsub/d1/s0/1",
        question="Compute 52 - 27.",
        answer="25",
        error_modes={"borrow_dropped": "35", "smaller_from_larger": "35", "digit_reversed": "52"},
        metadata={"family": "addsub", "operands": [52, 27], "operator": "-"},
    )
    assert render_solution(subtraction) == "2+10-7=5, 5-1-2=2. Answer: \\boxed{25}"
    assert render_solution(subtraction, "borrow_dropped") == "2+10-7=5, 5-2=3. Answer: \\boxed{35}"
    assert (
        render_solution(subtraction, "smaller_from_larger") == "7-2=5, 5-2=3. Answer: \\boxed{35}"
    )
    assert label_error_modes(subtraction, "35") == ("borrow_dropped", "smaller_from_larger")
    modular = Problem(
        problem_id="modular/d1/s0/0",
        question="What is the remainder when 47 + 38 is divided by 6?",
        answer="1",
        error_modes={"no_reduction": "85", "off_by_one": "7", "quotient_given": "14"},
        metadata={"family": "modular", "operands": [47, 38], "operator": "+", "modulus": 6},
    )
    assert render_solution(modular) == "47+38=85, 85=14*6+1. Answer: \\boxed{1}"
    assert render_solution(modular, "no_reduction") == "47+38=85. Answer: \\boxed{85}"
    assert render_solution(modular, "off_by_one") == "47+38=85, 85=13*6+7. Answer: \\boxed{7}"
    assert render_solution(modular, "quotient_given") == "47+38=85, 85=14*6+1. Answer: \\boxed{14}"


def test_render_solution_survives_a_json_round_trip():
    for family in FAMILIES:
        problem = TOY_TASKS[family](num_problems=3, difficulty=4)[2]
        copy = Problem(**json.loads(json.dumps(dataclasses.asdict(problem))))
        for mode in [None, *problem.error_modes]:
            assert render_solution(copy, mode) == render_solution(problem, mode)


def test_render_solution_rejects_unknown_error_modes():
    problem = ArithmeticTask(num_problems=1)[0]
    valid = re.escape(str(sorted(problem.error_modes)))
    with pytest.raises(
        InvalidArgumentError, match=rf"`error_mode` must be None or one of .*{valid}"
    ):
        render_solution(problem, "carry_dropped")
    with pytest.raises(InvalidArgumentError, match="`error_mode`"):
        render_solution(problem, 3)  # type: ignore[arg-type]
    addition = next(p for p in AddSubTask(num_problems=50) if p.metadata["operator"] == "+")
    # A mistake of the family that does not change this problem's answer is not renderable.
    with pytest.raises(InvalidArgumentError, match="gives the gold answer"):
        render_solution(addition, "borrow_dropped")


def test_render_solution_rejects_foreign_or_inconsistent_problems():
    with pytest.raises(InvalidArgumentError, match=r"`problem` must be a problem made by a toy"):
        render_solution(Problem(problem_id="math500/0", question="?", answer="1"))
    with pytest.raises(TypeError, match="`problem` must be"):
        render_solution({"question": "?"})  # type: ignore[arg-type]
    problem = ModularTask(num_problems=1)[0]
    with pytest.raises(InvalidArgumentError, match="made by ArithmeticTask"):
        ArithmeticTask.render_solution(problem)
    tampered = dataclasses.replace(problem, metadata={**problem.metadata, "modulus": 1000})
    with pytest.raises(InvalidArgumentError, match="whose metadata agrees with its answers"):
        render_solution(tampered)
    missing = dataclasses.replace(
        problem, metadata={k: v for k, v in problem.metadata.items() if k != "modulus"}
    )
    with pytest.raises(InvalidArgumentError, match="whose metadata holds 'modulus'"):
        render_solution(missing)
    broken = dataclasses.replace(problem, metadata={**problem.metadata, "operands": "ab"})
    with pytest.raises(InvalidArgumentError, match="`problem` must be a modular problem"):
        render_solution(broken)


def test_instances_of_one_task_share_their_generated_problems():
    a, b = ArithmeticTask(num_problems=50, seed=3), ArithmeticTask(num_problems=20, seed=3)
    assert a[7] is b[7]  # generated once, whichever instance asked first
    other_seed, other_split = ArithmeticTask(seed=4), ArithmeticTask(seed=3, split="test")
    assert other_seed[7] is not a[7] and other_seed[7].question != a[7].question
    assert other_split[7].problem_id != a[7].problem_id


def test_a_subclass_with_its_own_constructor_keeps_its_own_problems():
    class Shifted(ArithmeticTask):
        def __init__(self, shift: int, **kwargs):
            super().__init__(**kwargs)
            self.shift = shift

    one, two = Shifted(1, seed=5), Shifted(2, seed=5)
    assert one[0] is not two[0]
    assert one[0] is one[0]  # each still reuses its own
