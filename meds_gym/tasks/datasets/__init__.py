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

The package splits by concern: :mod:`~meds_gym.tasks.datasets.source` holds the public face
(:class:`DatasetSource`, :data:`BENCHMARKS`, :func:`load_benchmark`),
:mod:`~meds_gym.tasks.datasets.files` the file formats and their readers, and
:mod:`~meds_gym.tasks.datasets.rows` the load options, prompt templates, row checks and the
report of bad rows.

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

from meds_gym.tasks.datasets.rows import OnBadRow, SkippedRow
from meds_gym.tasks.datasets.source import (
    BENCHMARKS,
    BenchmarkSpec,
    DatasetSource,
    FieldNames,
    load_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "DatasetSource",
    "FieldNames",
    "OnBadRow",
    "SkippedRow",
    "load_benchmark",
]
