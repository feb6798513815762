"""Gold answers and error modes of the toy tasks against independent naive implementations.

Each oracle works on the question text only (never on the task's spec or solvers): Python's own
evaluation for the gold answers, string rewriting or digit-string arithmetic for the mistakes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.tasks.addsub import AddSubTask
from meds_gym.tasks.arithmetic import ArithmeticTask
from meds_gym.tasks.base import Problem
from meds_gym.tasks.modular import ModularTask

DIFFICULTIES = [1, 2, 3, 4, 5]


def safe_eval(expression: str) -> int:
    assert re.fullmatch(r"[0-9]+( [-+*] [0-9]+)*", expression), expression
    return eval(expression)  # noqa: S307 - digits, spaces and + - * only, checked above


def check_modes(problem: Problem, oracles: dict[str, int | None]) -> None:
    """Gold is right; a mode is listed iff its oracle applies and differs, with that value."""
    gold = int(problem.answer)
    for mode, value in oracles.items():
        if value is None or value == gold:
            assert mode not in problem.error_modes, (problem, mode)
        else:
            assert problem.error_modes[mode] == str(value), (problem, mode)
    assert set(problem.error_modes) <= set(oracles)


# -- arithmetic --------------------------------------------------------------------------------


def arithmetic_expression(problem: Problem) -> str:
    match = re.fullmatch(r"Compute (.+)\.", problem.question)
    assert match, problem.question
    return match.group(1)


def strictly_left_to_right(expression: str) -> int:
    tokens = expression.split(" ")
    value = int(tokens[0])
    for operator, operand in zip(tokens[1::2], tokens[2::2], strict=True):
        value = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}[operator](
            value, int(operand)
        )
    return value


def last_minus_as_plus(expression: str) -> int:
    head, _, tail = expression.rpartition(" - ")
    return safe_eval(f"{head} + {tail}")


def minus_applies_to_the_rest(expression: str) -> int:
    head, _, tail = expression.partition(" - ")
    return safe_eval(f"{head} - {tail.replace(' + ', ' - ')}")


ARITHMETIC_ORACLES: dict[str, Callable[[str], int]] = {
    "precedence_ignored": strictly_left_to_right,
    "sign_flipped": last_minus_as_plus,
    "minus_distributed": minus_applies_to_the_rest,
    "off_by_one": lambda expression: safe_eval(expression) + 1,
}


def test_arithmetic_oracles_by_hand():
    assert strictly_left_to_right("7 + 3 * 4 - 2") == 38
    assert strictly_left_to_right("2 - 5 * 3 + 1") == -8
    assert last_minus_as_plus("9 - 2 * 3 - 1") == 4  # 9 - 6 + 1
    assert minus_applies_to_the_rest("9 - 2 + 3 * 2 - 1") == 0  # 9 - 2 - 6 - 1


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_arithmetic_gold_and_modes_match_the_oracles(difficulty):
    for problem in ArithmeticTask(num_problems=300, difficulty=difficulty, seed=11):
        expression = arithmetic_expression(problem)
        assert int(problem.answer) == safe_eval(expression)
        check_modes(
            problem, {mode: oracle(expression) for mode, oracle in ARITHMETIC_ORACLES.items()}
        )


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_arithmetic_traps_trigger(difficulty):
    problems = list(ArithmeticTask(num_problems=300, difficulty=difficulty, seed=3))
    share = sum("precedence_ignored" in p.error_modes for p in problems) / len(problems)
    assert share >= 0.9
    for problem in problems:
        expression = arithmetic_expression(problem)
        # The precedence trap is set: a product right after a sum or a difference.
        assert re.search(r"[-+] [0-9]+ \*", expression), expression
        assert " - " in expression
        assert " * " in expression and not re.search(r"\* [0-9]+ \*", expression)
        assert int(problem.answer) >= 0
        assert {"sign_flipped", "off_by_one"} <= set(problem.error_modes)


def test_arithmetic_difficulty_grows_the_expressions():
    def operand_counts(difficulty: int) -> set[int]:
        return {
            len(arithmetic_expression(p).split(" ")) // 2 + 1
            for p in ArithmeticTask(num_problems=50, difficulty=difficulty)
        }

    counts = [operand_counts(d) for d in DIFFICULTIES]
    assert all(len(c) == 1 for c in counts)
    sizes = [c.pop() for c in counts]
    assert sizes == sorted(sizes) and len(set(sizes)) == 5
    largest = [
        max(
            int(t)
            for p in ArithmeticTask(num_problems=200, difficulty=d)
            for t in arithmetic_expression(p).split(" ")[::2]
        )
        for d in DIFFICULTIES
    ]
    assert largest == sorted(largest) and largest[-1] > largest[0]


# -- addsub ------------------------------------------------------------------------------------


def addsub_operands(problem: Problem) -> tuple[str, str, str]:
    match = re.fullmatch(r"Compute ([0-9]+) ([-+]) ([0-9]+)\.", problem.question)
    assert match, problem.question
    return match.group(1), match.group(2), match.group(3)


def digitwise(a: str, b: str, column: Callable[[int, int], int]) -> int:
    """Apply ``column`` to aligned digit pairs and read the digits back in order."""
    width = max(len(a), len(b))
    pairs = zip(a.zfill(width), b.zfill(width), strict=True)
    return int("".join(str(column(int(x), int(y))) for x, y in pairs))


def added_without_carries(a: str, b: str) -> int:
    # Every column keeps only its ones digit, except the leftmost, written in full.
    width = max(len(a), len(b))
    a, b = a.zfill(width), b.zfill(width)
    left = int(a[0]) + int(b[0])
    rest = "".join(str((int(x) + int(y)) % 10) for x, y in zip(a[1:], b[1:], strict=True))
    return int(f"{left}{rest}")


def addsub_oracles(problem: Problem) -> dict[str, int | None]:
    a, operator, b = addsub_operands(problem)
    gold = int(a) + int(b) if operator == "+" else int(a) - int(b)
    addition = operator == "+"
    return {
        "carry_dropped": added_without_carries(a, b) if addition else None,
        "borrow_dropped": None if addition else digitwise(a, b, lambda x, y: (x - y) % 10),
        "smaller_from_larger": None if addition else digitwise(a, b, lambda x, y: abs(x - y)),
        "digit_reversed": int(str(gold)[::-1]),
    }


def test_addsub_oracles_by_hand():
    assert added_without_carries("47", "38") == 75
    assert added_without_carries("95", "87") == 172
    assert digitwise("52", "27", lambda x, y: (x - y) % 10) == 35
    assert digitwise("403", "158", lambda x, y: abs(x - y)) == 355


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_addsub_gold_and_modes_match_the_oracles(difficulty):
    for problem in AddSubTask(num_problems=300, difficulty=difficulty, seed=11):
        a, operator, b = addsub_operands(problem)
        gold = int(a) + int(b) if operator == "+" else int(a) - int(b)
        assert int(problem.answer) == gold
        check_modes(problem, addsub_oracles(problem))


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_addsub_traps_trigger(difficulty):
    problems = list(AddSubTask(num_problems=300, difficulty=difficulty, seed=3))
    additions = [p for p in problems if addsub_operands(p)[1] == "+"]
    subtractions = [p for p in problems if addsub_operands(p)[1] == "-"]
    assert 0.35 < len(additions) / len(problems) < 0.65
    # Every addition carries into another column and every subtraction borrows.
    assert all("carry_dropped" in p.error_modes for p in additions)
    assert all("borrow_dropped" in p.error_modes for p in subtractions)
    for problem in problems:
        a, operator, b = addsub_operands(problem)
        assert len(a) == len(b) == difficulty + 1
        if operator == "-":
            assert int(a) > int(b)


# -- modular -----------------------------------------------------------------------------------


def modular_parts(problem: Problem) -> tuple[int, int]:
    match = re.fullmatch(
        r"What is the remainder when (.+) is divided by ([0-9]+)\?", problem.question
    )
    assert match, problem.question
    return safe_eval(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_modular_gold_and_modes_match_the_oracles(difficulty):
    for problem in ModularTask(num_problems=300, difficulty=difficulty, seed=11):
        value, modulus = modular_parts(problem)
        assert int(problem.answer) == value % modulus
        check_modes(
            problem,
            {
                "no_reduction": value,
                "off_by_one": value % modulus + modulus,
                "quotient_given": value // modulus,
            },
        )


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_modular_traps_trigger(difficulty):
    for problem in ModularTask(num_problems=300, difficulty=difficulty, seed=3):
        value, modulus = modular_parts(problem)
        assert value >= 2 * modulus
        assert {"no_reduction", "off_by_one"} <= set(problem.error_modes)


def test_modular_difficulty_grows_the_moduli():
    def mean_modulus(difficulty: int) -> float:
        moduli = [modular_parts(p)[1] for p in ModularTask(num_problems=200, difficulty=difficulty)]
        return sum(moduli) / len(moduli)

    means = [mean_modulus(d) for d in DIFFICULTIES]
    assert means == sorted(means) and means[-1] > 3 * means[0]


# -- all families ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    difficulty=st.sampled_from(DIFFICULTIES),
    index=st.integers(0, 10**6),
)
def test_oracles_hold_for_any_seed_and_index(seed, difficulty, index):
    size = index + 1
    arithmetic = ArithmeticTask(num_problems=size, difficulty=difficulty, seed=seed)[index]
    expression = arithmetic_expression(arithmetic)
    assert int(arithmetic.answer) == safe_eval(expression)
    check_modes(arithmetic, {m: o(expression) for m, o in ARITHMETIC_ORACLES.items()})
    addsub = AddSubTask(num_problems=size, difficulty=difficulty, seed=seed)[index]
    check_modes(addsub, addsub_oracles(addsub))
    modular = ModularTask(num_problems=size, difficulty=difficulty, seed=seed)[index]
    value, modulus = modular_parts(modular)
    assert int(modular.answer) == value % modulus


@pytest.mark.parametrize("task_class", [ArithmeticTask, AddSubTask, ModularTask])
def test_difficulty_changes_the_problems(task_class):
    easy = [p.question for p in task_class(num_problems=30, difficulty=1)]
    hard = [p.question for p in task_class(num_problems=30, difficulty=5)]
    assert not set(easy) & set(hard)
    assert sum(map(len, hard)) > sum(map(len, easy))
