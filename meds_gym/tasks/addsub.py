"""Column addition and subtraction of multi-digit numbers with carries and borrows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meds_gym.tasks.procedural import ProceduralTask, Solution, unknown_error_mode

_MAX_DRAWS = 10_000


@dataclass(frozen=True)
class AddSubSpec:
    """``operands[0] operator operands[1]`` with non-negative operands."""

    operands: tuple[int, ...]
    """The two numbers; for a subtraction the first is the larger."""
    operator: str
    """``"+"`` or ``"-"``."""


def _columns(spec: AddSubSpec) -> list[tuple[int, int]]:
    """Digit pairs, ones column first, the shorter number padded with zeros."""
    top, bottom = (str(v) for v in spec.operands)
    width = max(len(top), len(bottom))
    top, bottom = top.zfill(width), bottom.zfill(width)
    return [(int(a), int(b)) for a, b in zip(reversed(top), reversed(bottom), strict=True)]


def _compose(column_values: list[int]) -> int:
    """The number whose column ``i`` (ones first) holds ``column_values[i]``.

    The last (leftmost) value may have several digits: it is written in full.
    """
    return sum(value * 10**i for i, value in enumerate(column_values))


def _add(spec: AddSubSpec, carry_dropped: bool) -> Solution:
    """Column addition, carrying into the next column unless ``carry_dropped``."""
    steps: list[str] = []
    values: list[int] = []
    carry = 0
    columns = _columns(spec)
    for position, (a, b) in enumerate(columns):
        carried = 0 if carry_dropped else carry
        total = a + b + carried
        steps.append(f"{a}+{b}{'+1' if carried else ''}={total}")
        leftmost = position == len(columns) - 1
        values.append(total if leftmost else total % 10)
        carry = total // 10
    return Solution(tuple(steps), _compose(values))


def _subtract(spec: AddSubSpec, error_mode: str | None) -> Solution:
    """Column subtraction: correct, ``borrow_dropped`` or ``smaller_from_larger``."""
    steps: list[str] = []
    values: list[int] = []
    borrow = 0
    for a, b in _columns(spec):
        if error_mode == "smaller_from_larger":
            steps.append(f"{max(a, b)}-{min(a, b)}={abs(a - b)}")
            values.append(abs(a - b))
            continue
        top = a - borrow
        need = top < b
        value = top + 10 * need - b
        steps.append(f"{a}{'-1' if borrow else ''}{'+10' if need else ''}-{b}={value}")
        values.append(value)
        # borrow_dropped takes the 10 but never takes the 1 back from the next column.
        borrow = int(need) if error_mode is None else 0
    return Solution(tuple(steps), _compose(values))


def _has_inner_carry(spec: AddSubSpec) -> bool:
    """Whether the correct procedure carries (or borrows) into another column."""
    carry = 0
    columns = _columns(spec)
    for a, b in columns[:-1]:
        if spec.operator == "+":
            carry = (a + b + carry) // 10
        else:
            carry = int(a - carry < b)
        if carry:
            return True
    return False


class AddSubTask(ProceduralTask[AddSubSpec]):
    """Addition and subtraction of two numbers of equal length, solved column by column.

    Difficulty sets the number of digits (2 at level 1 up to 6 at level 5). About half the
    problems are additions with at least one carry into another column, the others are
    subtractions with a positive result and at least one borrow. The correct procedure works
    from the ones column leftwards, carrying or borrowing.

    Error modes, each a buggy procedure:

    * ``carry_dropped``: writes each column's ones digit but never adds the carry to the next
      column.
    * ``borrow_dropped``: borrows 10 when the top digit is too small but never takes the 1 back
      from the next column.
    * ``smaller_from_larger``: in each column subtracts the smaller digit from the larger.
    * ``digit_reversed``: computes every column correctly but writes the digits in the order
      they were found (ones first).

    Example:
        >>> task = AddSubTask(num_problems=10, difficulty=2, seed=0)
        >>> task[0].problem_id
        'addsub/d2/s0/0'
    """

    name = "addsub"
    family_constant = 2
    error_mode_names = ("borrow_dropped", "carry_dropped", "digit_reversed", "smaller_from_larger")
    spec_type = AddSubSpec

    @classmethod
    def generate_spec(cls, rng: np.random.Generator, difficulty: int) -> AddSubSpec:
        """Draw a carrying addition or a borrowing subtraction of ``difficulty + 1`` digits."""
        digits = difficulty + 1
        low, high = 10 ** (digits - 1), 10**digits
        for _ in range(_MAX_DRAWS):
            operator = "+" if int(rng.integers(0, 2)) == 0 else "-"
            a, b = (int(v) for v in rng.integers(low, high, size=2))
            if operator == "-":
                a, b = max(a, b), min(a, b)
            spec = AddSubSpec(operands=(a, b), operator=operator)
            if _has_inner_carry(spec):
                return spec
        raise RuntimeError(  # pragma: no cover - each draw succeeds with probability above 0.3
            "could not draw an addition with a carry or a subtraction with a borrow"
        )

    @classmethod
    def question_text(cls, spec: AddSubSpec) -> str:
        """``Compute 47 + 38.``."""
        return f"Compute {spec.operands[0]} {spec.operator} {spec.operands[1]}."

    @classmethod
    def solve_correct(cls, spec: AddSubSpec) -> Solution:
        """Column addition with carries or column subtraction with borrows."""
        if spec.operator == "+":
            return _add(spec, carry_dropped=False)
        return _subtract(spec, None)

    @classmethod
    def solve_buggy(cls, spec: AddSubSpec, error_mode: str) -> Solution | None:
        """Follow the buggy procedure ``error_mode``; ``None`` if it does not apply."""
        if error_mode == "digit_reversed":
            correct = cls.solve_correct(spec)
            return Solution(correct.steps, int(str(correct.answer)[::-1]))
        if error_mode == "carry_dropped":
            return _add(spec, carry_dropped=True) if spec.operator == "+" else None
        if error_mode in ("borrow_dropped", "smaller_from_larger"):
            return _subtract(spec, error_mode) if spec.operator == "-" else None
        raise unknown_error_mode(cls, error_mode)
