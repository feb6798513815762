r"""Benchmark loaders: problems read from local JSON Lines, JSON or Parquet files, or datasets.

Nothing is downloaded. A :class:`DatasetSource` holds the problems of one file (or one loaded
``datasets.Dataset``) and implements :class:`meds_gym.tasks.base.ProblemSource`.

Problem ids are ``f"{name}/{row id}"`` when the rows carry an id field (``id_field``, or for a
named benchmark the first of its spec's id fields that the first row has), else
``f"{name}/{index}"`` with the 0-based position of the row in the file (blank lines not counted).
Both are stable across processes and runs as long as the file does not change; a duplicate id is an
error.

Example:
    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
    >>> _ = path.write_text(json.dumps({"question": "1+1?", "answer": r"so \boxed{2}"}) + "\n")
    >>> source = DatasetSource.from_file(path, name="tiny", question_field="question",
    ...                                  answer_field="answer", answer_extractor="boxed")
    >>> source[0].problem_id, source[0].answer
    ('tiny/0', '2')
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meds_gym.errors import (
    DataFileError,
    InvalidArgumentError,
    MissingExtraError,
    UnknownProblemError,
    invalid_type,
)
from meds_gym.tasks.base import Problem
from meds_gym.verifiers.extraction import AnswerExtractor, extract_answer, parse_extractor

logger = logging.getLogger(__name__)

FieldNames = str | Sequence[str]
"""One field name, or candidate names tried in order in each row (the first one present wins)."""

_JSON_SUFFIXES = (".jsonl", ".json")
_PARQUET_SUFFIX = ".parquet"
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark's question, gold answer and id live in its public file format."""

    question_fields: tuple[str, ...]
    """Candidate question fields, tried in order in each row."""
    answer_fields: tuple[str, ...]
    """Candidate gold-answer fields (the answer itself, or a solution it is extracted from)."""
    answer_extractor: AnswerExtractor
    """How the gold answer is read from the answer field."""
    id_fields: tuple[str, ...] = ()
    """Candidate row-id fields; the first one present in the first row is used for every row."""
    file_names: tuple[str, ...] = ()
    """File names looked for when :func:`load_benchmark` is given a directory."""

    def __post_init__(self) -> None:
        if not self.question_fields:
            raise InvalidArgumentError("question_fields", "at least one field name", ())
        if not self.answer_fields:
            raise InvalidArgumentError("answer_fields", "at least one field name", ())


def _file_names(stem: str) -> tuple[str, ...]:
    return tuple(stem + suffix for suffix in (".jsonl", ".json", ".parquet"))


BENCHMARKS: Mapping[str, BenchmarkSpec] = {
    # MATH-500 as in BiRM / PRM800K: `answer` is the full solution, gold is its last \boxed{}.
    "math500": BenchmarkSpec(
        question_fields=("question", "problem"),
        answer_fields=("answer", "solution"),
        answer_extractor=AnswerExtractor.BOXED,
        id_fields=("unique_id", "id", "idx"),
        file_names=_file_names("math500") + _file_names("test"),
    ),
    "aime24": BenchmarkSpec(
        question_fields=("problem", "question"),
        answer_fields=("answer",),
        answer_extractor=AnswerExtractor.RAW,
        id_fields=("id", "idx"),
        file_names=_file_names("aime24") + _file_names("test"),
    ),
    "amc23": BenchmarkSpec(
        question_fields=("problem", "question"),
        answer_fields=("answer",),
        answer_extractor=AnswerExtractor.RAW,
        id_fields=("id", "idx"),
        file_names=_file_names("amc23") + _file_names("test"),
    ),
    # Minerva quantitative reasoning: gold is the last \boxed{} of `solution`.
    "minerva": BenchmarkSpec(
        question_fields=("problem", "question"),
        answer_fields=("solution", "answer"),
        answer_extractor=AnswerExtractor.BOXED,
        id_fields=("idx", "id"),
        file_names=_file_names("minerva_math") + _file_names("minerva") + _file_names("test"),
    ),
    # OlympiadBench: `final_answer` is a list of LaTeX strings; gold is the first, `$` removed.
    "olympiadbench": BenchmarkSpec(
        question_fields=("question", "problem"),
        answer_fields=("final_answer", "answer"),
        answer_extractor=AnswerExtractor.RAW,
        id_fields=("id", "idx"),
        file_names=_file_names("olympiadbench") + _file_names("test"),
    ),
    # GSM8K: gold is the text after `####` of `answer`.
    "gsm8k": BenchmarkSpec(
        question_fields=("question", "problem"),
        answer_fields=("answer",),
        answer_extractor=AnswerExtractor.GSM8K,
        id_fields=("idx", "id"),
        file_names=_file_names("gsm8k") + _file_names("test"),
    ),
}
"""The benchmarks :func:`load_benchmark` knows, by name."""


