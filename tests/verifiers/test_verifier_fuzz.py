"""Fuzz the public verifier entry points with arbitrary text and LaTeX-ish strings (issue 11).

Every input gives a documented result (a bool, a verdict, an answer or ``None``); none raises, hangs
or crashes the process. A ``VerifierError`` here would be a bug in the checker, so it fails the
test too. ``HYPOTHESIS_PROFILE=fuzz`` runs 1,000 cases per test.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.verifiers import (
    VerificationResult,
    canonical_integer,
    extract_answer,
    extract_boxed,
    is_equivalent,
    refusal_reason,
    verify_response,
)
from meds_gym.verifiers.extraction import extract_tagged
from tests.conftest import FUZZ_EXAMPLES

pytestmark = pytest.mark.fuzz

FUZZ_TIMEOUT_SECONDS = 2.0
"""Deadline of each comparison in these tests (a timed-out comparison is a valid, wrong, result)."""

_LATEX_TOKENS = [
    "\\boxed{", "\\fbox{", "{", "}", "\\{", "\\}", "(", ")", "[", "]", "\\left(", "\\right)",
    "\\frac{", "\\dfrac", "\\sqrt{", "\\sqrt[3]{", "^", "^{", "_", "**", "!", "\\binom{", "\\cdot",
    "\\times", "+", "-", "\u2212", "/", "=", "<", ">", "\\le", "\\geq", "\\neq", "\\in", ",", ".",
    "x", "y", "n", "e", "i", "\\pi", "\\infty", "\\sin", "\\log_", "\\text{", "\\circ", "\u00b0",
    "%", "\\%", "$", "\\$", " ", "\n", "\\\\", "0", "1", "2", "9", "10", "1,000", "0.5", "1e9",
    "999999999", "e-7", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "####", "<answer>", "</answer>",
    "\x00", "\ud800", "\U0001f600",
]  # fmt: skip

latex_like = st.lists(st.sampled_from(_LATEX_TOKENS), max_size=40).map("".join)
_atoms = st.sampled_from(["x", "y", "n", "0", "1", "2", "3", "9", "10", "0.5", "\\pi", "e", "i"])
# Well-formed expressions (balanced braces), which get past the cheap checks to sympy.
expressions = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda ab: f"\\frac{{{ab[0]}}}{{{ab[1]}}}"),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]}^{{{ab[1]}}}"),
        st.tuples(inner, st.sampled_from("+-*/=<,"), inner).map("".join),
        inner.map(lambda a: f"\\sqrt{{{a}}}"),
        inner.map(lambda a: f"({a})"),
        inner.map(lambda a: f"{a}!"),
    ),
    max_leaves=12,
)
any_text = st.one_of(st.text(max_size=300), latex_like, expressions)
golds = st.one_of(
    st.sampled_from(
        [
            "7",
            "-3",
            "\\frac{1}{2}",
            "2\\sqrt{2}",
            "(1,2]",
            "x^2-2x+10=0",
            "y=2x+3",
            "x<2",
            "\\text{(B)}",
            "\\{1,2\\}",
            "4.5e33",
            "30^\\circ",
            "50\\%",
            "\\pi",
            "1+i",
        ]
    ),  # fmt: skip
    latex_like,
    expressions,
)


@settings(max_examples=FUZZ_EXAMPLES)
@given(response=any_text, gold=golds, extractor=st.sampled_from(["boxed", "gsm8k", "raw"]))
def test_verify_response_gives_a_verdict(response, gold, extractor):
    result = verify_response(
        response, gold, extractor=extractor, timeout_seconds=FUZZ_TIMEOUT_SECONDS
    )
    assert isinstance(result, VerificationResult)
    assert isinstance(result.correct, bool)
    assert result.parsed_answer is None or isinstance(result.parsed_answer, str)
    if result.parsed_answer is None:
        assert result.correct is False


@settings(max_examples=FUZZ_EXAMPLES)
@given(predicted=any_text, gold=golds)
def test_is_equivalent_gives_a_bool(predicted, gold):
    assert isinstance(is_equivalent(predicted, gold, timeout_seconds=FUZZ_TIMEOUT_SECONDS), bool)


@settings(max_examples=FUZZ_EXAMPLES)
@given(answer=any_text)
def test_answer_equals_itself_or_is_wrong_never_raises(answer):
    # Reflexivity cannot be required (garbage is wrong even against itself), but whatever the
    # verdict, an answer compared with its own text must not raise.
    assert isinstance(is_equivalent(answer, answer, timeout_seconds=FUZZ_TIMEOUT_SECONDS), bool)


@settings(max_examples=FUZZ_EXAMPLES)
@given(text=any_text)
def test_extract_boxed_gives_a_substring_or_none(text):
    answer = extract_boxed(text)
    assert answer is None or (isinstance(answer, str) and answer in text)


@settings(max_examples=FUZZ_EXAMPLES)
@given(text=any_text, extractor=st.sampled_from(["boxed", "gsm8k", "raw"]))
def test_extract_answer_gives_a_str_or_none(text, extractor):
    answer = extract_answer(text, extractor)
    assert answer is None or isinstance(answer, str)


@settings(max_examples=FUZZ_EXAMPLES)
@given(text=any_text)
def test_extract_tagged_gives_a_str_or_none(text):
    answer = extract_tagged(text)
    assert answer is None or isinstance(answer, str)


@settings(max_examples=FUZZ_EXAMPLES)
@given(answer=any_text)
def test_canonical_integer_and_guard_give_documented_results(answer):
    integer = canonical_integer(answer)
    assert integer is None or (integer.lstrip("-").isdigit() and integer != "-0")
    reason = refusal_reason(answer)
    assert reason is None or isinstance(reason, str)
