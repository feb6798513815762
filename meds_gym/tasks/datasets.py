r"""Benchmark loaders: problems read from local JSON Lines, JSON or Parquet files, or datasets.

Nothing is downloaded. A :class:`DatasetSource` holds the problems of one file (or one loaded
``datasets.Dataset``) and implements :class:`meds_gym.tasks.base.ProblemSource`.

Problem ids are ``f"{name}/{row id}"`` when the rows carry an id field (``id_field``, or for a
named benchmark the first of its spec's id fields that the first row has), else
``f"{name}/{index}"`` with the 0-based position of the row in the file (blank lines not counted).
Both are stable across processes and runs as long as the file does not change; a duplicate id is an
error.

The question is one field of the row (``question_field``), or is built from any fields of the row
with a ``str.format`` template (``prompt_template="{Body} {Question}"``).

A row that cannot be used (no question, an empty gold answer, a line that is not JSON, ...) stops
the load with a :class:`~meds_gym.errors.DataFileError` naming file, line and field. With
``on_bad_row="skip"`` such rows are dropped instead: one warning is logged with their count and
reasons, and :attr:`DatasetSource.skipped` lists them. Skipping never shifts the ids of the other
rows (an index id counts skipped rows too).

Example:
    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
    >>> rows = [{"question": "1+1?", "answer": r"so \boxed{2}"}, {"question": "?", "answer": ""}]
    >>> _ = path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    >>> source = DatasetSource.from_file(path, name="tiny", question_field="question",
    ...                                  answer_field="answer", answer_extractor="boxed",
    ...                                  on_bad_row="skip")
    >>> source[0].problem_id, source[0].answer, len(source)
    ('tiny/0', '2', 1)
    >>> print(source.skipped[0])
    line 2, field 'answer': gold answer holds no complete \boxed{} answer
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
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
_TOO_DEEP = "nested too deeply to read (RecursionError)"


class OnBadRow(str, Enum):
    """What a loader does with a row that it cannot turn into a problem."""

    RAISE = "raise"
    """Stop with a :class:`~meds_gym.errors.DataFileError` naming file, line and field."""
    SKIP = "skip"
    """Drop the row, log one warning for the whole load, list it in ``DatasetSource.skipped``."""


@dataclass(frozen=True)
class SkippedRow:
    """A row that a loader dropped under ``on_bad_row="skip"``, and why."""

    line: int
    """1-based line (JSON Lines), array element, or row number (Parquet, ``datasets``)."""
    reason: str
    """What is wrong with the row: the message that ``on_bad_row="raise"`` gives."""
    field: str | None = None
    """The field that is missing or invalid, if one is."""

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"


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
        skipped: The rows a loader dropped under ``on_bad_row="skip"`` (see :attr:`skipped`).

    Example:
        >>> from meds_gym.tasks.base import Problem
        >>> source = DatasetSource("demo", [Problem("demo/a", "2+2?", "4")])
        >>> len(source), source.get("demo/a").answer, source.skipped
        (1, '4', ())
    """

    def __init__(
        self,
        name: str,
        problems: Iterable[Problem],
        *,
        skipped: Iterable[SkippedRow] = (),
    ) -> None:
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
        self._skipped = tuple(skipped)
        for row in self._skipped:
            if not isinstance(row, SkippedRow):
                raise invalid_type("skipped", "an iterable of SkippedRow", row)

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
        skipped = f", skipped={len(self._skipped)}" if self._skipped else ""
        return f"DatasetSource(name={self.name!r}, problems={len(self._problems)}{skipped})"

    @property
    def problem_ids(self) -> list[str]:
        """All problem ids, in order."""
        return [problem.problem_id for problem in self._problems]

    @property
    def skipped(self) -> tuple[SkippedRow, ...]:
        """The rows dropped under ``on_bad_row="skip"``, in file order; empty otherwise."""
        return self._skipped

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str,
        question_field: FieldNames | None = None,
        answer_field: FieldNames,
        answer_extractor: str | AnswerExtractor = "raw",
        id_field: FieldNames | None = None,
        prompt_template: str | None = None,
        on_bad_row: str | OnBadRow = "raise",
    ) -> DatasetSource:
        r"""Read problems from a local JSON Lines, JSON array or Parquet file.

        The format is chosen by the suffix: ``.jsonl`` or ``.json`` (JSON Lines, or one JSON array
        of objects) and ``.parquet``. JSON Lines records end at ``\n`` (or ``\r\n``) only: a raw
        U+2028 or U+0085 inside a string, as ``json.dumps(ensure_ascii=False)`` writes it, is
        text, not a line break. A leading UTF-8 byte-order mark is ignored.

        Args:
            path: The file.
            name: Short name, the prefix of problem ids.
            question_field: Field holding the question (or candidates, tried in order per row: the
                first one present is the question, the others are ignored). Give either this or
                ``prompt_template``.
            answer_field: Field holding the gold answer or a solution it is extracted from (or
                candidates). A list value gives its first element, a number its decimal text
                (``27.0`` -> ``"27"``).
            answer_extractor: How the gold answer is read from the answer field: ``"raw"`` (the
                text, with ``$`` math delimiters removed), ``"boxed"`` (the last ``\boxed{}``) or
                ``"gsm8k"`` (the text after ``####``).
            id_field: Field holding a row id (or candidates, the first present in the first row is
                used); ``None`` for the row index.
            prompt_template: Instead of ``question_field``, a ``str.format`` template that builds
                the question from any fields of the row, such as ``"{Body} {Question}"``. Fields
                are plain row field names (no positional ``{}``, attributes or indexing); their
                values must be strings or numbers; ``{{`` and ``}}`` are literal braces.
            on_bad_row: ``"raise"`` to stop at the first row that cannot be used, or ``"skip"``
                to drop such rows: one warning is logged with their count and reasons, and
                :attr:`skipped` lists them. Whole-file problems (missing, not UTF-8, not a JSON
                array or Parquet file, no usable row) always raise.

        Raises:
            InvalidArgumentError: If an argument is invalid (field names, template, extractor,
                ``on_bad_row``), before the file is read.
            DataFileError: If the file is missing, unreadable, empty, or (with
                ``on_bad_row="raise"``) a row is not JSON, lacks a field, has no extractable
                answer, or repeats an id (the message names file, line and field).
            MissingExtraError: For a Parquet file when ``pyarrow`` is not installed.

        Example:
            >>> import json, pathlib, tempfile
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "mcq.jsonl"
            >>> row = {"Body": "Ann has 3 apples.", "Question": "How many?", "Answer": 3}
            >>> _ = path.write_text(json.dumps(row) + "\n")
            >>> source = DatasetSource.from_file(path, name="mcq", answer_field="Answer",
            ...                                  prompt_template="{Body} {Question}")
            >>> source[0].question, source[0].answer
            ('Ann has 3 apples. How many?', '3')
        """
        options = _LoadOptions.build(
            name=name,
            question_field=question_field,
            prompt_template=prompt_template,
            answer_field=answer_field,
            answer_extractor=answer_extractor,
            id_field=id_field,
            on_bad_row=on_bad_row,
        )
        file_path = Path(path)
        return _build_source(_read_rows(file_path), origin=str(file_path), options=options)

    @classmethod
    def from_hf(
        cls,
        dataset_or_path: Any,
        *,
        name: str,
        question_field: FieldNames | None = None,
        answer_field: FieldNames,
        answer_extractor: str | AnswerExtractor = "raw",
        id_field: FieldNames | None = None,
        split: str | None = None,
        prompt_template: str | None = None,
        on_bad_row: str | OnBadRow = "raise",
    ) -> DatasetSource:
        """Read problems from a ``datasets.Dataset``/``DatasetDict`` or a ``save_to_disk`` folder.

        Nothing is downloaded: a path is opened with ``datasets.load_from_disk``, and a dataset
        object (for example one a user built with ``datasets.Dataset.from_list`` or loaded from
        their own cache) is read as it is. Rows are handled exactly as in :meth:`from_file`;
        ``line`` in error messages is the 1-based row number.

        Args:
            dataset_or_path: A ``datasets.Dataset``, a ``datasets.DatasetDict`` or the path of a
                directory written by ``save_to_disk``.
            name: Short name, the prefix of problem ids.
            question_field: See :meth:`from_file`.
            answer_field: See :meth:`from_file`.
            answer_extractor: See :meth:`from_file`.
            id_field: See :meth:`from_file`.
            split: The split to read from a ``DatasetDict``; may be omitted if it has one split.
            prompt_template: See :meth:`from_file`.
            on_bad_row: See :meth:`from_file`.

        Raises:
            MissingExtraError: If the ``datasets`` package is not installed.
            InvalidArgumentError: If ``split`` is missing or unknown for a ``DatasetDict``, or
                another argument is invalid.
            DataFileError: As in :meth:`from_file`, and for a folder that ``load_from_disk``
                cannot read.

        Example:
            >>> import datasets  # doctest: +SKIP
            >>> rows = [{"problem": "2+2?", "answer": "4"}]
            >>> ds = datasets.Dataset.from_list(rows)  # doctest: +SKIP
            >>> DatasetSource.from_hf(ds, name="mine", question_field="problem",
            ...                       answer_field="answer")[0].answer  # doctest: +SKIP
            '4'
        """
        options = _LoadOptions.build(
            name=name,
            question_field=question_field,
            prompt_template=prompt_template,
            answer_field=answer_field,
            answer_extractor=answer_extractor,
            id_field=id_field,
            on_bad_row=on_bad_row,
        )
        rows, origin = _dataset_rows(dataset_or_path, name=name, split=split)
        return _build_source(rows, origin=origin, options=options)


