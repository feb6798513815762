"""Equations and inequalities compared as written, not by their real solutions (issue 11)."""

import pytest
import sympy

from meds_gym.verifiers import is_equivalent
from meds_gym.verifiers.equations import compare_relations

x, y = sympy.symbols("x y")

# (predicted, gold): the same relation written differently (checked by hand).
SAME = [
    pytest.param("x^2-2x+10=0", "x^2-2x+10=0", id="identical"),
    pytest.param("0=x^2-2x+10", "x^2-2x+10=0", id="swapped-sides"),
    pytest.param("2x^2-4x+20=0", "x^2-2x+10=0", id="scaled"),
    pytest.param("-x^2+2x-10=0", "x^2-2x+10=0", id="negated"),
    pytest.param("2x-y+3=0", "y=2x+3", id="line-rearranged"),
    pytest.param("9x^2+4y^2=36", "\\frac{x^2}{4}+\\frac{y^2}{9}=1", id="ellipse-cleared"),
    pytest.param("y=0.5x", "2y=x", id="float-coefficient"),
    pytest.param("x=5.0", "x=5", id="float-constant"),
    pytest.param("x=\\frac{1}{2}", "\\frac{1}{x}=2", id="denominator-cleared"),
    pytest.param("2\\sin x=2", "\\sin x=1", id="function-scaled"),
    pytest.param("2>x", "x<2", id="inequality-flipped"),
    pytest.param("-x>-2", "x<2", id="inequality-negated"),
    pytest.param("2x\\le 4", "x\\le 2", id="inequality-scaled"),
    pytest.param("x=5", "5", id="assignment-vs-value"),
    pytest.param("2\\cdot f(x)=4x", "f(x)=2 x", id="function-equation-scaled"),
    pytest.param("k x-a=\\frac{d x}{d t}", "\\frac{d x}{d t}=k x-a", id="differential-swapped"),
]

# (predicted, gold): different relations that math-verify called equal.
DIFFERENT = [
    pytest.param("x^2-2x+10=1", "x^2-2x+10=0", id="no-real-roots-shifted"),
    pytest.param("x^2+2=0", "x^2+1=0", id="no-real-roots-constant"),
    pytest.param("x^2+1=0", "x^2+2=0", id="no-real-roots-constant-reversed"),
    pytest.param("x^2+y^2=-2", "x^2+y^2=-1", id="empty-circles"),
    pytest.param("y=2x+4", "y=2x+3", id="line-shifted"),
    pytest.param("x>2", "x<2", id="inequality-direction"),
    pytest.param("-2x<-4", "x<2", id="inequality-negated-not-flipped"),
    pytest.param("x\\le 2", "x<2", id="inequality-strictness"),
    pytest.param("x \\neq 2", "x=2", id="relation-kind"),
    # Found by benchmarks/verifier_accuracy.py (eq_one_side) on Minerva.
    pytest.param(
        "2\\cdot\\frac{d x}{d t}=k x-a", "\\frac{d x}{d t}=k x-a", id="differential-one-side"
    ),
    pytest.param("2\\cdot f(x)=2x", "f(x)=2 x", id="function-equation-one-side"),
]


@pytest.mark.parametrize(("predicted", "gold"), SAME)
def test_same_relation_is_equivalent(predicted, gold):
    assert is_equivalent(predicted, gold) is True


@pytest.mark.parametrize(("predicted", "gold"), DIFFERENT)
def test_different_relation_is_not_equivalent(predicted, gold):
    assert is_equivalent(predicted, gold) is False


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        pytest.param(sympy.Eq(x**2 + 1, 0), sympy.Eq(x**2 + 2, 0), False, id="polynomial-no"),
        pytest.param(sympy.Eq(2 * x, 4), sympy.Eq(2, x), True, id="polynomial-yes"),
        pytest.param(sympy.Lt(x, 2), sympy.Gt(2, x), True, id="inequality-swapped"),
        pytest.param(sympy.Eq(x, 5), sympy.Eq(y, 5), None, id="assignments-left-to-math-verify"),
        pytest.param(
            sympy.Eq(sympy.sin(x), 1), sympy.Eq(sympy.sin(x), 2), None, id="function-undecided"
        ),
        pytest.param(
            sympy.Eq(x + 1, x + 1, evaluate=False), sympy.Eq(x, 1), None, id="identity-undecided"
        ),
        pytest.param(sympy.Lt(1 / x, 2), sympy.Lt(1, 2 * x), None, id="variable-denominator"),
        pytest.param(x + 1, sympy.Eq(x, 1), None, id="not-a-relation"),
    ],
)
def test_compare_relations(gold, predicted, expected):
    assert compare_relations(gold, predicted) is expected
