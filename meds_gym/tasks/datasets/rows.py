r"""Rows of a benchmark file: load options, prompt templates, row checks and bad-row reports.

A load's arguments are validated once into :class:`LoadOptions` (question fields or a
``prompt_template``, answer fields and extractor, id fields, :class:`OnBadRow`). Each row is then
checked field by field: :func:`row_question`, :func:`row_gold_answer` and :func:`parse_row_id`
raise :class:`RowError` for a row that cannot become a problem, which the loader turns into a
:class:`~meds_gym.errors.DataFileError` or a :class:`SkippedRow` reported by :func:`warn_skipped`.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from meds_gym.errors import InvalidArgumentError
from meds_gym.verifiers.extraction import AnswerExtractor, extract_answer, parse_extractor

logger = logging.getLogger(__name__)

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


# ----------------------------------------------------------------------------------------------
# Bad rows: what a loader does with them, and the report of the skipped ones


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


def warn_skipped(origin: str, skipped: Sequence[SkippedRow], *, total: int) -> None:
    """Log one warning for a load that skipped rows: their count and the first three reasons."""
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


def parse_on_bad_row(value: Any) -> OnBadRow:
    """The ``on_bad_row`` argument as an :class:`OnBadRow`.

    Raises:
        InvalidArgumentError: If it is neither ``"raise"`` nor ``"skip"``.
    """
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


class RowError(Exception):
    """Why one row cannot become a problem (raised by the row checks, caught by the loader only)."""

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
            RowError: If a named field is missing, null, not a string or number, or cannot be
                formatted with its format spec.
        """
        values: dict[str, str | int | float] = {}
        for field in self.fields:
            if field not in row:
                raise RowError(
                    f"prompt_template names field {field!r}, which the row lacks; the row has "
                    f"fields {_field_list(row)}",
                    field,
                )
            value = row[field]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise RowError(
                    "prompt_template fields must be strings or numbers; found "
                    f"{type(value).__name__}",
                    field,
                )
            values[field] = value
        try:
            return self.template.format_map(values)
        except (ValueError, TypeError) as error:
            raise RowError(f"prompt_template cannot format this row ({error})") from error


@dataclass(frozen=True)
class LoadOptions:
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
    ) -> LoadOptions:
        """Validate the loader arguments of :meth:`DatasetSource.from_file` and ``from_hf``.

        Raises:
            InvalidArgumentError: If an argument is invalid, before any file is read.
        """
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
            on_bad_row=parse_on_bad_row(on_bad_row),
        )


# ----------------------------------------------------------------------------------------------
# Checking one row (shared by from_file, from_hf and load_benchmark)


def first_present(row: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` that the row holds with a non-null value, or None."""
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


def parse_row_id(value: Any) -> str | None:
    """A row id as text (a non-blank string, an integer or an integral float), or None."""
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


def row_question(row: Mapping[str, Any], options: LoadOptions) -> tuple[str, tuple[str, ...]]:
    """The question of a row and the fields it was built from."""
    if options.template is not None:
        question = options.template.render(row)
        if not question.strip():
            raise RowError("prompt_template gives an empty question for this row")
        return question, options.template.fields
    fields = options.question_fields or ()  # LoadOptions.build requires a template or fields
    key = first_present(row, fields)
    if key is None:
        raise RowError("row has no question field", " | ".join(fields))
    question = row[key]
    if not isinstance(question, str) or not question.strip():
        raise RowError("question must be a non-empty string", key)
    return question, (key,)


def row_gold_answer(row: Mapping[str, Any], options: LoadOptions) -> tuple[str, str]:
    """The gold answer of a row and the field it was read from."""
    key = first_present(row, options.answer_fields)
    if key is None:
        raise RowError("row has no answer field", " | ".join(options.answer_fields))
    raw_answer = _answer_text(row[key])
    if raw_answer is None:
        raise RowError(
            "answer must be a string, a number or a non-empty list of them; found "
            f"{type(row[key]).__name__}",
            key,
        )
    gold = extract_answer(raw_answer, options.answer_extractor)
    if gold is not None and options.answer_extractor is AnswerExtractor.RAW:
        gold = _strip_math_delimiters(gold)
    if not gold:
        raise RowError(f"gold answer {_NO_GOLD[options.answer_extractor]}", key)
    return gold, key
