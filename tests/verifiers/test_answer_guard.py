"""The guard that refuses absurd answers before sympy: named limits, named edge cases."""

import pytest

from meds_gym.verifiers import equivalence, is_equivalent
from meds_gym.verifiers.guard import (
    MAX_COMBINATORIAL_ARGUMENT,
    MAX_EXPONENT,
    MAX_LITERAL_DIGITS,
    MAX_NESTING_DEPTH,
    refusal_reason,
)

NESTED_BRACES_900 = "{" * 449 + "1" + "}" * 449


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        pytest.param("9^{9^{9}}", "tower", id="tower-braced"),
        pytest.param("10^{10^{100}}", "tower", id="tower-googolplex"),
        pytest.param("9^9^9", "tower", id="tower-chain"),
        pytest.param("9**9**9", "tower", id="tower-python-power"),
        pytest.param("(9^9)^{9^9}", "tower", id="tower-parenthesised-base"),
        pytest.param("x^{9^{9^{9}}}", "tower", id="tower-under-a-variable"),
        pytest.param("2^{\\pi^{2}}", "tower of numeric powers", id="tower-not-estimable"),
        pytest.param("1\\times 10^{999999999}", "exponent", id="e-notation-rewritten"),
        pytest.param(f"10^{{{MAX_EXPONENT + 1}}}", "exponent", id="exponent-just-above"),
        pytest.param("x^{-100000}", "exponent", id="negative-exponent"),
        pytest.param("1" * (MAX_LITERAL_DIGITS + 1) + ".5", "literal", id="long-literal"),
        pytest.param(f"{MAX_COMBINATORIAL_ARGUMENT + 1}!", "factorial", id="factorial"),
        pytest.param("\\binom{100000}{50000}", "binomial", id="binomial"),
        pytest.param(NESTED_BRACES_900, "nested", id="nested-braces-900-chars"),
        pytest.param("\\sqrt{" * 30 + "2" + "}" * 30, "nested", id="nested-radicals"),
        pytest.param("(" * (MAX_NESTING_DEPTH + 1) + "1", "nested", id="unclosed-parentheses"),
    ],
)
def test_refused(answer, match):
    reason = refusal_reason(answer)
    assert reason is not None and match in reason


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("2^{1009}", id="olympiad-power"),
        pytest.param(f"10^{{{MAX_EXPONENT}}}", id="exponent-at-limit"),
        pytest.param("2^{3^{2}}", id="small-tower"),
        pytest.param("2^{2^{n}}", id="symbolic-tower"),
        pytest.param("e^{x^2}", id="gaussian"),
        pytest.param("\\frac{100!}{2^{50}}", id="factorial-in-gold"),
        pytest.param("\\frac{d !}{2 k(d-k) !}", id="symbolic-factorial"),
        pytest.param("2.88\\times 10^{-19}", id="tiny-number"),
        pytest.param("(" * MAX_NESTING_DEPTH + "1" + ")" * MAX_NESTING_DEPTH, id="depth-at-limit"),
        pytest.param("1" * MAX_LITERAL_DIGITS + ".5", id="literal-at-limit"),
        pytest.param("\\left( 3, \\frac{\\pi}{2} \\right)", id="tuple"),
    ],
)
def test_allowed(answer):
    assert refusal_reason(answer) is None


def test_bundled_gold_answers_pass_the_guard():
    from meds_gym.tasks.datasets import load_benchmark
    from tests.conftest import BENCHMARK_FILES, benchmark_file

    refused = []
    for name in BENCHMARK_FILES:
        for problem in load_benchmark(name, benchmark_file(name)):
            answer = equivalence._normalize_notation(problem.answer)
            if refusal_reason(answer) is not None:
                refused.append((problem.problem_id, problem.answer))
    assert refused == []


def test_refused_answer_never_reaches_the_worker(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a refused answer reached the symbolic comparison")

    monkeypatch.setattr(equivalence, "_compare_symbolically", fail)
    for answer in ["9^{9^{9}}", "10^{10^{100}}", "1e999999999", NESTED_BRACES_900]:
        assert is_equivalent(answer, "1") is False


def test_refusal_is_logged(caplog):
    with caplog.at_level("INFO", logger="meds_gym.verifiers.equivalence"):
        assert is_equivalent("9^{9^{9}}", "1") is False
    assert any("refused" in record.getMessage() for record in caplog.records)
