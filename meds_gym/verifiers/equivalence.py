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
  floats to 6 decimal places (all numbers below 5e-7 would compare equal). math-verify runs in
  a worker process (see Timeouts below); the calling process never imports sympy.

Only the whole answer is parsed (math-verify's ``first_match`` extraction): an answer whose LaTeX
does not parse is compared as a string, never through a fragment of it.

Known limitation, from math-verify's LaTeX parser: variable names are case-folded (``N`` and ``n``
are one symbol).

Equations and inequalities are compared structurally first (same relation, sides proportional,
see :mod:`meds_gym.verifiers.equations`), because math-verify compares them by their real
solutions and calls any two equations without one equal; math-verify decides only where the
structural comparison cannot.

What counts as wrong rather than as an error:

* a predicted answer that is empty, longer than :data:`MAX_ANSWER_CHARS` or has unbalanced
  braces (not parsed at all);
* a predicted answer that the guard refuses as too costly to parse (towers of powers, huge
  exponents, literals or factorials, deep nesting; limits in :mod:`meds_gym.verifiers.guard`),
  logged at INFO;
* a predicted answer that math-verify cannot parse;
* a comparison that math-verify abandons: by its documented contract (``raise_on_error=False``)
  it reports sympy errors on malformed input as "no parse"/"not equal";
* a comparison that does not finish within ``timeout_seconds``, logged as a warning;
* a comparison that raises inside the worker (sympy failing on an odd answer, such as a matrix
  against an equation), logged as a warning with its traceback;
* an undefined number (``0/0.0``, ``1/0``, ``\infty``) against anything: it is never equal.

An answer identical to the gold (after trimming whitespace) is right at once, whatever it
parses to. Equality with tolerance is relative and judged at 30 digits with an unbounded
exponent: huge constants (``10^{400}``) never overflow into a match, and tiny ones
(``10^{-400}``, subnormals) never match merely because both are small. Only a worker that cannot
start raises (:class:`~meds_gym.errors.VerifierError`).

Before parsing, decimal digits of any script (fullwidth ``１``, ...) are read as ASCII digits, a
Unicode or fullwidth minus, plus, full stop or comma as its ASCII form, the degree sign as
``^\circ``, and a whole answer in E notation (``4.5e33``, which math-verify reads as
``4.5 * e * 33``) as ``4.5\times 10^{33}``.

Timeouts: the symbolic comparison runs in a worker process
(:mod:`meds_gym.verifiers.symbolic_worker`) that is killed when ``timeout_seconds`` pass, so the
deadline holds in any thread of any process, with sub-second resolution and without signals. The
integer path and the cheap checks above run in the calling thread.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.verifiers.extraction import braces_balanced
from meds_gym.verifiers.guard import refusal_reason

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1_000
"""A predicted answer longer than this many characters is scored wrong without being parsed."""


_UNICODE_SIGNS = {
    **dict.fromkeys("\u2212\uff0d\ufe63", "-"),  # minus sign, fullwidth and small hyphen-minus
    **dict.fromkeys("\uff0b\ufe62", "+"),
    "\uff0e": ".",
    "\uff0c": ",",
    "\u00b0": "^\\circ",
}


def _ascii_notation(text: str) -> str:
    """Unicode a model may write for ASCII notation, in ASCII.

    Decimal digits of every script (fullwidth ``１``, Arabic-Indic ``١``, ...) become ``0-9``;
    fullwidth and other minus, plus, full stop and comma forms, and the degree sign, their ASCII
    (LaTeX) forms. Only these: a general NFKC fold would turn ``x²`` into ``x2``.
    """
    if text.isascii():
        return text
    out = []
    for char in text:
        sign = _UNICODE_SIGNS.get(char)
        if sign is not None:
            out.append(sign)
        elif unicodedata.category(char) == "Nd":
            out.append(str(unicodedata.decimal(char)))
        else:
            out.append(char)
    return "".join(out)


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
    text = _ascii_notation(answer).strip().strip("$").strip()
    if text.startswith("\\$"):
        text = text[2:].lstrip()
    match = _INTEGER.fullmatch(text)
    if match is None:
        return None
    sign, digits = match.group(1), match.group(2).replace(",", "").lstrip("0")
    if not digits:
        return "0"
    return ("-" if sign == "-" else "") + digits


