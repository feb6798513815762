"""Loader rows (issues 11 and 13): line breaks inside strings, deep nesting, bad rows, templates."""

import json
import logging
import re
from pathlib import Path

import gymnasium as gym
import pytest

import meds_gym  # noqa: F401  (registers the env ids)
from meds_gym.errors import DataFileError, InvalidArgumentError
from meds_gym.tasks.datasets import DatasetSource, OnBadRow, SkippedRow, load_benchmark
from tests.conftest import benchmark_file

DEEP = 100_000
"""Nesting depth of the deep values: far past the interpreter's recursion limit."""


def write_jsonl(path: Path, rows, *, ensure_ascii: bool = True) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")
    return path


def from_file(path, **kwargs):
    fields = dict(name="t", answer_field="answer")
    if "prompt_template" not in kwargs:
        fields["question_field"] = "question"
    fields.update(kwargs)
    return DatasetSource.from_file(path, **fields)


def deep_list(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


# ---------------------------------------------------------------------------------------------
# Issue 11: valid JSON Lines that str.splitlines() broke, and values nested too deeply


@pytest.mark.parametrize(
    "separator",
    ["\u2028", "\u2029", "\u0085"],
    ids=["line-separator", "paragraph-separator", "next-line"],
)
def test_raw_unicode_line_breaks_inside_strings_are_text(tmp_path, separator):
    question = f"First line{separator}second line"
    rows = [{"question": question, "answer": "1"}, {"question": "q", "answer": f"2{separator}"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows, ensure_ascii=False)
    assert separator in path.read_text(encoding="utf-8")  # written raw, not escaped
    source = from_file(path)
    assert [p.question for p in source] == [question, "q"]
    assert [p.metadata["line"] for p in source] == [1, 2]


def test_crlf_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "d.jsonl"
    text = '{"question": "a", "answer": "1"}\r\n\r\n{"question": "b", "answer": "2"}\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    source = from_file(path)
    assert [p.question for p in source] == ["a", "b"]
    assert [p.metadata["line"] for p in source] == [1, 3]


def test_lone_carriage_return_is_not_a_line_break(tmp_path):
    # JSON Lines breaks at "\n" only: line numbers match a reader that splits there.
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"question": "a", "answer": "1"}\n\r{"question": "b", "answer": "2"}\n')
    assert [p.metadata["line"] for p in from_file(path)] == [1, 2]
    path.write_bytes(b'{"question": "a", "answer": "1"}\r{"question": "b", "answer": "2"}\n')
    with pytest.raises(DataFileError, match=r"line 1: invalid JSON \(Extra data"):
        from_file(path)


def test_deeply_nested_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"question": "q", "answer": "1"}\n'
        '{"question": "q", "answer": "2", "extra": ' + deep_list() + "}\n"
    )
    with pytest.raises(
        DataFileError, match=re.escape(str(path)) + r", line 2: JSON value nested too deeply"
    ) as info:
        from_file(path)
    assert info.value.line == 2
    assert not isinstance(info.value.__cause__, RecursionError)


def test_deeply_nested_json_array_names_file_and_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"question": "q", "answer": "1"},\n\n {"x": ' + deep_list() + "}]")
    with pytest.raises(
        DataFileError, match=re.escape(str(path)) + r", line 3: JSON array nested too deeply"
    ):
        from_file(path)


def test_deeply_nested_line_can_be_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n' + deep_list() + "\n")
    source = from_file(path, on_bad_row="skip")
    assert len(source) == 1
    assert source.skipped == (
        SkippedRow(2, "JSON value nested too deeply to read (RecursionError)"),
    )


def test_integer_too_long_to_parse_is_a_data_file_error(tmp_path):
    # Python refuses int strings over 4,300 digits with a plain ValueError, not JSONDecodeError.
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "answer": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataFileError, match=r"line 1: invalid JSON \(Exceeds the limit"):
        from_file(path)
    array = tmp_path / "d.json"
    array.write_text('[{"question": "q", "answer": ' + "9" * 5000 + "}]")
    with pytest.raises(DataFileError, match=r"invalid JSON array \(Exceeds the limit"):
        from_file(array)


