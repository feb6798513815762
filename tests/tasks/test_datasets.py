"""DatasetSource / load_benchmark: small files in tmp_path (every error case) and the real files."""

import json
import re
import sys
from pathlib import Path

import pytest

from meds_gym.errors import (
    DataFileError,
    InvalidArgumentError,
    MissingExtraError,
    UnknownProblemError,
)
from meds_gym.tasks.base import Problem, ProblemSource
from meds_gym.tasks.datasets import BENCHMARKS, DatasetSource, load_benchmark

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "benchmarks"


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def from_file(path, **kwargs):
    fields = dict(name="t", question_field="question", answer_field="answer")
    fields.update(kwargs)
    return DatasetSource.from_file(path, **fields)


# ---------------------------------------------------------------------------------------------
# Reading files


def test_jsonl_rows_become_problems_with_index_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "1+1?", "answer": "2", "level": 1}, {"question": "2+2?", "answer": "4"}],
    )
    source = from_file(path)
    assert isinstance(source, ProblemSource)
    assert len(source) == 2
    assert [p.problem_id for p in source] == ["t/0", "t/1"]
    assert source[1] == source.get("t/1")
    assert source[-1].answer == "4"
    assert source[0].metadata == {"level": 1, "line": 1}
    assert source[0].question == "1+1?"


def test_ids_from_id_field(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "q", "answer": "1", "uid": "a"}, {"question": "q", "answer": "2", "uid": 7}],
    )
    source = from_file(path, id_field="uid")
    assert source.problem_ids == ["t/a", "t/7"]


def test_ids_are_stable_across_loads(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": i} for i in range(5)])
    first, second = from_file(path), from_file(path)
    assert first.problem_ids == second.problem_ids
    assert [p.answer for p in first] == ["0", "1", "2", "3", "4"]


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('\n{"question": "q", "answer": "1"}\n\n{"question": "q", "answer": "2"}\n')
    source = from_file(path)
    assert source.problem_ids == ["t/0", "t/1"]
    assert [p.metadata["line"] for p in source] == [2, 4]


def test_json_array_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"question": "q", "answer": "1"}, {"question": "r", "answer": 2}]))
    assert [p.answer for p in from_file(path)] == ["1", "2"]


def test_json_suffix_with_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "d.json", [{"question": "q", "answer": "1"}])
    assert len(from_file(path)) == 1


def test_parquet_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"problem": ["a?", "b?"], "answer": [3.0, 4.5], "id": [10, 11]})
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    source = DatasetSource.from_file(
        path, name="p", question_field="problem", answer_field="answer", id_field="id"
    )
    assert source.problem_ids == ["p/10", "p/11"]
    assert [p.answer for p in source] == ["3", "4.5"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"meds-gym\[datasets\]"):
        from_file(path)


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        from_file(path)


# ---------------------------------------------------------------------------------------------
# Answer fields and extractors


@pytest.mark.parametrize(
    ("answer", "extractor", "gold"),
    [
        pytest.param(
            "so \\boxed{\\frac{1}{2}}. The answer is: 1/2", "boxed", "\\frac{1}{2}", id="boxed"
        ),
        pytest.param("2 + 2 = 4\n#### 1,004", "gsm8k", "1004", id="gsm8k"),
        pytest.param(27.0, "raw", "27", id="integral-float"),
        pytest.param(2.5, "raw", "2.5", id="float"),
        pytest.param(-3, "raw", "-3", id="int"),
        pytest.param(["$\\frac{1}{2}$", "0.5"], "raw", "\\frac{1}{2}", id="list-first-dollars"),
        pytest.param("$69$,$84$", "raw", "69,84", id="inner-dollars"),
        pytest.param("\\$5", "raw", "\\$5", id="escaped-dollar-kept"),
        pytest.param("  (B) ", "raw", "(B)", id="raw-stripped"),
    ],
)
def test_gold_answer_extraction(tmp_path, answer, extractor, gold):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": answer}])
    assert from_file(path, answer_extractor=extractor)[0].answer == gold


