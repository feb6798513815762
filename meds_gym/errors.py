"""Errors raised by meds-gym.

Every error says what was wrong, what was expected, what was received and, where there is one, how
to fix it. They subclass the built-in exception a caller would naturally catch (``ValueError``,
``KeyError``, ``ImportError``) so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def _describe(value: Any, limit: int = 80) -> str:
    """A short, safe description of a received value: its type and a truncated repr."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} (type {type(value).__name__})"


class InvalidArgumentError(ValueError):
    """An argument has the wrong value.

    Args:
        name: The parameter's name, as the caller wrote it.
        expected: What a valid value looks like.
        received: The value that was passed.
        fix: Optional advice on how to fix the call.
    """

    def __init__(self, name: str, expected: str, received: Any, fix: str | None = None) -> None:
        self.name = name
        self.expected = expected
        self.received = received
        message = f"`{name}` must be {expected}; received {_describe(received)}."
        if fix:
            message += f" {fix}"
        super().__init__(message)


def invalid_type(name: str, expected: str, received: Any) -> TypeError:
    """A ``TypeError`` that names the parameter, the expected type and the received type."""
    return TypeError(f"`{name}` must be {expected}; received {_describe(received)}.")


class UnknownProblemError(KeyError):
    """A problem id that the source does not hold; the message lists the closest known ids.

    Args:
        problem_id: The id that was asked for.
        known_ids: Ids to search for close matches (a large source may pass a sample).
        source: Name of the source, for the message.
        num_known: Number of problems in the source, when ``known_ids`` is only a sample.
    """

    def __init__(
        self,
        problem_id: str,
        known_ids: Iterable[str],
        source: str = "",
        num_known: int | None = None,
    ) -> None:
        self.problem_id = problem_id
        ids = list(known_ids)
        total = len(ids) if num_known is None else num_known
        close = difflib.get_close_matches(str(problem_id), ids, n=3, cutoff=0.5)
        where = f" in {source}" if source else ""
        message = f"Unknown problem_id {problem_id!r}{where} ({total} problems)."
        if close:
            message += " Did you mean: " + ", ".join(repr(c) for c in close) + "?"
        elif ids:
            message += " Known ids look like: " + ", ".join(repr(c) for c in ids[:3]) + "."
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


class DataFileError(ValueError):
    """A data file that is missing or holds a row that cannot be used.

    Args:
        path: The file.
        problem: What is wrong.
        line: 1-based line (JSONL) or row number (Parquet), if the problem is in one row.
        field: The field that is missing or invalid, if any.
    """

    def __init__(
        self, path: Any, problem: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {package!r}, which is not installed. "
            f"Install it with: pip install 'meds-gym[{extra}]'"
        )


class VerifierError(RuntimeError):
    """The answer checker itself failed (its worker process could not start, or raised).

    Never an answer's fault: a bad answer is scored wrong instead. The message says what failed.
    """


class RemoteEnvError(RuntimeError):
    """A remote env could not be reached, did not answer in time, went away or reported an error.

    The message names the server, what was being done and why. A remote env raises it instead of
    making up a reward.
    """


class CorruptFileError(ValueError):
    """A saved state file that is truncated, corrupt or of an unknown format version."""
