r"""Structural comparison of two equations (or inequalities) parsed by math-verify.

math-verify compares two equations by their real solutions, so every pair of equations without a
real solution compares equal (``x^2-2x+10=0`` "equals" ``x^2-2x+10=1``; ``x^2+1=0`` "equals"
``x^2+2=0``, issue 11). Here two relations are compared as written:

* both are put in the form ``d REL 0`` (``a = b`` gives ``d = a - b``; ``a > b`` gives
  ``b - a < 0``, so swapped sides and a flipped sign compare alike);
* they match when the relation is the same and the two ``d`` are proportional by a nonzero
  constant (positive for inequalities): ``y = 2x + 3`` matches ``2x - y + 3 = 0`` and
  ``4y = 8x + 12``; ``x^2/4 + y^2/9 = 1`` matches ``9x^2 + 4y^2 = 36``. For equations, ``d`` is
  first brought over a common denominator and its numerator compared (``1/x = 2`` matches
  ``x = 1/2``; a point excluded from the domain is not tracked).

The verdict is definite only where the comparison is exact: when both numerators are polynomials
in variables, undefined functions (``f(x)``, ``x(t)``) and their derivatives, which obey no
algebraic identity (a non-proportional pair is then a different equation). When known functions
appear (``\sin x``, ``e^{x}``, ``\sqrt{x}``), a proportional pair is still a match, but a
non-proportional one may be the same equation through an identity (``\sin^2 x + \cos^2 x = 1``),
so the comparison returns "undecided" and math-verify's verdict stands. An assignment of a
constant to a lone variable on both sides (``x = 5`` against ``k = 5``) is also left to
math-verify, which compares the values.
"""

from __future__ import annotations

from typing import Any

import sympy
from sympy.core.function import AppliedUndef
from sympy.core.relational import Relational
from sympy.polys.polyerrors import PolificationFailed, PolynomialError

_RELATIVE_TOLERANCE = 1e-6
"""Coefficient agreement required when a float is involved (as for numbers, see equivalence)."""

# d REL 0, with d = lhs - rhs ("lt"/"le": d < 0 / d <= 0, so ">" and ">=" swap the sides).
_KINDS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "lt", ">=": "le"}
_SWAPPED = frozenset([">", ">="])


def _normal_form(relation: Relational) -> tuple[str, Any] | None:
    """``(kind, d)`` with the relation equivalent to ``d REL 0``, or ``None`` if not arithmetic."""
    kind = _KINDS.get(relation.rel_op)
    lhs, rhs = relation.lhs, relation.rhs
    if kind is None or not isinstance(lhs, sympy.Expr) or not isinstance(rhs, sympy.Expr):
        return None
    if relation.rel_op in _SWAPPED:
        lhs, rhs = rhs, lhs
    return kind, lhs - rhs


def _is_assignment(relation: Relational) -> bool:
    """``x = 5`` (or ``5 = x``): a lone variable on one side and a constant on the other."""
    if relation.rel_op != "==":
        return False
    lhs, rhs = relation.lhs, relation.rhs
    return (isinstance(lhs, sympy.Symbol) and not rhs.free_symbols) or (
        isinstance(rhs, sympy.Symbol) and not lhs.free_symbols
    )


def _comparable_form(difference: Any, kind: str) -> Any | None:
    """What is compared for proportionality (``None`` if nothing can be).

    The numerator for equations; ``d`` itself for inequalities, whose direction a multiplication
    by a denominator of unknown sign would flip.
    """
    numerator, denominator = sympy.fraction(sympy.together(difference))
    if kind in ("eq", "ne"):
        return sympy.expand(numerator)
    if denominator.free_symbols:
        return None
    return sympy.expand(difference)


def _close(first: Any, second: Any, tolerance: float) -> bool:
    """Two coefficients equal, or within ``tolerance`` relative, judged at 30 digits.

    sympy's floats have an unbounded exponent: ``10^{400}`` keeps its value where a Python float
    would overflow to infinity and match anything.
    """
    if sympy.expand(first - second) == 0:
        return True
    if tolerance == 0.0:
        return False
    a, b = sympy.N(first, 30), sympy.N(second, 30)
    if not (a.is_finite and b.is_finite):
        return False
    try:
        return bool(abs(a - b) <= tolerance * sympy.Max(abs(a), abs(b)))
    except TypeError:  # an undecidable comparison: not shown to be close
        return False