def test_field_candidates_are_tried_in_order(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"problem": "p", "answer": "1"}, {"question": "q", "problem": "p2", "answer": "2"}],
    )
    source = from_file(path, question_field=("question", "problem"))
    assert [p.question for p in source] == ["p", "q"]


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataFileError, match=re.escape(str(missing)) + r".*FileNotFoundError"):
        from_file(missing)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataFileError, match="is a directory"):
        from_file(tmp_path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\n")
    with pytest.raises(DataFileError, match=r"unsupported file type '\.csv'"):
        from_file(path)


@pytest.mark.parametrize(
    "content", ["", "\n\n  \n", "[]"], ids=["empty", "blank-lines", "empty-array"]
)
def test_empty_file(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_text(content)
    with pytest.raises(DataFileError, match="holds no rows"):
        from_file(path)


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{"question": oops}\n')
    with pytest.raises(
        DataFileError, match=re.escape(str(path)) + r", line 2: invalid JSON"
    ) as info:
        from_file(path)
    assert info.value.line == 2


def test_bad_json_array(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"question": "q", "answer": "1"},\n oops]')
    with pytest.raises(DataFileError, match=r"line 2: invalid JSON array"):
        from_file(path)


def test_row_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n[1, 2]\n')
    with pytest.raises(DataFileError, match=r"line 2: expected a JSON object, found list"):
        from_file(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"question": "\xff", "answer": "1"}\n')
    with pytest.raises(DataFileError, match="not UTF-8"):
        from_file(path)


def test_missing_question_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}, {"answer": "2"}])
    with pytest.raises(DataFileError, match=r"line 2, field 'question': row has no question"):
        from_file(path)


def test_missing_answer_field_lists_candidates(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q"}])
    with pytest.raises(DataFileError, match=r"line 1, field 'answer \| solution'"):
        from_file(path, answer_field=["answer", "solution"])


@pytest.mark.parametrize(
    ("row", "extractor", "match"),
    [
        pytest.param(
            {"question": "", "answer": "1"}, "raw", "question must be a non-empty", id="q-empty"
        ),
        pytest.param(
            {"question": 5, "answer": "1"}, "raw", "question must be a non-empty", id="q-int"
        ),
        pytest.param(
            {"question": "q", "answer": "  "}, "raw", "gold answer is empty", id="a-blank"
        ),
        pytest.param(
            {"question": "q", "answer": "$$"}, "raw", "gold answer is empty", id="a-dollars"
        ),
        pytest.param(
            {"question": "q", "answer": []}, "raw", "answer must be a string", id="a-empty-list"
        ),
        pytest.param({"question": "q", "answer": {"x": 1}}, "raw", "found dict", id="a-dict"),
        pytest.param({"question": "q", "answer": True}, "raw", "found bool", id="a-bool"),
        pytest.param(
            {"question": "q", "answer": "no box"}, "boxed", "no complete \\\\boxed", id="no-box"
        ),
        pytest.param(
            {"question": "q", "answer": "\\boxed{1"}, "boxed", "no complete", id="open-box"
        ),
        pytest.param(
            {"question": "q", "answer": "no marker"}, "gsm8k", "no '####'", id="no-hashes"
        ),
    ],
)
def test_unusable_row(tmp_path, row, extractor, match):
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataFileError, match=r"line 1.*" + match):
        from_file(path, answer_extractor=extractor)


def test_duplicate_id_names_both_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"question": "q", "answer": "1", "id": 1},
            {"question": "q", "answer": "2", "id": 2},
            {"question": "q", "answer": "3", "id": 1},
        ],
    )
    with pytest.raises(
        DataFileError, match=r"line 3.*duplicate problem id 't/1' \(first at line 1\)"
    ):
        from_file(path, id_field="id")


def test_missing_id_field(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "q", "answer": "1", "id": 1}, {"question": "q", "answer": "2"}],
    )
    with pytest.raises(DataFileError, match=r"line 2, field 'id': missing or invalid row id"):
        from_file(path, id_field="id")
    path = write_jsonl(tmp_path / "e.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(DataFileError, match=r"line 1, field 'id': row has no id field"):
        from_file(path, id_field="id")


def test_unknown_extractor(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(InvalidArgumentError, match="`extractor`"):
        from_file(path, answer_extractor="last_number")


@pytest.mark.parametrize("bad", ["", 5, [], [""]], ids=["empty", "int", "empty-list", "empty-name"])
def test_invalid_field_names(tmp_path, bad):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(InvalidArgumentError, match="`question_field`"):
        from_file(path, question_field=bad)


# ---------------------------------------------------------------------------------------------
# The source itself


def test_get_unknown_id_lists_close_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"question": "q", "answer": str(i)} for i in range(3)]
    )
    source = from_file(path)
    with pytest.raises(
        UnknownProblemError, match=r"Unknown problem_id 't/9'.*Did you mean"
    ) as info:
        source.get("t/9")
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownProblemError):
        source.get(0)  # type: ignore[arg-type]


