"""Integer expressions with an operator-precedence trap, e.g. ``Compute 7 + 3 * 4 - 2.``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meds_gym.tasks.procedural import ProceduralTask, Solution, unknown_error_mode

_OPERAND_COUNT = {1: 4, 2: 5, 3: 6, 4: 7, 5: 8}
"""Operands per expression at each difficulty."""
_MAX_OPERAND = {1: 9, 2: 9, 3: 12, 4: 15, 5: 19}
"""Largest operand at each difficulty; the smallest is 2 so that no factor is a neutral 1."""
_OPERATORS = "+-*"
_MAX_DRAWS = 10_000


@dataclass(frozen=True)
class ArithmeticSpec:
    """An expression ``operands[0] operators[0] operands[1] ...`` over ``+``, ``-`` and ``*``."""

    operands: tuple[int, ...]
    """The numbers, left to right."""
    operators: tuple[str, ...]
    """One operator between each pair of neighbouring operands."""


def _apply(left: int, operator: str, right: int) -> int:
    if operator == "+":
        return left + right
    if operator == "-":
        return left - right
    return left * right


def _has_trap(operators: tuple[str, ...]) -> bool:
    """Whether the operators set the family's traps.

    A ``*`` right after ``+`` or ``-`` (so left-to-right evaluation gives another value), at least
    one ``-`` (so the sign mistakes apply), and no ``* *`` chain (keeps the numbers small).
    """
    pairs = list(zip(operators, operators[1:], strict=False))
    precedence_trap = any(a in "+-" and b == "*" for a, b in pairs)
    chained_product = any(a == "*" and b == "*" for a, b in pairs)
    return precedence_trap and "-" in operators and not chained_product


def _stays_non_negative(spec: ArithmeticSpec) -> bool:
    """Whether every intermediate result of the correct procedure is >= 0.

    Keeps negative numbers out of the correct worked solutions, as in school exercises.
    """
    _, terms, additive = _fold_products(spec)
    value = terms[0]
    for operator, term in zip(additive, terms[1:], strict=True):
        value = _apply(value, operator, term)
        if value < 0:
            return False
    return True


def _fold_products(spec: ArithmeticSpec) -> tuple[list[str], list[int], list[str]]:
    """First pass of the correct order of operations: multiply, left to right.

    Returns:
        The product steps, the remaining terms and the ``+``/``-`` operators between them.
    """
    steps: list[str] = []
    terms = [spec.operands[0]]
    additive: list[str] = []
    for operator, operand in zip(spec.operators, spec.operands[1:], strict=True):
        if operator == "*":
            product = terms[-1] * operand
            steps.append(f"{terms[-1]}*{operand}={product}")
            terms[-1] = product
        else:
            additive.append(operator)
            terms.append(operand)
    return steps, terms, additive


def _left_to_right(
    first: int, operators: list[str], operands: list[int], steps: list[str], last_step_offset: int
) -> Solution:
    """Apply ``operators`` strictly left to right, appending one step per operation.

    ``last_step_offset`` is added to the result of the last operation (an arithmetic slip).
    """
    value = first
    for position, (operator, operand) in enumerate(zip(operators, operands, strict=True)):
        result = _apply(value, operator, operand)
        if position == len(operators) - 1:
            result += last_step_offset
        steps.append(f"{value}{operator}{operand}={result}")
        value = result
    return Solution(tuple(steps), value)


class ArithmeticTask(ProceduralTask[ArithmeticSpec]):
    """Multi-step integer expressions whose ``*`` follows a ``+`` or ``-``.

    Difficulty sets the number of operands (4 at level 1 up to 8 at level 5) and their range
    (2..9 up to 2..19). Every expression contains a ``*`` right after a ``+`` or ``-`` and at least
    one ``-``, and the correct procedure, which multiplies first and then adds and subtracts left
    to right, never goes below zero.

    Error modes, each a buggy procedure:

    * ``precedence_ignored``: evaluates strictly left to right.
    * ``sign_flipped``: the last subtraction is done as an addition.
    * ``minus_distributed``: after the first ``-`` every later term is subtracted, as if the minus
      applied to the rest of the expression (``a - b + c`` read as ``a - (b + c)``).
    * ``off_by_one``: the last addition or subtraction comes out one too large.

    Example:
        >>> task = ArithmeticTask(num_problems=10, difficulty=1, seed=0)
        >>> problem = task[3]
        >>> problem.problem_id
        'arithmetic/d1/s0/3'
        >>> task.get(problem.problem_id) == problem
        True
    """

    name = "arithmetic"
    family_constant = 1
    error_mode_names = ("minus_distributed", "off_by_one", "precedence_ignored", "sign_flipped")
    spec_type = ArithmeticSpec

    @classmethod
    def generate_spec(cls, rng: np.random.Generator, difficulty: int) -> ArithmeticSpec:
        """Draw expressions until the traps are set and the correct steps stay non-negative."""
        count = _OPERAND_COUNT[difficulty]
        high = _MAX_OPERAND[difficulty] + 1
        for _ in range(_MAX_DRAWS):
            operators = tuple(_OPERATORS[int(i)] for i in rng.integers(0, 3, size=count - 1))
            if not _has_trap(operators):
                continue
            operands = tuple(int(v) for v in rng.integers(2, high, size=count))
            spec = ArithmeticSpec(operands=operands, operators=operators)
            if _stays_non_negative(spec):
                return spec
        raise RuntimeError(  # pragma: no cover - each draw succeeds with probability above 0.01
            "could not draw an expression with a precedence trap"
        )

    @classmethod
    def question_text(cls, spec: ArithmeticSpec) -> str:
        """``Compute 7 + 3 * 4 - 2.``."""
        parts = [str(spec.operands[0])]
        for operator, operand in zip(spec.operators, spec.operands[1:], strict=True):
            parts += [operator, str(operand)]
        return f"Compute {' '.join(parts)}."

    @classmethod
    def solve_correct(cls, spec: ArithmeticSpec) -> Solution:
        """Multiply first, then add and subtract left to right."""
        steps, terms, additive = _fold_products(spec)
        return _left_to_right(terms[0], additive, terms[1:], steps, 0)

    @classmethod
    def solve_buggy(cls, spec: ArithmeticSpec, error_mode: str) -> Solution | None:
        """Follow the buggy procedure ``error_mode``; ``None`` if it does not apply."""
        if error_mode == "precedence_ignored":
            return _left_to_right(
                spec.operands[0], list(spec.operators), list(spec.operands[1:]), [], 0
            )
        steps, terms, additive = _fold_products(spec)
        if error_mode == "off_by_one":
            if not additive:
                return None
            return _left_to_right(terms[0], additive, terms[1:], steps, 1)
        if error_mode == "sign_flipped":
            if "-" not in additive:
                return None
            last_minus = len(additive) - 1 - additive[::-1].index("-")
            additive[last_minus] = "+"
            return _left_to_right(terms[0], additive, terms[1:], steps, 0)
        if error_mode == "minus_distributed":
            if "-" not in additive or "+" not in additive[additive.index("-") :]:
                return None
            first_minus = additive.index("-")
            additive = additive[:first_minus] + ["-"] * (len(additive) - first_minus)
            return _left_to_right(terms[0], additive, terms[1:], steps, 0)
        raise unknown_error_mode(cls, error_mode)