def _independent(generator: Any) -> bool:
    r"""Whether a polynomial generator obeys no algebraic identity with the others.

    Variables, undefined functions (``f(x)``, ``x(t)``) and their derivatives qualify; known
    functions (``\sin x``, ``e^{x}``, ``\sqrt{x}``) do not (``\sin^2 x + \cos^2 x = 1``).
    """
    if isinstance(generator, sympy.Derivative):
        generator = generator.expr
    return isinstance(generator, (sympy.Symbol, AppliedUndef))


def _proportional(first: Any, second: Any) -> tuple[bool, Any, bool] | None:
    """``(proportional, factor, exact)`` for two polynomials over common generators, or ``None``.

    The factor ``k`` is such that ``first = k * second`` when proportional; ``exact`` says that the
    generators are independent, so that "not proportional" means "different".
    """
    try:
        (poly_first, poly_second), _ = sympy.parallel_poly_from_expr([first, second])
    except (PolificationFailed, PolynomialError):
        return None
    exact = all(_independent(generator) for generator in poly_first.gens)
    terms_first, terms_second = poly_first.as_dict(native=False), poly_second.as_dict(native=False)
    if not terms_first or not terms_second or terms_first.keys() != terms_second.keys():
        return False, None, exact
    tolerance = _RELATIVE_TOLERANCE if first.has(sympy.Float) or second.has(sympy.Float) else 0.0
    leading = max(terms_first)
    factor = terms_first[leading] / terms_second[leading]
    for monomial, coefficient in terms_first.items():
        if not _close(coefficient, factor * terms_second[monomial], tolerance):
            return False, None, exact
    return True, factor, exact


def compare_relations(gold: Any, predicted: Any) -> bool | None:
    r"""Whether two parsed relations are the same equation or inequality, if that can be decided.

    Args:
        gold: The gold answer's sympy object (math-verify's first parse).
        predicted: The predicted answer's sympy object.

    Returns:
        ``True`` (same relation, proportional sides), ``False`` (a different relation, or
        polynomials in independent generators that are not proportional) or ``None`` when the
        two are not both relations or the comparison cannot decide (math-verify's verdict then
        stands).

    Example:
        >>> x = sympy.Symbol("x")
        >>> compare_relations(sympy.Eq(x**2 + 1, 0), sympy.Eq(x**2 + 2, 0))
        False
        >>> compare_relations(sympy.Eq(2 * x, 4), sympy.Eq(2, x))
        True
    """
    if not isinstance(gold, Relational) or not isinstance(predicted, Relational):
        return None
    try:
        return _compare(gold, predicted)
    except (ArithmeticError, TypeError, ValueError, AttributeError):
        # Sides sympy cannot subtract or expand (matrices, undefined values): undecided here.
        return None


def _compare(gold: Relational, predicted: Relational) -> bool | None:
    """:func:`compare_relations` for two relations; sympy's errors propagate."""
    if _is_assignment(gold) and _is_assignment(predicted):
        return None
    gold_form, predicted_form = _normal_form(gold), _normal_form(predicted)
    if gold_form is None or predicted_form is None:
        return None
    (gold_kind, gold_difference), (predicted_kind, predicted_difference) = (
        gold_form,
        predicted_form,
    )
    if gold_kind != predicted_kind:
        return False
    first = _comparable_form(gold_difference, gold_kind)
    second = _comparable_form(predicted_difference, predicted_kind)
    if first is None or second is None or first == 0 or second == 0:
        return None  # an identity (x = x) or a variable denominator in an inequality
    outcome = _proportional(first, second)
    if outcome is None:
        return None
    proportional, factor, exact = outcome
    if not proportional:
        return False if exact else None
    if gold_kind in ("lt", "le"):
        sign = sympy.N(factor, 30)
        if not sign.is_real:
            return None
        return bool(sign > 0)
    return True