def _normalize_notation(answer: str) -> str:
    """Rewrite notation math-verify misreads: Unicode minus and degree sign, E notation."""
    text = _ascii_notation(answer).strip().strip("$").strip()
    match = _E_NOTATION.fullmatch(text)
    if match is not None:
        text = f"{match.group(1)}\\times 10^{{{match.group(2)}}}"
    return text


# --- In the worker process (meds_gym.verifiers.symbolic_worker): math-verify and sympy. ---


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


def warm_up() -> None:
    """Import math-verify and sympy and run one comparison, so the first real one is not slow."""
    symbolic_equivalent("\\frac{1}{2}", "0.5")


def _parse(answer: str) -> list[Any]:
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
        # No signal.alarm: the worker process is killed from outside when the deadline passes.
        parsing_timeout=None,
    )
    return list(parsed)


@functools.lru_cache(maxsize=_GOLD_CACHE_SIZE)
def _parse_gold(gold: str) -> tuple[Any, ...]:
    # Gold answers repeat (every rollout of a problem is checked against the same one); sympy
    # objects are immutable, so the parse is cached (per worker process).
    return tuple(_parse(gold))


def _has_float(parsed: Sequence[Any]) -> bool:
    import sympy

    return bool(parsed) and isinstance(parsed[0], sympy.Expr) and parsed[0].has(sympy.Float)


_UNDEFINED = object()
"""What :func:`_value` gives for a number expression with no value (``0/0.0``, ``1/0``, ``oo``)."""


def _value(parsed: Sequence[Any]) -> Any:
    """A parsed number's value at 30 digits (a sympy number), :data:`_UNDEFINED`, or ``None``.

    ``None`` when the answer is not a number expression (a set, an equation, ...). sympy's
    (mpmath's) floats have an unbounded exponent, so ``10^{400}`` and ``10^{-400}`` keep their
    values where a Python float would overflow to infinity or underflow to zero.
    """
    import sympy

    expression = parsed[0] if parsed else None
    if not isinstance(expression, sympy.Expr) or not expression.is_number:
        return None
    infinities = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
    if expression.has(*infinities):
        return _UNDEFINED
    try:
        value = expression.evalf(n=30)
    except (ArithmeticError, ValueError, TypeError):
        return _UNDEFINED
    return _UNDEFINED if value.has(*infinities) else value


@functools.lru_cache(maxsize=_GOLD_CACHE_SIZE)
def _gold_value(gold: str) -> Any:
    """:func:`_value` of a gold answer, cached like its parse (per worker process)."""
    return _value(_parse_gold(gold))


def _numbers_agree(
    gold_parsed: Sequence[Any],
    predicted_parsed: Sequence[Any],
    gold_value: Any,
    predicted_value: Any,
) -> bool:
    """Veto math-verify's "equal" when two numbers differ, judged at 30 digits with no overflow.

    math-verify compares numbers after rounding them to 6 decimal places, so every pair below
    5e-7 compares equal (2.88e-19 "equals" 3.88e-19, a physics answer off by a third, and
    ``10^{-400}`` "equals" ``10^{-300}``), and values beyond float range overflow. When it says
    equal and both answers are numbers, they must also agree: to a relative 1e-6 when a float is
    involved (the 6 significant digits its rounding gives numbers near 1), and exactly (up to the
    30-digit evaluation's error) when both are exact. The values are :func:`_value`'s.
    """
    if gold_value is None or predicted_value is None:
        return True  # not two numbers (a set, an equation, ...): keep math-verify's verdict
    floats = _has_float(gold_parsed) or _has_float(predicted_parsed)
    # On top of the tolerance, the error of the values themselves: a float literal is read as a
    # binary float (relative error 1.1e-16; 0.333333 against 1/3 sits right at 1e-6), an exact
    # number is evaluated to 30 digits.
    tolerance = _RELATIVE_TOLERANCE + 1e-15 if floats else 1e-20
    difference = abs(gold_value - predicted_value)
    scale = max(abs(gold_value), abs(predicted_value))
    return bool(difference <= tolerance * scale)


