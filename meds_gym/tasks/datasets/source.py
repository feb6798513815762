"""The public face of the loaders: :class:`DatasetSource`, the known benchmarks and their loader.

:meth:`DatasetSource.from_file`, :meth:`DatasetSource.from_hf` and :func:`load_benchmark` read
rows with :mod:`meds_gym.tasks.datasets.files` and turn them into problems with the options and
row checks of :mod:`meds_gym.tasks.datasets.rows`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meds_gym.errors import DataFileError, InvalidArgumentError, UnknownProblemError, invalid_type
from meds_gym.tasks.base import Problem
from meds_gym.tasks.datasets.files import UnreadableRow, dataset_rows, is_saved_dataset, read_rows
from meds_gym.tasks.datasets.rows import (
    LoadOptions,
    OnBadRow,
    RowError,
    SkippedRow,
    first_present,
    parse_on_bad_row,
    parse_row_id,
    row_gold_answer,
    row_question,
    warn_skipped,
)
from meds_gym.verifiers.extraction import AnswerExtractor

logger = logging.getLogger(__name__)

FieldNames = str | Sequence[str]
"""One field name, or candidate names tried in order in each row (the first one present wins)."""

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
        options = LoadOptions.build(
            name=name,
            question_field=question_field,
            prompt_template=prompt_template,
            answer_field=answer_field,
            answer_extractor=answer_extractor,
            id_field=id_field,
            on_bad_row=on_bad_row,
        )
        file_path = Path(path)
        return _build_source(read_rows(file_path), origin=str(file_path), options=options)

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
        options = LoadOptions.build(
            name=name,
            question_field=question_field,
            prompt_template=prompt_template,
            answer_field=answer_field,
            answer_extractor=answer_extractor,
            id_field=id_field,
            on_bad_row=on_bad_row,
        )
        rows, origin = dataset_rows(dataset_or_path, name=name, split=split)
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
    options = LoadOptions(
        name=benchmark,
        question_fields=spec.question_fields,
        template=None,
        answer_fields=spec.answer_fields,
        answer_extractor=spec.answer_extractor,
        id_fields=spec.id_fields,
        id_required=False,
        on_bad_row=parse_on_bad_row(on_bad_row),
    )
    path = Path(data_path)
    rows: Iterable[tuple[int, Any]]
    origin = str(path)
    if path.is_dir() and is_saved_dataset(path):
        rows, origin = dataset_rows(path, name=benchmark, split=split)
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
        rows = read_rows(path)
    else:
        rows = read_rows(path)
    return _build_source(rows, origin=origin, options=options)


# ----------------------------------------------------------------------------------------------
# Turning rows into problems (shared by from_file, from_hf and load_benchmark)


def _build_source(
    rows: Iterable[tuple[int, Any]], *, origin: str, options: LoadOptions
) -> DatasetSource:
    problems: list[Problem] = []
    skipped: list[SkippedRow] = []
    seen: dict[str, int] = {}
    id_field: str | None = None
    id_resolved = options.id_fields is None
    for index, (number, row) in enumerate(rows):
        try:
            if isinstance(row, UnreadableRow):
                raise RowError(row.reason)
            if not isinstance(row, Mapping):
                raise RowError(f"expected a JSON object, found {type(row).__name__}")
            if not id_resolved and options.id_fields is not None:
                # The first usable row decides which id field every row uses.
                id_field = first_present(row, options.id_fields)
                if id_field is None and options.id_required:
                    raise RowError("row has no id field", " | ".join(options.id_fields))
                id_resolved = True
            question, question_keys = row_question(row, options)
            gold, answer_key = row_gold_answer(row, options)
            if id_field is not None:
                row_id = parse_row_id(row.get(id_field))
                if row_id is None:
                    raise RowError(
                        "missing or invalid row id (expected a string or an integer)", id_field
                    )
                problem_id = f"{options.name}/{row_id}"
            else:
                # The position in the file, skipped rows included: fixing or dropping one bad
                # row never renames the others.
                problem_id = f"{options.name}/{index}"
            if problem_id in seen:
                raise RowError(
                    f"duplicate problem id {problem_id!r} (first at line {seen[problem_id]})",
                    id_field,
                )
        except RowError as error:
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
        warn_skipped(origin, skipped, total=len(problems) + len(skipped))
    logger.debug("read %d %s problems from %s", len(problems), options.name, origin)
    return DatasetSource(options.name, problems, skipped=skipped)