def load_benchmark(
    benchmark: str,
    data_path: str | os.PathLike[str],
    *,
    split: str | None = None,
    on_bad_row: str | OnBadRow = "raise",
) -> DatasetSource:
    """Load a known benchmark from a local file in its public format (see :data:`BENCHMARKS`).

    Args:
        benchmark: One of ``"math500"``, ``"aime24"``, ``"amc23"``, ``"minerva"``,
            ``"olympiadbench"``, ``"gsm8k"``.
        data_path: A ``.jsonl``/``.json``/``.parquet`` file; or a directory that holds one of the
            benchmark's usual file names (for example ``minerva_math.jsonl``) or that was written by
            ``datasets``' ``save_to_disk`` (needs the ``datasets`` extra).
        split: The split of a saved ``DatasetDict``, if it has several.
        on_bad_row: ``"raise"`` or ``"skip"``, as in :meth:`DatasetSource.from_file`.

    Returns:
        The problems; their ids are ``"<benchmark>/<row id or index>"``.

    Raises:
        InvalidArgumentError: If ``benchmark`` or ``on_bad_row`` is unknown.
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
    options = _LoadOptions(
        name=benchmark,
        question_fields=spec.question_fields,
        template=None,
        answer_fields=spec.answer_fields,
        answer_extractor=spec.answer_extractor,
        id_fields=spec.id_fields,
        id_required=False,
        on_bad_row=_parse_on_bad_row(on_bad_row),
    )
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
    return _build_source(rows, origin=origin, options=options)


# ----------------------------------------------------------------------------------------------
# Arguments


def _field_names(value: Any, parameter: str) -> tuple[str, ...]:
    if isinstance(value, str):
        if not value:
            raise InvalidArgumentError(parameter, "a non-empty field name", value)
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise InvalidArgumentError(parameter, "a field name or a non-empty list of field names", value)


def _parse_on_bad_row(value: Any) -> OnBadRow:
    if isinstance(value, OnBadRow):
        return value
    if isinstance(value, str):
        try:
            return OnBadRow(value)
        except ValueError:
            pass
    raise InvalidArgumentError(
        "on_bad_row",
        "'raise' (stop at the first unusable row) or 'skip' (drop unusable rows and report them)",
        value,
    )


class _RowError(Exception):
    """Why one row cannot become a problem (raised inside :func:`_build_source` only)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _field_list(row: Mapping[Any, Any], limit: int = 20) -> str:
    names = [repr(key) for key in list(row)[: limit + 1]]
    if len(names) > limit:
        names[limit:] = ["..."]
    return ", ".join(names) if names else "none"