def test_index_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}])
    source = from_file(path)
    with pytest.raises(IndexError, match="`index` must be in"):
        source[1]
    with pytest.raises(TypeError, match="`index` must be an int"):
        source["0"]  # type: ignore[index]
    assert list(source) == [source[0]]


def test_constructor_rejects_duplicates_and_non_problems():
    problem = Problem("x/1", "q", "1")
    with pytest.raises(InvalidArgumentError, match="unique ids"):
        DatasetSource("x", [problem, problem])
    with pytest.raises(TypeError, match="`problems`"):
        DatasetSource("x", ["not a problem"])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="`name`"):
        DatasetSource("", [problem])


def test_from_hf_without_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'meds-gym\[datasets\]'"):
        DatasetSource.from_hf([], name="x", question_field="question", answer_field="answer")


# ---------------------------------------------------------------------------------------------
# load_benchmark


def test_benchmarks_table():
    assert set(BENCHMARKS) == {"math500", "aime24", "amc23", "minerva", "olympiadbench", "gsm8k"}


def test_unknown_benchmark(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"`benchmark` must be one of 'math500'"):
        load_benchmark("math5000", tmp_path / "x.jsonl")


def test_aime24_format(tmp_path):
    path = write_jsonl(
        tmp_path / "aime24.jsonl",
        [
            {"id": 60, "problem": "Find x.", "answer": "204", "solution": "..."},
            {"id": 61, "problem": "Find y.", "answer": 25, "solution": "..."},
        ],
    )
    source = load_benchmark("aime24", path)
    assert source.problem_ids == ["aime24/60", "aime24/61"]
    assert [p.answer for p in source] == ["204", "25"]
    # A directory holding the usual file name works too.
    assert load_benchmark("aime24", tmp_path).problem_ids == source.problem_ids


def test_benchmark_directory_without_file(tmp_path):
    with pytest.raises(DataFileError, match="directory holds no gsm8k file"):
        load_benchmark("gsm8k", tmp_path)


def test_math500_huggingface_layout(tmp_path):
    # HuggingFaceH4/MATH-500 has `problem` and `solution` (with \boxed) and a `unique_id`.
    path = write_jsonl(
        tmp_path / "math500.jsonl",
        [{"problem": "p", "solution": "so \\boxed{3}", "unique_id": "test/algebra/1.json"}],
    )
    source = load_benchmark("math500", path)
    assert source[0].problem_id == "math500/test/algebra/1.json"
    assert source[0].answer == "3"


# ---------------------------------------------------------------------------------------------
# The real benchmark files (beside the repository in ../shared)

REAL = {  # benchmark -> (file, rows in /work/shared/data/README.md, first gold answer)
    "math500": ("math500.jsonl", 500, "\\left( 3, \\frac{\\pi}{2} \\right)"),
    "gsm8k": ("gsm8k.jsonl", 1319, "18"),
    "amc23": ("amc23.jsonl", 40, "27"),
    "minerva": ("minerva_math.jsonl", 272, "1.6"),
    "olympiadbench": ("olympiadbench.jsonl", 675, "2"),
}


@pytest.mark.parametrize("benchmark", sorted(REAL))
def test_real_benchmark_files(benchmark):
    file_name, rows, first_gold = REAL[benchmark]
    path = DATA_DIR / file_name
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (it ships beside the repository)")
    source = load_benchmark(benchmark, path)
    assert len(source) == rows
    assert source[0].answer == first_gold
    assert all(p.answer.strip() for p in source)
    assert all(p.question.strip() for p in source)
    assert len(set(source.problem_ids)) == rows
    assert all(p.problem_id.startswith(benchmark + "/") for p in source)
    # The directory form finds the same file.
    assert load_benchmark(benchmark, DATA_DIR).problem_ids == source.problem_ids


def test_real_gsm8k_answers_match_the_hash_marker():
    path = DATA_DIR / "gsm8k.jsonl"
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (it ships beside the repository)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    expected = [row["answer"].split("####")[-1].strip().replace(",", "") for row in rows]
    assert [p.answer for p in load_benchmark("gsm8k", path)] == expected
