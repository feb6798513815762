"""AnswerAnchor: extract/locate for the three kinds, their parity, and rejected settings."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.errors import InvalidArgumentError
from meds_gym.verifiers import MAX_SEARCH_CHARS, AnchorKind, AnswerAnchor, extract_boxed
from meds_gym.verifiers import parse_anchor as parse_anchor_exported
from meds_gym.verifiers.anchor import parse_anchor
from tests.conftest import FUZZ_EXAMPLES

BOXED = AnswerAnchor.boxed()
TAG = AnswerAnchor.answer_tag()
PATTERN = r"Final answer: (\S+)"
REGEX = AnswerAnchor.from_regex(PATTERN, answer_template="Final answer: {answer}")


def boxed_brace_char_reference(text):
    """The fingerprint position before anchors were a setting: ``{`` of the last literal box."""
    start = text.rfind("\\boxed{")
    return None if start < 0 else start + len("\\boxed{") - 1


# (anchor, text, extracted answer, anchor character at locate) for texts that hold an answer.
ANSWERED = [
    pytest.param(BOXED, "so \\boxed{5}.", "5", "{", id="boxed-simple"),
    pytest.param(BOXED, "\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "{", id="boxed-nested"),
    pytest.param(BOXED, "\\boxed{1} then \\boxed{22}", "22", "{", id="boxed-last-wins"),
    pytest.param(BOXED, "\\boxed{ 8 }", "8", "{", id="boxed-stripped"),
    pytest.param(TAG, "<answer>4</answer>", "4", ">", id="tag-simple"),
    pytest.param(TAG, "<answer>1</answer> no, <answer> 2 </answer>", "2", ">", id="tag-last"),
    pytest.param(TAG, "<answer>a\nb</answer>", "a\nb", ">", id="tag-multiline"),
    pytest.param(TAG, "<answer></answer>", "", ">", id="tag-empty"),
    pytest.param(REGEX, "x Final answer: 12 y", "12", " ", id="regex-simple"),
    pytest.param(REGEX, "Final answer: 1\nFinal answer: 3", "3", " ", id="regex-last"),
]


@pytest.mark.parametrize(("anchor", "text", "answer", "anchor_char"), ANSWERED)
def test_extract_and_locate_agree(anchor, text, answer, anchor_char):
    assert anchor.extract(text) == answer
    index = anchor.locate(text)
    assert index is not None
    assert text[index] == anchor_char
    # The answer starts right after the anchor character (up to the whitespace extract strips).
    assert text[index + 1 :].lstrip().startswith(answer)


@pytest.mark.parametrize("anchor", [BOXED, TAG, REGEX], ids=["boxed", "tag", "regex"])
@pytest.mark.parametrize(
    "text",
    ["", "no anchor here", "the answer is 5", "{5}", "answer: 5", "<answer 5"],
    ids=["empty", "plain", "number", "bare-braces", "colon", "broken-tag"],
)
def test_no_anchor_gives_none(anchor, text):
    assert anchor.extract(text) is None
    assert anchor.locate(text) is None


@pytest.mark.parametrize(
    ("anchor", "text", "anchor_char"),
    [
        pytest.param(BOXED, "so \\boxed{\\frac{1}{2", "{", id="boxed-unclosed"),
        pytest.param(TAG, "so <answer>12", ">", id="tag-unclosed"),
    ],
)
def test_unclosed_answer_is_located_but_not_extracted(anchor, text, anchor_char):
    # A truncated response is wrong, and it still carries a fingerprint (as before anchors).
    assert anchor.extract(text) is None
    assert text[anchor.locate(text)] == anchor_char


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{5}",
        "a \\boxed{1} b \\boxed{2}",
        "\\boxed{1} then \\fbox{3}",
        "\\boxed{\\frac{1}{2}",
        "\\boxed 5",
        "no box",
        "\\boxed{" * 10,
        "",
    ],
)
def test_boxed_locate_is_the_previous_fingerprint_position(text):
    assert BOXED.locate(text) == boxed_brace_char_reference(text)


@pytest.mark.parametrize(
    "text", ["\\boxed{5}", "\\fbox{3}", "\\boxed 5", "\\boxed{\\{1, 2\\}}", "x", "\\boxed{1"]
)
def test_boxed_extract_delegates_to_extract_boxed(text):
    assert BOXED.extract(text) == extract_boxed(text)


def test_regex_anchor_in_a_long_text_indexes_the_whole_text():
    text = "x" * (MAX_SEARCH_CHARS + 50) + "Final answer: 7"
    index = REGEX.locate(text)
    assert text[index] == " " and text[index + 1 :] == "7"
    assert REGEX.extract(text) == "7"


def test_regex_group_at_start_has_no_anchor_character():
    anchor = AnswerAnchor.from_regex(r"^(\d+)$")
    assert anchor.extract("42") == "42"
    assert anchor.locate("42") is None


def test_regex_optional_group_that_did_not_take_part_is_skipped():
    anchor = AnswerAnchor.from_regex(r"ans(?:wer)?(?:=(\d+))?")
    text = "answer=3 and ans"
    assert anchor.extract(text) == "3"
    assert text[anchor.locate(text)] == "="


def test_format_answer_round_trips():
    for anchor in (BOXED, TAG, REGEX):
        response = "reasoning... " + anchor.format_answer("17")
        assert anchor.extract(response) == "17"
        assert anchor.locate(response) is not None


def test_instructions_name_the_format():
    assert "\\boxed{}" in BOXED.instruction
    assert "<answer>" in TAG.instruction
    assert r"Final answer: (\S+)" in REGEX.instruction
    custom = AnswerAnchor.from_regex(r"= (\d+)", instruction="End with '= <number>'.")
    assert custom.instruction == "End with '= <number>'."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, BOXED, id="none-is-boxed"),
        pytest.param("boxed", BOXED, id="boxed"),
        pytest.param("answer_tag", TAG, id="answer-tag"),
        pytest.param(AnchorKind.ANSWER_TAG, TAG, id="kind"),
        pytest.param(REGEX, REGEX, id="instance"),
        pytest.param(
            r"Final answer: (\S+)", AnswerAnchor.from_regex(r"Final answer: (\S+)"), id="re"
        ),
    ],
)
def test_parse_anchor(value, expected):
    assert parse_anchor(value) == expected
    assert parse_anchor_exported is parse_anchor


def test_anchor_is_frozen_and_hashable():
    with pytest.raises(AttributeError):
        BOXED.kind = AnchorKind.REGEX
    assert len({AnswerAnchor.boxed(), AnswerAnchor.boxed(), TAG}) == 2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: parse_anchor(r"no group"), r"`answer_anchor` must be", id="no-group"),
        pytest.param(lambda: parse_anchor(r"(a)(b)"), r"exactly one capture group", id="groups"),
        pytest.param(lambda: parse_anchor("(unclosed"), r"valid regular expression", id="bad-re"),
        pytest.param(lambda: AnswerAnchor.from_regex(""), r"`pattern` must be", id="empty"),
        pytest.param(lambda: AnswerAnchor(kind="latex"), r"`kind` must be one of", id="kind"),
        pytest.param(
            lambda: AnswerAnchor(AnchorKind.BOXED, pattern="(x)"), r"`pattern` must be None", id="p"
        ),
        pytest.param(
            lambda: AnswerAnchor.from_regex("(x)", answer_template="no field"),
            r"`answer_template` must be a string with an '\{answer\}' field",
            id="template",
        ),
        pytest.param(
            lambda: AnswerAnchor.from_regex("(x)").format_answer("1"),
            r"Pass answer_template=",
            id="no-template",
        ),
    ],
)
def test_rejected_settings(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call()


@pytest.mark.parametrize("bad", [None, 5, b"<answer>1</answer>"])
def test_non_string_text_raises(bad):
    for anchor in (BOXED, TAG, REGEX):
        with pytest.raises(TypeError, match=r"`text` must be a str"):
            anchor.extract(bad)
        with pytest.raises(TypeError, match=r"`text` must be a str"):
            anchor.locate(bad)


def test_parse_anchor_rejects_other_types():
    with pytest.raises(TypeError, match=r"`answer_anchor` must be"):
        parse_anchor(3)


@pytest.mark.parametrize("anchor", [BOXED, TAG, AnswerAnchor.from_regex(PATTERN)])
def test_setting_round_trips_through_parse_anchor(anchor):
    assert parse_anchor(anchor.setting) == anchor


# -- properties ---------------------------------------------------------------------------------

# Text rich in anchor fragments, so that partial, nested and repeated anchors are common.
_FRAGMENTS = st.sampled_from(
    ["\\boxed{", "\\boxed", "{", "}", "<answer>", "</answer>", "<", ">", "Final answer: ", " ", "x"]
)
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=3)), max_size=12).map("".join)
_ANSWER = st.text(
    alphabet=st.characters(blacklist_characters="{}\\<>", blacklist_categories=("Cs", "Z", "Cc")),
    min_size=1,
    max_size=8,
)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES)
@given(prefix=_TEXT, answer=_ANSWER)
def test_a_response_ending_in_a_formatted_answer_gives_it_back(prefix, answer):
    for anchor in (BOXED, TAG, REGEX):
        response = prefix + "\n" + anchor.format_answer(answer)
        assert anchor.extract(response) == answer
        index = anchor.locate(response)
        assert response[index + 1 :].lstrip().startswith(answer)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES)
@given(text=_TEXT)
def test_an_extracted_answer_always_has_an_anchor(text):
    for anchor in (TAG, REGEX):
        if anchor.extract(text) is not None:
            assert anchor.locate(text) is not None
    if "\\boxed{" not in text:
        assert BOXED.locate(text) is None
