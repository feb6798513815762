r"""Deciding whether a predicted final answer equals the gold answer.

Two paths:

* **Integers** (the answers of GSM8K, AIME, AMC and most toy tasks) are compared exactly as
  digit strings after trimming whitespace, ``$`` delimiters, a leading ``\$`` or ``+``, thousands
  commas (``1,000``) and a trailing ``.0``. No sympy is involved, so this path is fast and cannot
  time out.
* **Everything else** (fractions, radicals, intervals, sets, tuples, degrees, percentages,
  ``\text{}`` answers, expressions) goes through math-verify: both strings are wrapped in
  ``\boxed{}``, parsed with its LaTeX and plain-expression extractors and compared with
  :func:`math_verify.verify` (numeric, then symbolic equality). Where it says equal and a float
  is involved, the two values must also agree to a relative 1e-6, because math-verify rounds
  floats to 6 decimal places (all numbers below 5e-7 would compare equal). math-verify is imported
  on first use, so the integer path does not pay for importing sympy.

Only the whole answer is parsed (math-verify's ``first_match`` extraction): an answer whose LaTeX
does not parse is compared as a string, never through a fragment of it.

Known limitation, from math-verify's LaTeX parser: variable names are case-folded (``N`` and ``n``
are one symbol).

What counts as wrong rather than as an error:

* a predicted answer that is empty, longer than :data:`MAX_ANSWER_CHARS` or has unbalanced
  braces (not parsed at all);
* a predicted answer that math-verify cannot parse, unless its text equals the gold's;
* a comparison that math-verify abandons: by its documented contract (``raise_on_error=False``)
  it reports sympy errors on malformed input as "no parse"/"not equal", and a timeout (for example
  ``9^{9^{9}}``, whose exact value sympy would try to compute) as "not equal".

This module itself catches no exception: a bug here raises instead of becoming a score.

Before parsing, a Unicode minus and degree sign are rewritten as ``-`` and ``^\circ``, and a whole
answer in E notation (``4.5e33``, which math-verify reads as ``4.5 * e * 33``) as
``4.5\times 10^{33}``.

Timeouts: math-verify bounds each parse and each comparison with ``signal.alarm``, which works only
in the main thread and only in whole seconds (``timeout_seconds`` is rounded up). In any other
thread its signal timeout is switched off (``parsing_timeout=None``/``timeout_seconds=None``, its
documented option for threads), so calls from worker threads do not crash, but there only the
length limit bounds the work (a ``RuntimeWarning`` says so once): an answer such as ``9^{9^{9}}``
can keep a worker thread, and through the GIL the whole process, busy for minutes. Run verifiers
in the main thread (or in worker processes) when responses may hold adversarial expressions.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.verifiers.extraction import _BRACE_TOKEN

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1_000
"""A predicted answer longer than this many characters is scored wrong without being parsed."""

# Unicode a model may write for LaTeX notation math-verify understands.
_UNICODE_NOTATION = str.maketrans({"\u2212": "-", "\u00b0": "^\\circ"})
# A whole answer in scientific E notation (4.5e33), which math-verify reads as 4.5 * e * 33.
_E_NOTATION = re.compile(r"([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)[eE]([+-]?\d+)")
_INTEGER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")
_GOLD_CACHE_SIZE = 4096
_RELATIVE_TOLERANCE = 1e-6


def check_timeout(timeout_seconds: Any) -> float:
    """Validate ``timeout_seconds`` (a positive, finite number of seconds) and return it as float.

    Raises:
        InvalidArgumentError: If ``timeout_seconds`` is not a positive finite number.
    """
    if (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, (int, float))
        or not math.isfinite(timeout_seconds)
        or timeout_seconds <= 0
    ):
        raise InvalidArgumentError(
            "timeout_seconds", "a positive, finite number of seconds", timeout_seconds
        )
    return float(timeout_seconds)


def canonical_integer(answer: str) -> str | None:
    r"""The canonical form (sign and digits, no leading zeros) of an integer answer, else ``None``.

    Accepted: surrounding whitespace and ``$``, a leading ``\$`` (currency) or ``+``, a Unicode
    minus, thousands commas in groups of three, and a trailing ``.0`` (``.00``, ...).

    Example:
        >>> canonical_integer(" $-1,000.0$ ")
        '-1000'
        >>> canonical_integer("1/2") is None
        True
    """
    text = answer.translate(_UNICODE_NOTATION).strip().strip("$").strip()
    if text.startswith("\\$"):
        text = text[2:].lstrip()
    match = _INTEGER.fullmatch(text)
    if match is None:
        return None
    sign, digits = match.group(1), match.group(2).replace(",", "").lstrip("0")
    if not digits:
        return "0"
    return ("-" if sign == "-" else "") + digits


def _braces_balanced(text: str) -> bool:
    depth = 0
    for token in _BRACE_TOKEN.finditer(text):
        char = token.group(0)
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_warned_no_timeout = False


def _signal_timeout(timeout_seconds: float) -> int | None:
    """The timeout handed to math-verify: whole seconds in the main thread, ``None`` elsewhere."""
    global _warned_no_timeout
    if threading.current_thread() is threading.main_thread():
        return max(1, math.ceil(timeout_seconds))
    if not _warned_no_timeout:
        _warned_no_timeout = True
        warnings.warn(
            "meds_gym.verifiers is checking a non-integer answer outside the main thread, where "
            "math-verify's signal-based timeout cannot run: an adversarial answer such as "
            "9^{9^{9}} can then keep this process busy for minutes. Verify in the main thread "
            "or in worker processes when responses are untrusted.",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


@functools.lru_cache(maxsize=1)
def _math_verify() -> Any:
    """Import math-verify once (it imports sympy, which takes a while)."""
    import math_verify

    return math_verify


@functools.lru_cache(maxsize=1)
def _extraction_config() -> tuple[Any, ...]:
    math_verify = _math_verify()
    return (
        math_verify.LatexExtractionConfig(boxed_match_priority=0),
        math_verify.ExprExtractionConfig(),
    )


def _normalize_notation(answer: str) -> str:
    """Rewrite notation math-verify misreads: Unicode minus and degree sign, E notation."""
    text = answer.translate(_UNICODE_NOTATION).strip().strip("$").strip()
    match = _E_NOTATION.fullmatch(text)
    if match is not None:
        text = f"{match.group(1)}\\times 10^{{{match.group(2)}}}"
    return text


def _parse(answer: str, timeout: int | None) -> list[Any]:
    """Parse one answer with math-verify: a list of sympy objects and strings, empty if unparsed."""
    # math-verify reads answers out of text; wrapping the bare answer in \boxed{} makes it take the
    # whole answer as one expression. Math delimiters around the answer would end up inside.
    body = _normalize_notation(answer)
    parsed = _math_verify().parse(
        "\\boxed{" + body + "}",
        extraction_config=list(_extraction_config()),
        # "first_match": only the whole boxed answer is parsed. The default ("any_match") goes on
        # to parse fragments when the whole answer fails (a lone "2/3" out of
        # "\frac{1}{3} E_{1}+\frac{2}{3} E_{2}"), and two different answers sharing a fragment
        # would then compare equal.
        extraction_mode="first_match",
        parsing_timeout=timeout,
    )
    return list(parsed)


@functools.lru_cache(maxsize=_GOLD_CACHE_SIZE)
def _parse_gold(gold: str, timeout: int | None) -> tuple[Any, ...]:
    # Gold answers repeat (every rollout of a problem is checked against the same one); sympy
    # objects are immutable, so the parse is cached.
    return tuple(_parse(gold, timeout))


def _float_value(parsed: Sequence[Any]) -> float | None:
    """The value of a parsed answer that is a real number containing a float, else ``None``."""
    import sympy

    expression = parsed[0] if parsed else None
    if not isinstance(expression, sympy.Expr) or not expression.is_number:
        return None
    if not expression.has(sympy.Float):
        return None
    value = expression.evalf(n=20)
    if not isinstance(value, sympy.Float):
        return None  # complex, or a number sympy cannot evaluate
    return float(value)


def _exact_value(parsed: Sequence[Any]) -> float | None:
    """The value of a parsed answer that is a real number (exact or not), else ``None``."""
    import sympy

    expression = parsed[0] if parsed else None
    if not isinstance(expression, sympy.Expr) or not expression.is_number:
        return None
    value = expression.evalf(n=20)
    return float(value) if isinstance(value, sympy.Float) else None


def _relatively_close(gold_parsed: Sequence[Any], predicted_parsed: Sequence[Any]) -> bool:
    """Veto math-verify's float comparison when the two numbers differ relatively.

    math-verify compares a float with another number after rounding both to 6 decimal places, so
    every pair of numbers below 5e-7 compares equal (2.88e-19 "equals" 3.88e-19, a physics answer
    off by a third). When it says equal and one side is a float, the values must also agree to a
    relative 1e-6 (the 6 significant digits its rounding gives numbers near 1).
    """
    gold_float, predicted_float = _float_value(gold_parsed), _float_value(predicted_parsed)
    if gold_float is None and predicted_float is None:
        return True  # no float involved: math-verify compared exactly
    gold_value = gold_float if gold_float is not None else _exact_value(gold_parsed)
    predicted_value = (
        predicted_float if predicted_float is not None else _exact_value(predicted_parsed)
    )
    if gold_value is None or predicted_value is None:
        return True  # not two real numbers (a set, an equation, ...): keep math-verify's verdict
    return math.isclose(gold_value, predicted_value, rel_tol=_RELATIVE_TOLERANCE, abs_tol=0.0)


def _symbolic_equivalent(predicted: str, gold: str, timeout: int | None) -> bool:
    gold_parsed: Sequence[Any] = _parse_gold(gold, timeout)
    if not gold_parsed:
        logger.debug("math-verify could not parse the gold answer %.80r", gold)
        return False
    predicted_parsed = _parse(predicted, timeout)
    if not predicted_parsed:
        return False
    if not _math_verify().verify(list(gold_parsed), predicted_parsed, timeout_seconds=timeout):
        return False
    if "%" in predicted or "%" in gold:
        return True  # percentages: math-verify's value is not the parsed number (50% == 50)
    return _relatively_close(gold_parsed, predicted_parsed)


def is_equivalent(predicted: str, gold: str, *, timeout_seconds: float = 5.0) -> bool:
    r"""Whether the answer ``predicted`` equals the answer ``gold``.

    Integers are compared exactly; anything else goes through math-verify (see the module
    docstring for what is parsed, what counts as wrong, and how the timeout works). The comparison
    is not symmetric in corner cases (math-verify treats ``gold`` as the reference: ``x = 5`` as a
    prediction matches gold ``5``).

    Args:
        predicted: The model's final answer, already extracted (for example by
            :func:`meds_gym.verifiers.extract_boxed`).
        gold: The reference answer.
        timeout_seconds: Time allowed to each math-verify parse and comparison (main thread only;
            rounded up to whole seconds).

    Returns:
        ``True`` if the answers are equivalent; ``False`` if they are not, or if ``predicted``
        cannot be parsed or the comparison timed out.

    Raises:
        TypeError: If ``predicted`` or ``gold`` is not a ``str``.
        InvalidArgumentError: If ``timeout_seconds`` is not a positive finite number.

    Example:
        >>> is_equivalent("1,000", "1000")
        True
        >>> is_equivalent("\\frac{1}{2}", "0.5")
        True
        >>> is_equivalent("2\\sqrt{2}", "\\sqrt{8}")
        True
    """
    if not isinstance(predicted, str):
        raise invalid_type("predicted", "a str", predicted)
    if not isinstance(gold, str):
        raise invalid_type("gold", "a str", gold)
    timeout = check_timeout(timeout_seconds)
    if len(predicted) > MAX_ANSWER_CHARS:
        logger.debug("predicted answer of %d characters scored wrong", len(predicted))
        return False
    predicted_integer = canonical_integer(predicted)
    if predicted_integer is not None:
        gold_integer = canonical_integer(gold)
        if gold_integer is not None:
            return predicted_integer == gold_integer
    if not predicted.strip() or not _braces_balanced(predicted):
        return False
    return _symbolic_equivalent(predicted, gold, _signal_timeout(timeout))