def symbolic_equivalent(predicted: str, gold: str) -> bool:
    """The symbolic comparison, without any deadline: runs inside a verifier worker process.

    Relations are compared structurally first; then math-verify decides, with the float veto.
    """
    from meds_gym.verifiers.equations import compare_relations

    gold_parsed: Sequence[Any] = _parse_gold(gold)
    if not gold_parsed:
        logger.debug("math-verify could not parse the gold answer %.80r", gold)
        return False
    predicted_parsed = _parse(predicted)
    if not predicted_parsed:
        return False
    gold_value, predicted_value = _gold_value(gold), _value(predicted_parsed)
    if gold_value is _UNDEFINED or predicted_value is _UNDEFINED:
        return False  # an undefined value is never equal to anything (math-verify's verdict varies)
    structural = compare_relations(gold_parsed[0], predicted_parsed[0])
    if structural is not None:
        return structural
    if not _math_verify().verify(list(gold_parsed), predicted_parsed, timeout_seconds=None):
        return False
    if "%" in predicted or "%" in gold:
        return True  # percentages: math-verify's value is not the parsed number (50% == 50)
    return _numbers_agree(gold_parsed, predicted_parsed, gold_value, predicted_value)


# --- In the calling process. ---


def _compare_symbolically(predicted: str, gold: str, timeout_seconds: float) -> bool:
    """Run :func:`symbolic_equivalent` in a worker process, scoring a missed deadline wrong."""
    from meds_gym.verifiers.symbolic_worker import default_pool

    verdict = default_pool().compare(predicted, gold, timeout_seconds)
    if verdict is None:
        logger.warning(
            "answer comparison did not finish within %.3g s and is scored wrong "
            "(predicted %.80r, gold %.80r); its worker process was restarted",
            timeout_seconds,
            predicted,
            gold,
        )
        return False
    return verdict


def is_equivalent(predicted: str, gold: str, *, timeout_seconds: float = 5.0) -> bool:
    r"""Whether the answer ``predicted`` equals the answer ``gold``.

    Integers are compared exactly in the calling thread; anything else is checked by the guard,
    then compared in a verifier worker process under a hard deadline (see the module docstring
    for what is parsed, what counts as wrong, and how the timeout works). The comparison is not
    symmetric in corner cases (math-verify treats ``gold`` as the reference: ``x = 5`` as a
    prediction matches gold ``5``).

    Safe to call from any thread and any process (including daemonic ones such as data loader
    workers).

    Args:
        predicted: The model's final answer, already extracted (for example by
            :func:`meds_gym.verifiers.extract_boxed`).
        gold: The reference answer.
        timeout_seconds: Time allowed to the symbolic comparison (both parses and the
            comparison), counted from when a worker receives it; any positive number of seconds.

    Returns:
        ``True`` if the answers are equivalent; ``False`` if they are not, if ``predicted``
        cannot be parsed or is refused by the guard, or if the comparison timed out.

    Raises:
        TypeError: If ``predicted`` or ``gold`` is not a ``str``.
        InvalidArgumentError: If ``timeout_seconds`` is not a positive finite number.
        VerifierError: If the verifier worker cannot start (never an answer's fault).

    Example:
        >>> is_equivalent("1,000", "1000")
        True
        >>> is_equivalent("\\frac{1}{2}", "0.5")
        True
        >>> is_equivalent("2\\sqrt{2}", "\\sqrt{8}")
        True
        >>> is_equivalent("x^2+1=0", "x^2+2=0")
        False
    """
    if not isinstance(predicted, str):
        raise invalid_type("predicted", "a str", predicted)
    if not isinstance(gold, str):
        raise invalid_type("gold", "a str", gold)
    timeout = check_timeout(timeout_seconds)
    if predicted.strip() == gold.strip() and predicted.strip():
        return True  # the gold itself, character for character: right, whatever it parses to
    if len(predicted) > MAX_ANSWER_CHARS:
        logger.debug("predicted answer of %d characters scored wrong", len(predicted))
        return False
    predicted_integer = canonical_integer(predicted)
    if predicted_integer is not None:
        gold_integer = canonical_integer(gold)
        if gold_integer is not None:
            return predicted_integer == gold_integer
    if not predicted.strip() or not braces_balanced(predicted):
        return False
    reason = refusal_reason(_normalize_notation(predicted))
    if reason is not None:
        logger.info("predicted answer %.80r refused and scored wrong: %s", predicted, reason)
        return False
    return _compare_symbolically(predicted, gold, timeout)
