r"""A cheap guard that refuses absurd answers before they reach sympy.

sympy evaluates integer powers, factorials and binomials exactly as soon as it builds them, so a
short answer can ask for an astronomically large number: ``9^{9^{9}}`` has 370 million digits,
``10^{10^{100}}`` cannot be written down at all, ``1e999999999`` (read as
``1\times 10^{999999999}``) neither. Deep nesting makes the LaTeX parser recurse for every level.
:func:`refusal_reason` looks at the text alone (one linear scan and a few regular expressions, no
sympy) and names the first of these it finds:

* brackets (``{}``, ``()``, ``[]``, ``\{\}``) nested deeper than :data:`MAX_NESTING_DEPTH`;
* an integer literal with more than :data:`MAX_LITERAL_DIGITS` digits;
* an integer in an exponent larger than :data:`MAX_EXPONENT` (``10^{99999}``);
* a tower of numeric powers whose inner power is larger than :data:`MAX_EXPONENT`
  (``9^{9^{9}}``, ``9^9^9``, ``x^{10^{100}}``), or that cannot be estimated from the text and holds
  no variable (``2^{\pi^{2}}`` is refused; ``2^{2^{n}}`` and ``2^{3^{2}}`` are not);
* a factorial or binomial of an integer larger than :data:`MAX_COMBINATORIAL_ARGUMENT`.

The limits sit far above anything in the bundled benchmark answers (at most 4 levels of nesting,
exponents up to 2^{1009}, 100!). The guard is a first line only: what it lets through still runs
under the verifier's hard deadline (:mod:`meds_gym.verifiers.symbolic_worker`).
"""

from __future__ import annotations

import math
import re

MAX_NESTING_DEPTH = 20
r"""Deepest allowed nesting of ``{}``, ``()``, ``[]`` and ``\{\}`` in an answer."""
MAX_LITERAL_DIGITS = 500
"""Longest allowed integer literal (digits) in an answer that is not a plain integer."""
MAX_EXPONENT = 10_000
"""Largest allowed integer in an exponent, and largest allowed inner power of an exponent tower."""
MAX_COMBINATORIAL_ARGUMENT = 10_000
r"""Largest allowed integer before ``!`` or inside ``\binom``."""

