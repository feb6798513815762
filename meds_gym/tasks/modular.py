"""Remainder of a sum or a product on division by a small modulus."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meds_gym.tasks.procedural import ProceduralTask, Solution, unknown_error_mode

_MAX_DRAWS = 10_000


@dataclass(frozen=True)
class _Level:
    """How problems are drawn at one difficulty level."""

    sum_terms: int
    sum_range: tuple[int, int]
    product_factors: int
    product_range: tuple[int, int]
    modulus_range: tuple[int, int]
    product_share: float


_LEVELS = {
    1: _Level(2, (10, 60), 2, (3, 9), (3, 9), 0.0),
    2: _Level(2, (10, 99), 2, (3, 15), (3, 12), 0.5),
    3: _Level(3, (10, 99), 2, (6, 30), (5, 20), 0.5),
    4: _Level(3, (100, 999), 2, (11, 60), (7, 30), 0.5),
    5: _Level(4, (100, 999), 3, (3, 20), (11, 50), 0.5),
}
"""Ranges are inclusive."""


@dataclass(frozen=True)
class ModularSpec:
    """The remainder of ``operands`` combined with ``operator`` on division by ``modulus``."""

    operands: tuple[int, ...]
    """The terms of the sum or the factors of the product."""
    operator: str
    """``"+"`` or ``"*"``."""
    modulus: int
    """The divisor, at least 2."""


def _value(spec: ModularSpec) -> int:
    return sum(spec.operands) if spec.operator == "+" else math.prod(spec.operands)


def _value_step(spec: ModularSpec) -> str:
    return f"{spec.operator.join(str(v) for v in spec.operands)}={_value(spec)}"


class ModularTask(ProceduralTask[ModularSpec]):
    """Remainders of sums and products: ``What is the remainder when 47 + 38 is divided by 6?``.

    Difficulty sets the number and size of the terms and the modulus (sums of two 2-digit terms
    mod 3..9 at level 1; sums of four 3-digit terms or products of three factors mod 11..50 at
    level 5). The value is always at least twice the modulus. The correct procedure computes the
    value, divides it by the modulus and keeps the remainder.

    Error modes, each a buggy procedure:

    * ``no_reduction``: stops after computing the value and forgets to divide.
    * ``off_by_one``: takes a quotient one too small, so the remainder is too large by the
      modulus.
    * ``quotient_given``: divides correctly but answers with the quotient.

    Example:
        >>> task = ModularTask(num_problems=10, difficulty=1, seed=0)
        >>> task[0].question.startswith("What is the remainder when ")
        True
    """

    name = "modular"
    family_constant = 3
    error_mode_names = ("no_reduction", "off_by_one", "quotient_given")
    spec_type = ModularSpec

    @classmethod
    def generate_spec(cls, rng: np.random.Generator, difficulty: int) -> ModularSpec:
        """Draw a sum or a product and a modulus with value >= 2 * modulus."""
        level = _LEVELS[difficulty]
        for _ in range(_MAX_DRAWS):
            if float(rng.random()) < level.product_share:
                operator, count, (low, high) = "*", level.product_factors, level.product_range
            else:
                operator, count, (low, high) = "+", level.sum_terms, level.sum_range
            operands = tuple(int(v) for v in rng.integers(low, high + 1, size=count))
            modulus = int(rng.integers(level.modulus_range[0], level.modulus_range[1] + 1))
            spec = ModularSpec(operands=operands, operator=operator, modulus=modulus)
            if _value(spec) >= 2 * modulus:
                return spec
        raise RuntimeError(  # pragma: no cover - each draw succeeds with probability above 0.5
            "could not draw a value at least twice the modulus"
        )

    @classmethod
    def question_text(cls, spec: ModularSpec) -> str:
        """``What is the remainder when 47 + 38 is divided by 6?``."""
        expression = f" {spec.operator} ".join(str(v) for v in spec.operands)
        return f"What is the remainder when {expression} is divided by {spec.modulus}?"

    @classmethod
    def solve_correct(cls, spec: ModularSpec) -> Solution:
        """Compute the value, write it as quotient * modulus + remainder, keep the remainder."""
        value = _value(spec)
        quotient, remainder = divmod(value, spec.modulus)
        steps = (_value_step(spec), f"{value}={quotient}*{spec.modulus}+{remainder}")
        return Solution(steps, remainder)

    @classmethod
    def solve_buggy(cls, spec: ModularSpec, error_mode: str) -> Solution | None:
        """Follow the buggy procedure ``error_mode``; ``None`` if it does not apply."""
        value = _value(spec)
        quotient, remainder = divmod(value, spec.modulus)
        if error_mode == "no_reduction":
            return Solution((_value_step(spec),), value)
        if error_mode == "off_by_one":
            if quotient < 1:
                return None
            division = f"{value}={quotient - 1}*{spec.modulus}+{remainder + spec.modulus}"
            return Solution((_value_step(spec), division), remainder + spec.modulus)
        if error_mode == "quotient_given":
            return Solution(cls.solve_correct(spec).steps, quotient)
        raise unknown_error_mode(cls, error_mode)
