"""Fuzz the dataset loaders (issue 11): any file either loads or raises the documented error.

The loaders document :class:`~meds_gym.errors.DataFileError` for anything wrong with the data and
:class:`~meds_gym.errors.InvalidArgumentError` for a bad argument (here only ``prompt_template``,
which is fuzzed too). Any other exception, a crash, or a loaded source that breaks its invariants
fails the suite. Run the full 1,000 cases per test with ``HYPOTHESIS_PROFILE=fuzz``.
"""

import functools
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from meds_gym.errors import DataFileError, InvalidArgumentError
from meds_gym.tasks.datasets import DatasetSource
from tests.conftest import FUZZ_EXAMPLES

pytestmark = pytest.mark.fuzz

FIELDS = ["question", "answer", "id", "Body", "Question"]
"""Field names the rows draw from, so that many generated rows are usable."""


@contextmanager
def written(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"data{suffix}"
        path.write_bytes(data)
        yield path


def load(path: Path, **kwargs) -> DatasetSource | DataFileError:
    """The loaded source, or the DataFileError it raised; any other exception propagates."""
    fields = {"name": "f", "answer_field": "answer"}
    if "prompt_template" not in kwargs:
        fields["question_field"] = "question"
    fields.update(kwargs)
    try:
        return DatasetSource.from_file(path, **fields)
    except DataFileError as error:
        assert str(path) in str(error)  # every error names the file
        return error


def check_source(source: DatasetSource) -> None:
    """Invariants of every loaded source."""
    assert len(source) >= 1
    ids = source.problem_ids
    assert len(set(ids)) == len(ids)
    lines = [problem.metadata["line"] for problem in source]
    assert lines == sorted(lines)
    assert not set(lines) & {row.line for row in source.skipped}
    for problem in source:
        assert isinstance(problem.question, str) and problem.question.strip()
        assert isinstance(problem.answer, str) and problem.answer
        assert source.get(problem.problem_id) is problem


def check_raise_and_skip_agree(path: Path, **kwargs) -> tuple[object, object]:
    """Load in both modes; skip keeps what raise keeps and lists first the row raise stops at."""
    strict = load(path, **kwargs)
    lenient = load(path, on_bad_row="skip", **kwargs)
    event(f"raise: {'loaded' if isinstance(strict, DatasetSource) else 'DataFileError'}")
    if isinstance(lenient, DatasetSource):
        event("skip: loaded" + (" with skipped rows" if lenient.skipped else ""))
    else:
        event("skip: DataFileError")
    if isinstance(strict, DatasetSource):
        check_source(strict)
        assert isinstance(lenient, DatasetSource) and lenient.skipped == ()
        assert list(lenient) == list(strict)
    elif isinstance(lenient, DatasetSource):
        # raise stopped at a bad row: skip drops it (and any later ones) and lists it first.
        check_source(lenient)
        assert strict.line is not None
        assert lenient.skipped[0].line == strict.line
        assert lenient.skipped[0].field == strict.field
    else:  # both failed: the same whole-file error, or every row was bad
        assert str(lenient) == str(strict) or "holds no usable row" in str(lenient)
    return strict, lenient


# ---------------------------------------------------------------------------------------------
# Arbitrary bytes


@settings(max_examples=FUZZ_EXAMPLES)
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".jsonl", ".json", ".parquet"]))
def test_fuzz_arbitrary_bytes(data, suffix):
    with written(data, suffix) as path:
        check_raise_and_skip_agree(path)


# ---------------------------------------------------------------------------------------------
# JSON Lines built from JSON values, raw separators, blank lines and deep nesting

SEPARATORS = st.sampled_from(["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\r", "\t"])
TEXT = st.text(max_size=30) | st.builds("".join, st.lists(st.text(max_size=5) | SEPARATORS))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
ROWS = st.dictionaries(st.sampled_from(FIELDS) | TEXT, JSON_VALUES, max_size=6) | JSON_VALUES
USABLE_ROWS = st.fixed_dictionaries(
    {"question": TEXT, "answer": st.integers() | TEXT},
    optional={"id": st.integers(0, 5) | TEXT, "Body": SCALARS},
)


@st.composite
def json_lines(draw) -> tuple[bytes, dict[int, object]]:
    """A JSON Lines file and the row each of its non-blank lines holds (None: not JSON)."""
    lines: list[str] = []
    rows: dict[int, object] = {}
    for kind in draw(st.lists(st.sampled_from("uurbdgw"), min_size=0, max_size=12)):
        if kind in "ur":
            row = draw(USABLE_ROWS if kind == "u" else ROWS)
            line = json.dumps(row, ensure_ascii=draw(st.booleans()), allow_nan=True)
            rows[len(lines) + 1] = row
        elif kind == "b":
            line = draw(st.sampled_from(["", "  ", "\t"]))
        elif kind == "d":
            depth = draw(st.integers(1, 200_000))
            line = '{"question": "q", "answer": "1", "x": ' + "[" * depth + "]" * depth + "}"
            rows[len(lines) + 1] = {"question": "q", "answer": "1"}
        elif kind == "g":
            line = draw(st.text(max_size=40)).replace("\n", " ")
            rows[len(lines) + 1] = None
        else:  # a valid row written with its own raw line separators inside strings
            row = {"question": "a" + draw(SEPARATORS) + "b", "answer": "1"}
            line = json.dumps(row, ensure_ascii=False)
            rows[len(lines) + 1] = row
        lines.append(line)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + newline.join(lines) + newline).encode("utf-8", "surrogatepass"), rows