_BRACKET_TOKEN = re.compile(r"\\[{}]|\\.|[{}()\[\]]", re.DOTALL)
_OPENERS = frozenset(["{", "(", "[", "\\{"])
_CLOSERS = frozenset(["}", ")", "]", "\\}"])
_DIGITS = re.compile(r"\d+")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_LETTER = re.compile(r"[A-Za-z]")
_FACTORIAL = re.compile(r"(\d+)\s*!")
_BINOMIAL = re.compile(r"\\[dt]?binom\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
# The inner power of a tower that the guard can estimate: an integer to an integer power.
_SIMPLE_POWER = re.compile(r"\s*(\d+)\s*\^\s*(?:\{\s*(\d+)\s*\}|(\d+))\s*")
_CLOSING = {"{": "}", "(": ")"}


def _integer_exceeds(digits: str, limit: int) -> bool:
    """Whether the digit string ``digits`` is an integer above ``limit`` (never int() on huge)."""
    digits = digits.lstrip("0")
    if len(digits) > len(str(limit)):
        return True
    return int(digits or "0") > limit


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for token in _BRACKET_TOKEN.finditer(text):
        bracket = token.group(0)
        if bracket in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in _CLOSERS:
            depth = max(depth - 1, 0)
    return deepest


def _operand_end(text: str, start: int) -> int:
    """End (exclusive) of the exponent operand that starts at ``start`` (after ``^``)."""
    index = start
    while index < len(text) and text[index].isspace():
        index += 1
    if index >= len(text):
        return index
    char = text[index]
    if char in _CLOSING:
        # A group: to its matching closing bracket (nesting is already bounded), or to the end.
        close, depth = _CLOSING[char], 0
        position = index
        while position < len(text):
            current = text[position]
            if current == "\\":
                position += 2
                continue
            if current == char:
                depth += 1
            elif current == close:
                depth -= 1
                if depth == 0:
                    return position + 1
            position += 1
        return len(text)
    if char == "\\":
        command = _COMMAND.match(text, index)
        return command.end() if command else index + 2
    if char.isdigit():
        digits = _DIGITS.match(text, index)
        return digits.end() if digits else index + 1
    return index + 1


def _is_numeric(text: str) -> bool:
    """Whether ``text`` holds no variable (LaTeX commands such as ``\\pi`` do not count)."""
    return _LETTER.search(_COMMAND.sub("", text)) is None


def _tower_reason(inner: str) -> str | None:
    """Why an exponent ``inner`` that itself holds a power is refused, else ``None``."""
    simple = _SIMPLE_POWER.fullmatch(inner)
    if simple is not None:
        base, exponent = simple.group(1), simple.group(2) or simple.group(3)
        if _integer_exceeds(exponent, MAX_EXPONENT):
            return f"an exponent tower with an inner exponent above {MAX_EXPONENT}"
        base_value = int(base.lstrip("0") or "0") if len(base) <= MAX_LITERAL_DIGITS else 10
        if base_value <= 1:
            return None
        if int(exponent) * math.log10(base_value) > math.log10(MAX_EXPONENT):
            return f"an exponent tower whose inner power exceeds {MAX_EXPONENT}"
        return None
    if _is_numeric(inner):
        return "a tower of numeric powers"
    return None


def _exponent_reason(text: str) -> str | None:
    for caret in re.finditer(r"\^", text):
        end = _operand_end(text, caret.end())
        # "9^9^9" (a chain) parses as 9^(9^9): the exponent runs on through the next carets.
        while True:
            rest = end
            while rest < len(text) and text[rest].isspace():
                rest += 1
            if rest >= len(text) or text[rest] != "^":
                break
            end = _operand_end(text, rest + 1)
        exponent = text[caret.end() : end]
        for digits in _DIGITS.findall(exponent):
            if _integer_exceeds(digits, MAX_EXPONENT):
                return f"an exponent holding an integer above {MAX_EXPONENT}"
        if "^" in exponent:
            stripped = exponent.strip()
            if stripped[:1] in _CLOSING and stripped[-1:] == _CLOSING[stripped[0]]:
                stripped = stripped[1:-1]
            reason = _tower_reason(stripped)
            if reason is not None:
                return reason
    return None


def _combinatorial_reason(text: str) -> str | None:
    for match in _FACTORIAL.finditer(text):
        if _integer_exceeds(match.group(1), MAX_COMBINATORIAL_ARGUMENT):
            return f"a factorial of an integer above {MAX_COMBINATORIAL_ARGUMENT}"
    for match in _BINOMIAL.finditer(text):
        for argument in match.groups():
            if any(
                _integer_exceeds(digits, MAX_COMBINATORIAL_ARGUMENT)
                for digits in _DIGITS.findall(argument)
            ):
                return f"a binomial of an integer above {MAX_COMBINATORIAL_ARGUMENT}"
    return None


def refusal_reason(answer: str) -> str | None:
    r"""Why ``answer`` is too costly to hand to sympy, or ``None`` if it may be parsed.

    Linear in the length of ``answer`` (which the caller bounds); imports nothing.

    Args:
        answer: A final answer, after notation rewriting (E notation already written as
            ``\times 10^{...}``, ``**`` as ``^`` is handled here).

    Returns:
        A short reason naming the limit that was hit, or ``None``.

    Example:
        >>> refusal_reason("9^{9^{9}}")
        'an exponent tower whose inner power exceeds 10000'
        >>> refusal_reason("2^{1009}") is None
        True
    """
    depth = _nesting_depth(answer)
    if depth > MAX_NESTING_DEPTH:
        return f"brackets nested {depth} deep (limit {MAX_NESTING_DEPTH})"
    for digits in _DIGITS.findall(answer):
        if len(digits) > MAX_LITERAL_DIGITS:
            return f"an integer literal of {len(digits)} digits (limit {MAX_LITERAL_DIGITS})"
    text = answer.replace("**", "^")
    return _exponent_reason(text) or _combinatorial_reason(text)
