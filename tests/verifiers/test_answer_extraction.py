"""extract_boxed / extract_answer on named cases, including malformed and huge text."""

import pytest

from meds_gym.errors import InvalidArgumentError
from meds_gym.verifiers import MAX_SEARCH_CHARS, AnswerExtractor, extract_answer, extract_boxed
from meds_gym.verifiers.extraction import extract_tagged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("The answer is \\boxed{5}.", "5", id="simple"),
        pytest.param("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", id="nested-braces"),
        pytest.param("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}", id="deeply-nested"),
        pytest.param("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", id="escaped-braces"),
        pytest.param("\\boxed{a \\\\ b}", "a \\\\ b", id="escaped-backslash"),
        pytest.param("\\fbox{7}", "7", id="fbox"),
        pytest.param("\\boxed{1} then \\boxed{2}", "2", id="several-last-wins"),
        pytest.param("\\boxed{1} then \\fbox{3}", "3", id="boxed-then-fbox"),
        pytest.param("\\fbox{3} then \\boxed{4}", "4", id="fbox-then-boxed"),
        pytest.param("\\boxed 5", "5", id="space-form"),
        pytest.param("so $\\boxed 5$.", "5", id="space-form-in-math"),
        pytest.param("is \\boxed 12.", "12", id="space-form-trailing-period"),
        pytest.param("\\boxed {9}", "9", id="space-before-brace"),
        pytest.param("\\boxed{ 8 }", "8", id="content-stripped"),
        pytest.param("\\boxed{}", "", id="empty-box"),
        pytest.param("\\boxed{2} and \\boxedfoo", "2", id="longer-command-ignored"),
        pytest.param("no box at all", None, id="no-box"),
        pytest.param("", None, id="empty-text"),
        pytest.param("\\boxed{\\frac{1}{2}", None, id="unbalanced"),
        pytest.param("\\boxed{1} and \\boxed{2", None, id="last-unbalanced"),
        pytest.param("\\boxed{1} and finally \\boxed", None, id="bare-command-at-end"),
        pytest.param("\\boxed{\u00e9t\u00e9 \U0001f600}", "\u00e9t\u00e9 \U0001f600", id="unicode"),
        pytest.param("\x00\\boxed{4}\x00", "4", id="nul-bytes-around"),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_only_the_tail_is_searched():
    answer_then_padding = "\\boxed{5}" + "x" * MAX_SEARCH_CHARS
    assert extract_boxed(answer_then_padding) is None
    padding_then_answer = "x" * (10 * MAX_SEARCH_CHARS) + "\\boxed{5}"
    assert extract_boxed(padding_then_answer) == "5"


def test_million_characters_of_open_boxes():
    assert extract_boxed("\\boxed{" * 150_000) is None
    assert extract_boxed("{" * 1_000_000) is None


@pytest.mark.parametrize(
    ("text", "extractor", "expected"),
    [
        pytest.param("x \\boxed{3}", "boxed", "3", id="boxed"),
        pytest.param("x \\boxed{3}", AnswerExtractor.BOXED, "3", id="boxed-enum"),
        pytest.param("2 + 2 = 4\n#### 4", "gsm8k", "4", id="gsm8k"),
        pytest.param("#### 1,000,000", "gsm8k", "1000000", id="gsm8k-commas"),
        pytest.param("#### 1 #### 2\nmore text", "gsm8k", "2", id="gsm8k-last-marker"),
        pytest.param("#### (1,2)", "gsm8k", "(1,2)", id="gsm8k-tuple-comma-kept"),
        pytest.param("no marker", "gsm8k", None, id="gsm8k-missing"),
        pytest.param("  \\frac{1}{2} \n", "raw", "\\frac{1}{2}", id="raw"),
    ],
)
def test_extract_answer(text, extractor, expected):
    assert extract_answer(text, extractor) == expected


@pytest.mark.parametrize("bad", [None, 5, b"\\boxed{5}", ["\\boxed{5}"]])
def test_extract_non_string_raises(bad):
    with pytest.raises(TypeError, match=r"`text` must be a str"):
        extract_boxed(bad)
    with pytest.raises(TypeError, match=r"`text` must be a str"):
        extract_answer(bad)


def test_unknown_extractor_raises():
    with pytest.raises(InvalidArgumentError, match=r"`extractor` must be one of 'boxed'"):
        extract_answer("x", "last_number")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<answer>5</answer>", "5", id="simple"),
        pytest.param("<answer> a b </answer>", "a b", id="stripped"),
        pytest.param("<answer>1</answer> then <answer>2</answer>", "2", id="last-wins"),
        pytest.param("<answer>1</answer> then <answer>2", None, id="last-unclosed"),
        pytest.param("<answer>x\ny</answer> trailing", "x\ny", id="multiline"),
        pytest.param("<Answer>5</Answer>", None, id="case-sensitive"),
        pytest.param("no tags", None, id="no-tag"),
        pytest.param("</answer>5<answer>", None, id="reversed"),
    ],
)
def test_extract_tagged(text, expected):
    assert extract_tagged(text) == expected


def test_extract_tagged_only_searches_the_tail():
    assert extract_tagged("<answer>5</answer>" + "x" * MAX_SEARCH_CHARS) is None
    assert extract_tagged("x" * (3 * MAX_SEARCH_CHARS) + "<answer>5</answer>") == "5"


def test_extract_tagged_other_tag_and_bad_tag():
    assert extract_tagged("<final>9</final>", tag="final") == "9"
    with pytest.raises(InvalidArgumentError, match=r"`tag` must be a tag name"):
        extract_tagged("x", tag="a b")