class DatasetSource:
    """A finite set of benchmark problems with stable ids (a :class:`ProblemSource`).

    Build it with :meth:`from_file`, :meth:`from_hf` or :func:`load_benchmark`; the constructor
    takes already-built problems.

    Args:
        name: Short name, the prefix of problem ids and the name in error messages.
        problems: The problems, in order; their ids must be unique.

    Example:
        >>> from meds_gym.tasks.base import Problem
        >>> source = DatasetSource("demo", [Problem("demo/a", "2+2?", "4")])
        >>> len(source), source.get("demo/a").answer
        (1, '4')
    """

    def __init__(self, name: str, problems: Iterable[Problem]) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("name", "a non-empty str", name)
        self.name = name
        self._problems: list[Problem] = []
        self._index: dict[str, int] = {}
        for problem in problems:
            if not isinstance(problem, Problem):
                raise invalid_type("problems", "an iterable of Problem", problem)
            if problem.problem_id in self._index:
                raise InvalidArgumentError(
                    "problems", "problems with unique ids", problem.problem_id, fix="Rename one."
                )
            self._index[problem.problem_id] = len(self._problems)
            self._problems.append(problem)

    def __len__(self) -> int:
        """Number of problems."""
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        """The problem at ``index`` (negative indices count from the end, as for a list)."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise invalid_type("index", "an int", index)
        if not -len(self._problems) <= index < len(self._problems):
            raise IndexError(
                f"`index` must be in [-{len(self._problems)}, {len(self._problems)}) for "
                f"{self.name!r}; received {index}."
            )
        return self._problems[index]

    def get(self, problem_id: str) -> Problem:
        """The problem with this id.

        Raises:
            UnknownProblemError: If no problem has this id (the message lists close ids).
        """
        position = self._index.get(problem_id) if isinstance(problem_id, str) else None
        if position is None:
            raise UnknownProblemError(problem_id, self._index, source=self.name)
        return self._problems[position]

    def __iter__(self) -> Iterator[Problem]:
        """Iterate over problems in file order."""
        return iter(self._problems)

    def __repr__(self) -> str:
        return f"DatasetSource(name={self.name!r}, problems={len(self._problems)})"

    @property
    def problem_ids(self) -> list[str]:
        """All problem ids, in order."""
        return [problem.problem_id for problem in self._problems]

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str,
        question_field: FieldNames,
        answer_field: FieldNames,
        answer_extractor: str | AnswerExtractor = "raw",
        id_field: FieldNames | None = None,
    ) -> DatasetSource:
        r"""Read problems from a local JSON Lines, JSON array or Parquet file.

        The format is chosen by the suffix: ``.jsonl`` or ``.json`` (JSON Lines, or one JSON array
        of objects) and ``.parquet``.

        Args:
            path: The file.
            name: Short name, the prefix of problem ids.
            question_field: Field holding the question (or candidates, tried in order per row).
            answer_field: Field holding the gold answer or a solution it is extracted from (or
                candidates). A list value gives its first element, a number its decimal text
                (``27.0`` -> ``"27"``).
            answer_extractor: How the gold answer is read from the answer field: ``"raw"`` (the
                text, with ``$`` math delimiters removed), ``"boxed"`` (the last ``\boxed{}``) or
                ``"gsm8k"`` (the text after ``####``).
            id_field: Field holding a row id (or candidates, the first present in the first row is
                used); ``None`` for the row index.

        Raises:
            DataFileError: If the file is missing, unreadable, empty, or a row lacks a field, has
                no extractable answer, or repeats an id (the message names file, line and field).
            MissingExtraError: For a Parquet file when ``pyarrow`` is not installed.
        """
        file_path = Path(path)
        rows = _read_rows(file_path)
        return _build_source(
            rows,
            origin=str(file_path),
            name=name,
            question_fields=_field_names(question_field, "question_field"),
            answer_fields=_field_names(answer_field, "answer_field"),
            answer_extractor=parse_extractor(answer_extractor),
            id_fields=None if id_field is None else _field_names(id_field, "id_field"),
            id_required=id_field is not None,
        )

    @classmethod
    def from_hf(
        cls,
        dataset_or_path: Any,
        *,
        name: str,
        question_field: FieldNames,
        answer_field: FieldNames,
        answer_extractor: str | AnswerExtractor = "raw",
        id_field: FieldNames | None = None,
        split: str | None = None,
    ) -> DatasetSource:
        """Read problems from a ``datasets.Dataset``/``DatasetDict`` or a ``save_to_disk`` folder.

        Nothing is downloaded: a path is opened with ``datasets.load_from_disk``. Rows are handled
        exactly as in :meth:`from_file`; ``line`` in error messages is the 1-based row number.

        Args:
            dataset_or_path: A ``datasets.Dataset``, a ``datasets.DatasetDict`` or the path of a
                directory written by ``save_to_disk``.
            name: Short name, the prefix of problem ids.
            question_field: See :meth:`from_file`.
            answer_field: See :meth:`from_file`.
            answer_extractor: See :meth:`from_file`.
            id_field: See :meth:`from_file`.
            split: The split to read from a ``DatasetDict``; may be omitted if it has one split.

        Raises:
            MissingExtraError: If the ``datasets`` package is not installed.
            InvalidArgumentError: If ``split`` is missing or unknown for a ``DatasetDict``.
            DataFileError: As in :meth:`from_file`.
        """
        rows, origin = _dataset_rows(dataset_or_path, name=name, split=split)
        return _build_source(
            rows,
            origin=origin,
            name=name,
            question_fields=_field_names(question_field, "question_field"),
            answer_fields=_field_names(answer_field, "answer_field"),
            answer_extractor=parse_extractor(answer_extractor),
            id_fields=None if id_field is None else _field_names(id_field, "id_field"),
            id_required=id_field is not None,
        )


def load_benchmark(
    benchmark: str,
    data_path: str | os.PathLike[str],
    *,
    split: str | None = None,
) -> DatasetSource:
    """Load a known benchmark from a local file in its public format (see :data:`BENCHMARKS`).

    Args:
        benchmark: One of ``"math500"``, ``"aime24"``, ``"amc23"``, ``"minerva"``,
            ``"olympiadbench"``, ``"gsm8k"``.
        data_path: A ``.jsonl``/``.json``/``.parquet`` file; or a directory that holds one of the
            benchmark's usual file names (for example ``minerva_math.jsonl``) or that was written by
            ``datasets``' ``save_to_disk`` (needs the ``datasets`` extra).
        split: The split of a saved ``DatasetDict``, if it has several.

    Returns:
        The problems; their ids are ``"<benchmark>/<row id or index>"``.

    Raises:
        InvalidArgumentError: If ``benchmark`` is unknown.
        DataFileError: If the file is missing or malformed (see :meth:`DatasetSource.from_file`).

    Example:
        >>> source = load_benchmark("gsm8k", "data/gsm8k.jsonl")  # doctest: +SKIP
        >>> source[0].answer  # doctest: +SKIP
        '18'
    """
    spec = BENCHMARKS.get(benchmark) if isinstance(benchmark, str) else None
    if spec is None:
        raise InvalidArgumentError(
            "benchmark", "one of " + ", ".join(repr(b) for b in BENCHMARKS), benchmark
        )
    if not isinstance(data_path, (str, os.PathLike)):
        raise invalid_type("data_path", "a str or os.PathLike path", data_path)
    path = Path(data_path)
    rows: Iterable[tuple[int, Any]]
    origin = str(path)
    if path.is_dir() and _is_saved_dataset(path):
        rows, origin = _dataset_rows(path, name=benchmark, split=split)
    elif path.is_dir():
        for file_name in spec.file_names:
            if (path / file_name).is_file():
                path = path / file_name
                break
        else:
            raise DataFileError(
                path,
                f"directory holds no {benchmark} file; looked for "
                + ", ".join(spec.file_names)
                + " and a datasets save_to_disk folder",
            )
        origin = str(path)
        rows = _read_rows(path)
    else:
        rows = _read_rows(path)
    return _build_source(
        rows,
        origin=origin,
        name=benchmark,
        question_fields=spec.question_fields,
        answer_fields=spec.answer_fields,
        answer_extractor=spec.answer_extractor,
        id_fields=spec.id_fields,
        id_required=False,
    )


# ----------------------------------------------------------------------------------------------
# Reading rows


def _field_names(value: Any, parameter: str) -> tuple[str, ...]:
    if isinstance(value, str):
        if not value:
            raise InvalidArgumentError(parameter, "a non-empty field name", value)
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise InvalidArgumentError(parameter, "a field name or a non-empty list of field names", value)


def _is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk``."""
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _dataset_rows(
    dataset_or_path: Any, *, name: str, split: str | None
) -> tuple[Iterator[tuple[int, Any]], str]:
    """The ``(row number, row)`` pairs of a dataset or ``save_to_disk`` folder, and its origin.

    The origin describes the data in error messages.
    """
    try:
        import datasets
    except ImportError as error:
        raise MissingExtraError("Reading a Hugging Face dataset", "datasets", "datasets") from error
    origin = f"dataset {name!r}"
    dataset = dataset_or_path
    if isinstance(dataset_or_path, (str, os.PathLike)):
        directory = Path(dataset_or_path)
        if not directory.is_dir():
            raise DataFileError(
                directory,
                "no such directory (FileNotFoundError); expected a folder written by "
                "datasets' save_to_disk",
            )
        origin = str(directory)
        dataset = datasets.load_from_disk(str(directory))
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset.keys())
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in dataset:
            raise InvalidArgumentError(
                "split", "one of " + ", ".join(repr(s) for s in splits), split
            )
        origin += f" (split {split!r})"
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise invalid_type(
            "dataset_or_path", "a datasets.Dataset, DatasetDict or a directory path", dataset
        )
    return ((number, row) for number, row in enumerate(dataset, start=1)), origin