@settings(max_examples=FUZZ_EXAMPLES)
@given(file=json_lines())
def test_fuzz_json_lines(file):
    data, rows = file
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # a lone surrogate from the text strategy: not UTF-8
        rows = None
    with written(data, ".jsonl") as path:
        _, lenient = check_raise_and_skip_agree(path)
        if not isinstance(lenient, DatasetSource) or rows is None:
            return
        if data.decode("utf-8").lstrip("\ufeff").lstrip().startswith("["):
            return  # a first line that is an array may make the file one JSON array
        # Every line that holds a row is either a problem or a skipped row, never lost or split.
        loaded = {problem.metadata["line"]: problem for problem in lenient}
        skipped = {row.line for row in lenient.skipped}
        assert not set(loaded) & skipped
        assert set(loaded) | skipped == set(rows) - _blank_lines(data)
        for line, problem in loaded.items():
            row = rows[line]
            assert isinstance(row, dict) and problem.question == row["question"]


def _blank_lines(data: bytes) -> set[int]:
    text = data.decode("utf-8").lstrip("\ufeff")
    return {number for number, line in enumerate(text.split("\n"), 1) if not line.strip()}


# ---------------------------------------------------------------------------------------------
# JSON arrays


@settings(max_examples=FUZZ_EXAMPLES)
@given(items=st.lists(USABLE_ROWS | ROWS, max_size=8), indent=st.none() | st.integers(0, 2))
def test_fuzz_json_arrays(items, indent):
    text = json.dumps(items, indent=indent, ensure_ascii=False)
    with written(text.encode("utf-8", "surrogatepass"), ".json") as path:
        check_raise_and_skip_agree(path)


# ---------------------------------------------------------------------------------------------
# Prompt templates over arbitrary row fields

VALID_PIECES = st.sampled_from(
    ["{Body}", "{Question}", "{answer}", "{id}", "{Body!r}", "{id:d}", "{Body:>3}", "{{", "}}"]
) | st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=5)
INVALID_PIECES = st.sampled_from(
    ["{}", "{0}", "{", "}", "{Body.x}", "{Body[0]}", "{Body!z}", "{Body:{w}}"]
) | st.text(max_size=5)
TEMPLATES = st.builds("".join, st.lists(VALID_PIECES, min_size=1, max_size=5)) | st.builds(
    "".join, st.lists(VALID_PIECES | INVALID_PIECES, max_size=6)
)
TEMPLATE_ROWS = st.fixed_dictionaries(
    {"Body": TEXT | st.integers() | st.floats(), "Question": TEXT, "answer": st.integers() | TEXT},
    optional={"id": st.integers() | TEXT | st.none()},
)


@settings(max_examples=FUZZ_EXAMPLES)
@given(template=TEMPLATES, rows=st.lists(TEMPLATE_ROWS | ROWS, min_size=1, max_size=6))
def test_fuzz_prompt_templates(template, rows):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    with written(text.encode(), ".jsonl") as path:
        try:
            strict, lenient = check_raise_and_skip_agree(path, prompt_template=template)
        except InvalidArgumentError as error:
            assert "`prompt_template`" in str(error)
            event("template: InvalidArgumentError")
            return
        if isinstance(rows[0], list):
            return  # the first line may make the file one JSON array: rows are its elements
        for source in (strict, lenient):
            if isinstance(source, DatasetSource):
                for problem in source:
                    row = rows[problem.metadata["line"] - 1]
                    assert problem.question == template.format_map(row)


# ---------------------------------------------------------------------------------------------
# Parquet files with damaged bytes


@functools.cache
def _parquet_file() -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "question": ["a?", "b?", "", None],
            "answer": ["1", "", "3", "4"],
            "id": [1, 2, 2, 4],
            "nested": [[1], [2, 3], None, []],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@settings(max_examples=FUZZ_EXAMPLES)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 10_000),
)
def test_fuzz_damaged_parquet(edits, cut):
    data = bytearray(_parquet_file())
    for position, byte in edits:
        data[position % len(data)] = byte
    if cut is not None:
        del data[cut % len(data) :]
    with written(bytes(data), ".parquet") as path:
        check_raise_and_skip_agree(path, id_field="id")