def test_deeply_nested_parquet_column_is_a_data_file_error(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    value: object = 1
    for _ in range(150):  # pyarrow writes it but refuses to read schemas deeper than 100
        value = [value]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["1"], "deep": [value]}), path)
    with pytest.raises(DataFileError, match=re.escape(str(path)) + ": not a readable Parquet"):
        from_file(path)


def test_recursion_while_decoding_parquet_rows_is_a_data_file_error(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["1"]}), path)

    class TooDeep:
        def to_pylist(self):
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(pq, "read_table", lambda _: TooDeep())
    with pytest.raises(DataFileError, match=re.escape(str(path)) + ": Parquet file nested too"):
        from_file(path)


# ---------------------------------------------------------------------------------------------
# Issue 13: bad rows


def evaluation_set(tmp_path: Path, rows: int = 385, empty=(41, 300)) -> Path:
    """A public-evaluation-set-like file whose answers at the given 0-based rows are empty."""
    data = [
        {"question": f"What is {i} + 1?", "answer": "" if i in empty else str(i + 1)}
        for i in range(rows)
    ]
    return write_jsonl(tmp_path / "eval.jsonl", data)


def test_one_bad_row_refuses_the_file_by_default(tmp_path):
    path = evaluation_set(tmp_path)
    with pytest.raises(DataFileError, match=r"line 42, field 'answer': gold answer is empty"):
        from_file(path)
    with pytest.raises(DataFileError, match="line 42"):
        from_file(path, on_bad_row="raise")


def test_skip_drops_bad_rows_and_reports_them(tmp_path, caplog):
    path = evaluation_set(tmp_path)
    with caplog.at_level(logging.WARNING, logger="meds_gym.tasks.datasets"):
        source = from_file(path, on_bad_row=OnBadRow.SKIP)
    assert len(source) == 383
    assert source.skipped == (
        SkippedRow(line=42, reason="gold answer is empty", field="answer"),
        SkippedRow(line=301, reason="gold answer is empty", field="answer"),
    )
    assert str(source.skipped[0]) == "line 42, field 'answer': gold answer is empty"
    assert "skipped=2" in repr(source)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "skipped 2 of 385 rows" in message and "line 42" in message and "line 301" in message
    # Ids are positions in the file: the rows around a skipped one keep theirs.
    assert "t/41" not in source.problem_ids
    assert source.get("t/42").question == "What is 42 + 1?"
    assert source.get("t/40").answer == "41"