def _read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line or row number, row)`` pairs of a JSON Lines, JSON array or Parquet file."""
    if not path.exists():
        raise DataFileError(path, "no such file (FileNotFoundError)")
    if path.is_dir():
        raise DataFileError(path, "is a directory, expected a .jsonl, .json or .parquet file")
    suffix = path.suffix.lower()
    if suffix == _PARQUET_SUFFIX:
        return _read_parquet(path)
    if suffix in _JSON_SUFFIXES:
        return _read_json(path)
    raise DataFileError(
        path,
        f"unsupported file type {suffix!r}; expected .jsonl, .json (JSON Lines or an "
        "array) or .parquet",
    )


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(
            path, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from error
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataFileError(
                path, f"invalid JSON array ({error.msg})", line=error.lineno
            ) from error
        if not isinstance(items, list):  # "[1] [2]" style garbage is caught by json.loads
            raise DataFileError(path, "expected a JSON array of objects")
        return iter(list(enumerate(items, start=1)))
    return _json_lines(path, text)


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(
                path, f"invalid JSON ({error.msg} at column {error.colno})", line=number
            ) from error
        yield number, row


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise MissingExtraError("Reading Parquet files", "datasets", "pyarrow") from error
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataFileError(path, f"not a readable Parquet file ({error})") from error
    return iter(list(enumerate(table.to_pylist(), start=1)))


# ----------------------------------------------------------------------------------------------
# Turning rows into problems (shared by from_file, from_hf and load_benchmark)


def _first_present(row: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        if field in row and row[field] is not None:
            return field
    return None


def _answer_text(value: Any) -> str | None:
    """The gold-answer field as text: a list gives its first element, a number its decimal text."""
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        value = value[0]
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


def _strip_math_delimiters(text: str) -> str:
    # Raw answers such as OlympiadBench's "$\frac{1}{2}$" or "$69$,$84$" carry inline-math
    # delimiters; escaped dollars (\$, currency) are kept.
    return _UNESCAPED_DOLLAR.sub("", text).strip()


def _row_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _build_source(
    rows: Iterable[tuple[int, Any]],
    *,
    origin: str,
    name: str,
    question_fields: tuple[str, ...],
    answer_fields: tuple[str, ...],
    answer_extractor: AnswerExtractor,
    id_fields: tuple[str, ...] | None,
    id_required: bool,
) -> DatasetSource:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("name", "a non-empty str", name)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    id_field: str | None = None
    for index, (number, row) in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataFileError(
                origin, f"expected a JSON object, found {type(row).__name__}", line=number
            )
        if index == 0 and id_fields is not None:
            id_field = _first_present(row, id_fields)
            if id_field is None and id_required:
                raise DataFileError(
                    origin, "row has no id field", line=number, field=" | ".join(id_fields)
                )
        question_key = _first_present(row, question_fields)
        if question_key is None:
            raise DataFileError(
                origin, "row has no question field", line=number, field=" | ".join(question_fields)
            )
        question = row[question_key]
        if not isinstance(question, str) or not question.strip():
            raise DataFileError(
                origin, "question must be a non-empty string", line=number, field=question_key
            )
        answer_key = _first_present(row, answer_fields)
        if answer_key is None:
            raise DataFileError(
                origin, "row has no answer field", line=number, field=" | ".join(answer_fields)
            )
        raw_answer = _answer_text(row[answer_key])
        if raw_answer is None:
            raise DataFileError(
                origin,
                "answer must be a string, a number or a non-empty list of them; found "
                f"{type(row[answer_key]).__name__}",
                line=number,
                field=answer_key,
            )
        gold = extract_answer(raw_answer, answer_extractor)
        if gold is not None and answer_extractor is AnswerExtractor.RAW:
            gold = _strip_math_delimiters(gold)
        if not gold:
            what = {
                AnswerExtractor.BOXED: "holds no complete \\boxed{} answer",
                AnswerExtractor.GSM8K: "holds no '####' final answer",
                AnswerExtractor.RAW: "is empty",
            }[answer_extractor]
            raise DataFileError(origin, f"gold answer {what}", line=number, field=answer_key)
        if id_field is not None:
            row_id = _row_id(row.get(id_field))
            if row_id is None:
                raise DataFileError(
                    origin,
                    "missing or invalid row id (expected a string or an integer)",
                    line=number,
                    field=id_field,
                )
            problem_id = f"{name}/{row_id}"
        else:
            problem_id = f"{name}/{index}"
        if problem_id in seen:
            raise DataFileError(
                origin,
                f"duplicate problem id {problem_id!r} (first at line {seen[problem_id]})",
                line=number,
                field=id_field,
            )
        seen[problem_id] = number
        metadata: dict[str, object] = {
            key: value
            for key, value in row.items()
            if key not in (question_key, answer_key) and isinstance(value, _SCALAR_TYPES)
        }
        metadata["line"] = number
        problems.append(
            Problem(problem_id=problem_id, question=question, answer=gold, metadata=metadata)
        )
    if not problems:
        raise DataFileError(origin, "holds no rows (empty file)")
    logger.debug("read %d %s problems from %s", len(problems), name, origin)
    return DatasetSource(name, problems)
