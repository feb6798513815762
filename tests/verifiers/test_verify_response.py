"""verify_response end to end: extraction + equivalence, bad input, huge and odd text."""

import pytest

from meds_gym.errors import InvalidArgumentError
from meds_gym.verifiers import VerificationResult, verify_response


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param("3 + 4 = 7, so \\boxed{7}.", "7", VerificationResult(True, "7"), id="int"),
        pytest.param("\\boxed{8}", "7", VerificationResult(False, "8"), id="int-wrong"),
        pytest.param(
            "so $x = \\boxed{\\dfrac{1}{2}}$",
            "0.5",
            VerificationResult(True, "\\dfrac{1}{2}"),
            id="frac",
        ),
        pytest.param("I think it is 7.", "7", VerificationResult(False, None), id="no-box"),
        pytest.param("", "7", VerificationResult(False, None), id="empty"),
        pytest.param("\\boxed{7", "7", VerificationResult(False, None), id="unbalanced"),
        pytest.param("\\boxed{}", "7", VerificationResult(False, ""), id="empty-box"),
    ],
)
def test_verify_response(response, gold, expected):
    assert verify_response(response, gold) == expected


def test_gsm8k_extractor():
    result = verify_response("5 + 5 = 10\n#### 1,010", "1010", extractor="gsm8k")
    assert result == VerificationResult(True, "1010")


def test_raw_extractor():
    assert verify_response("  \\frac{2}{4} ", "0.5", extractor="raw").correct


@pytest.mark.parametrize(
    "response",
    [
        pytest.param("\x00" * 1000, id="nul-bytes"),
        pytest.param("\\boxed{\x00}", id="nul-in-box"),
        pytest.param("".join(chr(c) for c in range(0x20, 0x3000, 7)), id="unicode-sweep"),
        pytest.param("\\boxed{\ud800}", id="lone-surrogate"),
        pytest.param("\\boxed{" + "(" * 50 + "}", id="unbalanced-parentheses"),
        pytest.param("}}}}{{{{\\boxed{}}}\\boxed{{{", id="brace-soup"),
        pytest.param("a" * 1_000_000, id="million-chars-no-box"),
        pytest.param("\\boxed{" + "1+" * 400_000 + "1}", id="huge-box-beyond-search-window"),
        pytest.param("\\boxed{" + "1+" * 20_000 + "1}", id="box-longer-than-answer-limit"),
        pytest.param("\\boxed{" + "\\frac{" * 2000 + "}", id="unclosed-fracs"),
    ],
)
def test_garbage_is_wrong_not_a_crash(response):
    result = verify_response(response, "7")
    assert result.correct is False


def test_million_characters_with_answer_at_the_end():
    result = verify_response("lorem ipsum " * 100_000 + "\\boxed{12}", "12")
    assert result == VerificationResult(True, "12")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"response": 7, "gold": "7"}, TypeError, r"`response` must be a str.*int", id="r"
        ),
        pytest.param(
            {"response": None, "gold": "7"}, TypeError, r"`response`.*NoneType", id="none"
        ),
        pytest.param(
            {"response": "x", "gold": 7}, TypeError, r"`gold` must be a str.*int", id="gold"
        ),
        pytest.param(
            {"response": "x", "gold": "7", "extractor": "nope"},
            InvalidArgumentError,
            r"`extractor`",
            id="extractor",
        ),
        pytest.param(
            {"response": "x", "gold": "7", "timeout_seconds": 0},
            InvalidArgumentError,
            r"`timeout_seconds`",
            id="timeout",
        ),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        verify_response(**kwargs)


def test_result_is_frozen():
    result = verify_response("\\boxed{1}", "1")
    with pytest.raises(AttributeError):
        result.correct = False  # type: ignore[misc]