def test_clean_file_has_no_skipped_rows_and_no_warning(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with caplog.at_level(logging.WARNING, logger="meds_gym.tasks.datasets"):
        source = from_file(path, on_bad_row="skip")
    assert source.skipped == () and not caplog.records


BAD_LINES = {
    "not-json": ("{oops", None, "invalid JSON"),
    "not-an-object": ("[1, 2]", None, "expected a JSON object, found list"),
    "no-question": ('{"answer": "1"}', "question", "row has no question field"),
    "empty-question": ('{"question": " ", "answer": "1"}', "question", "question must be"),
    "no-answer": ('{"question": "q"}', "answer", "row has no answer field"),
    "dict-answer": ('{"question": "q", "answer": {}}', "answer", "found dict"),
    "duplicate-id": ('{"question": "q", "answer": "1", "id": 1}', "id", "duplicate problem id"),
    "bad-id": ('{"question": "q", "answer": "1", "id": 1.5}', "id", "missing or invalid row id"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_every_row_error_can_be_skipped(tmp_path, kind):
    line, field, reason = BAD_LINES[kind]
    path = tmp_path / "d.jsonl"
    path.write_text(f'{{"question": "q", "answer": "1", "id": 1}}\n{line}\n')
    with pytest.raises(DataFileError, match=r"line 2.*" + re.escape(reason)):
        from_file(path, id_field="id")
    source = from_file(path, id_field="id", on_bad_row="skip")
    assert source.problem_ids == ["t/1"]
    (skipped,) = source.skipped
    assert (skipped.line, skipped.field) == (2, field) and reason in skipped.reason


def test_skip_resolves_the_id_field_on_the_first_usable_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '[1]\n{"question": "q", "answer": "1"}\n{"question": "r", "answer": "2", "id": "b"}\n'
    )
    source = from_file(path, id_field="id", on_bad_row="skip")
    assert source.problem_ids == ["t/b"]
    assert [(row.line, row.reason) for row in source.skipped] == [
        (1, "expected a JSON object, found list"),
        (2, "row has no id field"),
    ]


def test_all_rows_skipped_is_an_error_that_says_why(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": ""}] * 3)
    with pytest.raises(
        DataFileError,
        match=r"all 3 rows were skipped \(on_bad_row='skip'\); first: line 1, field 'answer'",
    ):
        from_file(path, on_bad_row="skip")


def test_whole_file_errors_raise_even_when_skipping(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"question": "q", "answer": "1"}, oops]')
    with pytest.raises(DataFileError, match="invalid JSON array"):
        from_file(path, on_bad_row="skip")


@pytest.mark.parametrize("bad", ["ignore", "SKIP", None, True], ids=str)
def test_unknown_on_bad_row(tmp_path, bad):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(InvalidArgumentError, match=r"`on_bad_row` must be 'raise'.*or 'skip'"):
        from_file(path, on_bad_row=bad)


def test_benchmark_skip_on_a_real_file_with_blanked_answers(tmp_path):
    rows = [json.loads(line) for line in benchmark_file("amc23").read_text().splitlines()]
    rows[3]["answer"] = ""
    rows[17]["answer"] = None
    path = write_jsonl(tmp_path / "amc23.jsonl", rows, ensure_ascii=False)
    with pytest.raises(DataFileError, match="line 4"):
        load_benchmark("amc23", path)
    source = load_benchmark("amc23", path, on_bad_row="skip")
    assert len(source) == len(rows) - 2
    assert [(row.line, row.field) for row in source.skipped] == [(4, "answer"), (18, "answer")]
    env = gym.make("meds_gym/AMC23-v0", data_path=str(path), on_bad_row="skip")
    assert len(env.unwrapped.source.skipped) == 2


# ---------------------------------------------------------------------------------------------
# Issue 13: questions built from several fields


SVAMP_LIKE = [
    {"Body": "Ann has 3 apples.", "Question": "How many apples?", "Answer": 3, "Type": "x"},
    {"Body": "Bo has 2 pens.", "Question": "How many pens?", "Answer": 2.0, "Type": "y"},
]


def test_prompt_template_formats_from_any_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", SVAMP_LIKE)
    source = from_file(path, prompt_template="{Body} {Question}", answer_field="Answer")
    assert [p.question for p in source] == [
        "Ann has 3 apples. How many apples?",
        "Bo has 2 pens. How many pens?",
    ]
    assert [p.answer for p in source] == ["3", "2"]
    # The fields the question was built from, and the answer, are not repeated as metadata.
    assert source[0].metadata == {"Type": "x", "line": 1}


def test_prompt_template_numbers_format_specs_and_literal_braces(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"a": 3, "b": 0.5, "ans": "1.5", "u": "kg"}])
    source = from_file(path, prompt_template="{{x}}: {a} * {b:.2f} {u!r} = ?", answer_field="ans")
    assert source[0].question == "{x}: 3 * 0.50 'kg' = ?"


def test_prompt_template_missing_field_names_it_and_the_available_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", SVAMP_LIKE)
    with pytest.raises(
        DataFileError,
        match=r"line 1, field 'Boddy': prompt_template names field 'Boddy', which the row lacks; "
        r"the row has fields 'Body', 'Question', 'Answer', 'Type'",
    ):
        from_file(path, prompt_template="{Boddy} {Question}", answer_field="Answer")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(None, "found NoneType", id="null"),
        pytest.param(["a"], "found list", id="list"),
        pytest.param(True, "found bool", id="bool"),
        pytest.param("", "gives an empty question", id="empty"),
    ],
)
def test_prompt_template_unusable_values(tmp_path, value, match):
    path = write_jsonl(tmp_path / "d.jsonl", [{"Body": value, "Answer": "1"}])
    with pytest.raises(DataFileError, match=r"line 1.*" + match):
        from_file(path, prompt_template="{Body}", answer_field="Answer")