class _RowTemplate:
    """A ``str.format`` template over the fields of a row (the ``prompt_template`` argument)."""

    _EXPECTED = "a str.format template over row fields, such as '{Body} {Question}'"

    def __init__(self, template: Any) -> None:
        if not isinstance(template, str) or not template.strip():
            raise InvalidArgumentError("prompt_template", self._EXPECTED, template)
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as error:
            raise InvalidArgumentError(
                "prompt_template",
                f"{self._EXPECTED} ({error})",
                template,
                fix="Write a literal brace as '{{' or '}}'.",
            ) from error
        fields: dict[str, None] = {}
        for _, field, format_spec, conversion in parsed:
            if field is None:
                continue
            if field == "" or field.isdigit() or any(c in field for c in ".[]"):
                raise InvalidArgumentError(
                    "prompt_template",
                    "a template whose fields are plain row field names, such as '{Body} "
                    "{Question}' (no positional '{}', attribute or index access)",
                    template,
                    fix=f"Replace {{{field}}} by {{<name of a row field>}}.",
                )
            if conversion not in (None, "r", "s", "a") or "{" in (format_spec or ""):
                raise InvalidArgumentError(
                    "prompt_template",
                    f"{self._EXPECTED}: conversions '!r', '!s', '!a' and format specs without "
                    "nested fields",
                    template,
                )
            fields[field] = None
        if not fields:
            raise InvalidArgumentError(
                "prompt_template", f"{self._EXPECTED} naming at least one field", template
            )
        self.template = template
        self.fields = tuple(fields)
        """The row fields the template names, in order of first use."""

    def render(self, row: Mapping[str, Any]) -> str:
        """The question of one row.

        Raises:
            _RowError: If a named field is missing, null, not a string or number, or cannot be
                formatted with its format spec.
        """
        values: dict[str, str | int | float] = {}
        for field in self.fields:
            if field not in row:
                raise _RowError(
                    f"prompt_template names field {field!r}, which the row lacks; the row has "
                    f"fields {_field_list(row)}",
                    field,
                )
            value = row[field]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise _RowError(
                    "prompt_template fields must be strings or numbers; found "
                    f"{type(value).__name__}",
                    field,
                )
            values[field] = value
        try:
            return self.template.format_map(values)
        except (ValueError, TypeError) as error:
            raise _RowError(f"prompt_template cannot format this row ({error})") from error


