"""The agents' command lines: every number range-checked, and one-line errors with exit status 2.

Each script's arguments call :func:`check_numbers` in a ``__post_init__`` decorated with
:func:`validator`: every float must be finite (a NaN learning rate or an infinite temperature
never reaches training), every int must be >= 0 unless the script allows less, and the named
fields must lie in their ranges. :func:`run` parses a command line with ``tyro`` and runs the
script; an invalid argument (``InvalidArgumentError``) prints one line naming the flag and exits
with status 2, as ``argparse`` does for a bad flag, instead of a traceback.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from meds_gym.errors import InvalidArgumentError

T = TypeVar("T")

_PARSING: contextvars.ContextVar[bool] = contextvars.ContextVar("agents_cli_parsing", default=False)
"""Set while :func:`run` parses a command line."""


class ArgumentRejected(Exception):
    """An ``InvalidArgumentError`` raised while :func:`run` parses a command line.

    Not a ``ValueError``, so ``tyro`` (which boxes ``ValueError`` into a multi-line panel) lets it
    through to :func:`run`, which prints one line.
    """

    def __init__(self, error: InvalidArgumentError) -> None:
        super().__init__(str(error))
        self.error = error


Range = tuple[float, float, bool, bool]
"""``(low, high, low included, high included)``."""


def at_least(low: float) -> Range:
    """The range ``[low, inf)``."""
    return (low, math.inf, True, False)


def above(low: float) -> Range:
    """The range ``(low, inf)``."""
    return (low, math.inf, False, False)


def between(low: float, high: float) -> Range:
    """The range ``[low, high]``."""
    return (low, high, True, True)


def in_range(value: float, bounds: Range) -> bool:
    """Whether ``value`` is finite and inside ``bounds``."""
    low, high, low_in, high_in = bounds
    return (
        math.isfinite(value)
        and (value >= low if low_in else value > low)
        and (value <= high if high_in else value < high)
    )


def describe(bounds: Range, kind: str = "number") -> str:
    """What a value inside ``bounds`` looks like, for an error message."""
    low, high, _, _ = bounds
    if math.isinf(low) and math.isinf(high):
        return f"a finite {kind}"
    return _describe(bounds, kind)


def _describe(bounds: Range, kind: str) -> str:
    low, high, low_in, high_in = bounds
    if math.isinf(high):
        return f"a finite {kind} {'>=' if low_in else '>'} {low:g}"
    return f"a {kind} in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def validator(method: Callable[[Any], None]) -> Callable[[Any], None]:
    """Decorate an arguments class's ``__post_init__`` so that :func:`run` reports its errors.

    While :func:`run` parses, an ``InvalidArgumentError`` becomes :class:`ArgumentRejected`, which
    ``tyro`` lets through and :func:`run` prints on one line.
    """

    @functools.wraps(method)
    def checked(self: Any) -> None:
        try:
            method(self)
        except InvalidArgumentError as error:
            if _PARSING.get():
                raise ArgumentRejected(error) from None
            raise

    return checked


def check_numbers(obj: Any, ranges: Mapping[str, Range] | None = None, prefix: str = "") -> None:
    """Range-check every number of a dataclass instance (``None`` values are skipped).

    Args:
        obj: The arguments.
        ranges: Field name -> allowed range. Fields not named: floats must be finite, ints >= 0.
        prefix: Prepended to the field names in errors (``"critic."`` for a nested config).

    Raises:
        InvalidArgumentError: Naming the first field out of range.
    """
    ranges = ranges or {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = prefix + field.name
        bounds = ranges.get(field.name)
        kind = "int" if isinstance(value, int) else "number"
        if bounds is None:
            bounds = at_least(0) if isinstance(value, int) else (-math.inf, math.inf, True, True)
        if not in_range(value, bounds):
            raise InvalidArgumentError(name, describe(bounds, kind), value)


def run(kind: Callable[..., T], entry: Callable[[T], Any]) -> Any:
    """Parse the command line into ``kind`` with ``tyro`` and call ``entry`` on it.

    An ``InvalidArgumentError`` (a flag out of range, or a bad value found while running) prints
    ``error: --flag-name: ...`` on one line and exits with status 2.
    """
    import tyro

    token = _PARSING.set(True)
    try:
        args = tyro.cli(kind)
    except ArgumentRejected as rejected:
        _exit(rejected.error)
    finally:
        _PARSING.reset(token)
    from transformers.utils import logging as transformers_logging

    # One bar per model load or save ("Loading weights") would break up the run's own progress.
    transformers_logging.disable_progress_bar()
    try:
        return entry(args)
    except InvalidArgumentError as error:
        _exit(error)


def _exit(error: InvalidArgumentError) -> None:
    flag = "--" + error.name.replace("_", "-")
    message = " ".join(str(error).split())
    print(f"error: {flag}: {message}", file=sys.stderr)
    raise SystemExit(2) from None