def test_prompt_template_format_spec_that_does_not_fit_the_value(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"n": "seven", "Answer": "7"}, {"n": 7, "Answer": "7"}]
    )
    with pytest.raises(DataFileError, match=r"line 1: prompt_template cannot format this row"):
        from_file(path, prompt_template="{n:d}", answer_field="Answer")
    source = from_file(path, prompt_template="{n:d}", answer_field="Answer", on_bad_row="skip")
    assert [p.question for p in source] == ["7"]


@pytest.mark.parametrize(
    ("template", "match"),
    [
        pytest.param("{} {}", "plain row field names", id="positional"),
        pytest.param("{0}", "plain row field names", id="numbered"),
        pytest.param("{Body.upper}", "plain row field names", id="attribute"),
        pytest.param("{Body[0]}", "plain row field names", id="index"),
        pytest.param("{Body", "Write a literal brace", id="unbalanced"),
        pytest.param("no fields", "naming at least one field", id="no-field"),
        pytest.param("{Body!x}", "conversions", id="conversion"),
        pytest.param("{Body:{w}}", "nested fields", id="nested"),
        pytest.param("", "a str.format template", id="empty"),
        pytest.param(5, "a str.format template", id="not-a-str"),
    ],
)
def test_invalid_prompt_templates(tmp_path, template, match):
    path = write_jsonl(tmp_path / "d.jsonl", SVAMP_LIKE)
    with pytest.raises(InvalidArgumentError, match=r"`prompt_template` must be .*" + match):
        from_file(path, prompt_template=template, answer_field="Answer")


def test_question_field_and_prompt_template_are_exclusive(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", SVAMP_LIKE)
    with pytest.raises(InvalidArgumentError, match="not both"):
        from_file(path, question_field="Body", prompt_template="{Body}", answer_field="Answer")
    with pytest.raises(InvalidArgumentError, match=r"`question_field` must be .*prompt_template="):
        DatasetSource.from_file(path, name="t", answer_field="Answer")


# ---------------------------------------------------------------------------------------------
# Dataset-v0


def test_dataset_env_with_a_template_and_skipped_rows(tmp_path):
    rows = [*SVAMP_LIKE, {"Body": "C.", "Question": "?", "Answer": ""}]
    path = write_jsonl(tmp_path / "svamp.jsonl", rows)
    env = gym.make(
        "meds_gym/Dataset-v0",
        data_path=str(path),
        prompt_template="{Body} {Question}",
        answer_field="Answer",
        on_bad_row="skip",
    )
    assert env.unwrapped.source.skipped == (SkippedRow(3, "gold answer is empty", "Answer"),)
    obs, info = env.reset(options={"index": 1})
    assert info["question"] == "Bo has 2 pens. How many pens?"
    assert obs.startswith("Bo has 2 pens. How many pens?\n")
    _, reward, *_ = env.step("\\boxed{2}")
    assert reward == 1.0


def test_dataset_env_refuses_a_list_question_field(tmp_path):
    path = write_jsonl(tmp_path / "svamp.jsonl", SVAMP_LIKE)
    with pytest.raises(
        InvalidArgumentError,
        match=r"`question_field` must be one field name.*prompt_template=\"\{Body\} \{Question\}\"",
    ):
        gym.make(
            "meds_gym/Dataset-v0",
            data_path=str(path),
            question_field=["Body", "Question"],
            answer_field="Answer",
        )


def test_dataset_env_default_question_field_is_unchanged(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "2+2?", "answer": "4"}])
    env = gym.make("meds_gym/Dataset-v0", data_path=str(path))
    assert env.reset(seed=0)[1]["question"] == "2+2?"
    with pytest.raises(DataFileError, match="line 42"):
        gym.make("meds_gym/Dataset-v0", data_path=str(evaluation_set(tmp_path)))