@dataclass(frozen=True)
class _LoadOptions:
    """The validated arguments of one load, shared by from_file, from_hf and load_benchmark."""

    name: str
    question_fields: tuple[str, ...] | None
    template: _RowTemplate | None
    answer_fields: tuple[str, ...]
    answer_extractor: AnswerExtractor
    id_fields: tuple[str, ...] | None
    id_required: bool
    on_bad_row: OnBadRow

    @classmethod
    def build(
        cls,
        *,
        name: Any,
        question_field: Any,
        prompt_template: Any,
        answer_field: Any,
        answer_extractor: Any,
        id_field: Any,
        on_bad_row: Any,
    ) -> _LoadOptions:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("name", "a non-empty str", name)
        if prompt_template is not None and question_field is not None:
            raise InvalidArgumentError(
                "prompt_template",
                "None when question_field is given",
                prompt_template,
                fix="Pass question_field= (one field) or prompt_template= (several fields), "
                "not both.",
            )
        if prompt_template is None and question_field is None:
            raise InvalidArgumentError(
                "question_field",
                "a field name, or prompt_template= to build the question from several fields",
                question_field,
            )
        return cls(
            name=name,
            question_fields=(
                None if question_field is None else _field_names(question_field, "question_field")
            ),
            template=None if prompt_template is None else _RowTemplate(prompt_template),
            answer_fields=_field_names(answer_field, "answer_field"),
            answer_extractor=parse_extractor(answer_extractor),
            id_fields=None if id_field is None else _field_names(id_field, "id_field"),
            id_required=id_field is not None,
            on_bad_row=_parse_on_bad_row(on_bad_row),
        )


# ----------------------------------------------------------------------------------------------
# Reading rows


@dataclass(frozen=True)
class _UnreadableRow:
    """A JSON Lines line that is not JSON: a bad row, which ``on_bad_row="skip"`` may drop."""

    reason: str


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
        try:
            dataset = datasets.load_from_disk(str(directory))
        except RecursionError as error:
            raise DataFileError(directory, f"saved dataset {_TOO_DEEP}") from error
        except Exception as error:  # datasets and pyarrow raise many types for a damaged folder
            raise DataFileError(
                directory,
                f"not a readable datasets save_to_disk folder ({type(error).__name__}: {error})",
            ) from error
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
    return _guarded_rows(dataset, origin), origin


def _guarded_rows(dataset: Iterable[Any], origin: str) -> Iterator[tuple[int, Any]]:
    """Numbered rows of a dataset; a row that cannot be decoded is a :class:`DataFileError`."""
    iterator = iter(dataset)
    number = 0
    while True:
        number += 1
        try:
            row = next(iterator)
        except StopIteration:
            return
        except RecursionError as error:
            raise DataFileError(origin, f"row {_TOO_DEEP}", line=number) from error
        except Exception as error:  # a damaged Arrow file fails while rows are decoded
            raise DataFileError(
                origin, f"cannot decode row ({type(error).__name__}: {error})", line=number
            ) from error
        yield number, row


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
        # Bytes decoded here, not read_text: text mode would turn a lone "\r" into a line break.
        # utf-8-sig: editors on Windows start files with a byte-order mark, which is not JSON.
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFileError(
            path, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from error
    if text.lstrip().startswith("["):
        items = _json_array(path, text)
        if items is not None:
            return iter(list(enumerate(items, start=1)))
    return _json_lines(text)


def _json_array(path: Path, text: str) -> list[Any] | None:
    """The rows of a file that is one JSON array, or None if it is JSON Lines after all."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and "\n" in text[: error.pos]:
            # A complete value, then more: JSON Lines whose first line is an array (a bad row).
            return None
        raise DataFileError(path, f"invalid JSON array ({error.msg})", line=error.lineno) from error
    except RecursionError as error:
        raise DataFileError(path, f"JSON array {_TOO_DEEP}", line=_deepest_line(text)) from error
    except ValueError as error:  # an integer longer than sys.get_int_max_str_digits(), ...
        raise DataFileError(path, f"invalid JSON array ({error})") from error
    if not isinstance(items, list):  # "[1] [2]" style garbage is caught by json.loads
        raise DataFileError(path, "expected a JSON array of objects")
    return items


def _deepest_line(text: str) -> int:
    """The 1-based line where the bracket nesting of a JSON text first reaches its maximum."""
    depth = best_depth = 0
    line = best_line = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > best_depth:
                best_depth, best_line = depth, line
        elif char in "]}":
            depth -= 1
    return best_line


def _json_lines(text: str) -> Iterator[tuple[int, Any]]:
    # JSON Lines ends a record at "\n" only (issue 11): str.splitlines() also breaks at U+2028,
    # U+2029, U+0085, \v, \f, ..., which json.dumps(ensure_ascii=False) writes raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        row: Any
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row = _UnreadableRow(f"invalid JSON ({error.msg} at column {error.colno})")
        except RecursionError:
            row = _UnreadableRow(f"JSON value {_TOO_DEEP}")
        except ValueError as error:  # an integer longer than sys.get_int_max_str_digits(), ...
            row = _UnreadableRow(f"invalid JSON ({error})")
        yield number, row


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise MissingExtraError("Reading Parquet files", "datasets", "pyarrow") from error
    try:
        rows = pq.read_table(path).to_pylist()
    except RecursionError as error:
        raise DataFileError(path, f"Parquet file {_TOO_DEEP}") from error
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataFileError(path, f"not a readable Parquet file ({error})") from error
    return iter(list(enumerate(rows, start=1)))


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


_NO_GOLD = {
    AnswerExtractor.BOXED: "holds no complete \\boxed{} answer",
    AnswerExtractor.GSM8K: "holds no '####' final answer",
    AnswerExtractor.RAW: "is empty",
}


def _question(row: Mapping[str, Any], options: _LoadOptions) -> tuple[str, tuple[str, ...]]:
    """The question of a row and the fields it was built from."""
    if options.template is not None:
        question = options.template.render(row)
        if not question.strip():
            raise _RowError("prompt_template gives an empty question for this row")
        return question, options.template.fields
    fields = options.question_fields or ()  # _LoadOptions.build requires a template or fields
    key = _first_present(row, fields)
    if key is None:
        raise _RowError("row has no question field", " | ".join(fields))
    question = row[key]
    if not isinstance(question, str) or not question.strip():
        raise _RowError("question must be a non-empty string", key)
    return question, (key,)


def _gold_answer(row: Mapping[str, Any], options: _LoadOptions) -> tuple[str, str]:
    """The gold answer of a row and the field it was read from."""
    key = _first_present(row, options.answer_fields)
    if key is None:
        raise _RowError("row has no answer field", " | ".join(options.answer_fields))
    raw_answer = _answer_text(row[key])
    if raw_answer is None:
        raise _RowError(
            "answer must be a string, a number or a non-empty list of them; found "
            f"{type(row[key]).__name__}",
            key,
        )
    gold = extract_answer(raw_answer, options.answer_extractor)
    if gold is not None and options.answer_extractor is AnswerExtractor.RAW:
        gold = _strip_math_delimiters(gold)
    if not gold:
        raise _RowError(f"gold answer {_NO_GOLD[options.answer_extractor]}", key)
    return gold, key


def _build_source(
    rows: Iterable[tuple[int, Any]], *, origin: str, options: _LoadOptions
) -> DatasetSource:
    problems: list[Problem] = []
    skipped: list[SkippedRow] = []
    seen: dict[str, int] = {}
    id_field: str | None = None
    id_resolved = options.id_fields is None
    for index, (number, row) in enumerate(rows):
        try:
            if isinstance(row, _UnreadableRow):
                raise _RowError(row.reason)
            if not isinstance(row, Mapping):
                raise _RowError(f"expected a JSON object, found {type(row).__name__}")
            if not id_resolved and options.id_fields is not None:
                # The first usable row decides which id field every row uses.
                id_field = _first_present(row, options.id_fields)
                if id_field is None and options.id_required:
                    raise _RowError("row has no id field", " | ".join(options.id_fields))
                id_resolved = True
            question, question_keys = _question(row, options)
            gold, answer_key = _gold_answer(row, options)
            if id_field is not None:
                row_id = _row_id(row.get(id_field))
                if row_id is None:
                    raise _RowError(
                        "missing or invalid row id (expected a string or an integer)", id_field
                    )
                problem_id = f"{options.name}/{row_id}"
            else:
                # The position in the file, skipped rows included: fixing or dropping one bad
                # row never renames the others.
                problem_id = f"{options.name}/{index}"
            if problem_id in seen:
                raise _RowError(
                    f"duplicate problem id {problem_id!r} (first at line {seen[problem_id]})",
                    id_field,
                )
        except _RowError as error:
            if options.on_bad_row is OnBadRow.RAISE:
                raise DataFileError(origin, error.reason, line=number, field=error.field) from None
            skipped.append(SkippedRow(line=number, reason=error.reason, field=error.field))
            continue
        seen[problem_id] = number
        used = (*question_keys, answer_key)
        metadata: dict[str, object] = {
            key: value
            for key, value in row.items()
            if key not in used and isinstance(value, _SCALAR_TYPES)
        }
        metadata["line"] = number
        problems.append(
            Problem(problem_id=problem_id, question=question, answer=gold, metadata=metadata)
        )
    if not problems and skipped:
        raise DataFileError(
            origin,
            f"holds no usable row: all {len(skipped)} rows were skipped (on_bad_row='skip'); "
            f"first: {skipped[0]}",
        )
    if not problems:
        raise DataFileError(origin, "holds no rows (empty file)")
    if skipped:
        _warn_skipped(origin, skipped, total=len(problems) + len(skipped))
    logger.debug("read %d %s problems from %s", len(problems), options.name, origin)
    return DatasetSource(options.name, problems, skipped=skipped)


def _warn_skipped(origin: str, skipped: Sequence[SkippedRow], *, total: int) -> None:
    shown = "; ".join(str(row) for row in skipped[:3])
    if len(skipped) > 3:
        shown += f"; and {len(skipped) - 3} more"
    logger.warning(
        "%s: skipped %d of %d rows that cannot be used (on_bad_row='skip'): %s. The loaded "
        "problems leave them out; DatasetSource.skipped lists each one with its reason.",
        origin,
        len(skipped),
        total,
        shown,
    )
