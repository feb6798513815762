r"""Reading the final answer of a response: ``\boxed{}``, GSM8K ``####``, ``<answer>`` or raw text.

Extraction is pure string work (no sympy) and its cost is bounded for any input:

* only the last :data:`MAX_SEARCH_CHARS` characters of a response are searched, so a final answer
  followed by more than that much text is not found (the response is scored wrong);
* brace matching stops at the end of that window, so an unbalanced ``\boxed{`` costs one linear
  scan and gives ``None``.
"""

from __future__ import annotations

import re
from enum import Enum

from meds_gym.errors import InvalidArgumentError, invalid_type

MAX_SEARCH_CHARS = 100_000
"""Only this many trailing characters of a response are searched for the final answer."""

BOXED_OPENING = "\\boxed{"
r"""The text whose ``{`` opens a boxed final answer (the MEDS fingerprint anchor)."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SPACE_FORM_TRAILING_PUNCTUATION = ".,;:"
# An escaped character (``\\{``, ``\\}``, ``\\\\``) or a bare brace, in text order.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


class AnswerExtractor(str, Enum):
    """How the final answer is read from a text."""

    BOXED = "boxed"
    r"""The content of the last ``\boxed{...}`` or ``\fbox{...}`` (MATH-style solutions)."""
    GSM8K = "gsm8k"
    """The rest of the line after the last ``####``, with thousands commas removed (GSM8K)."""
    RAW = "raw"
    """The whole text, stripped of surrounding whitespace."""


def _check_text(text: object, name: str) -> str:
    if not isinstance(text, str):
        raise invalid_type(name, "a str", text)
    return text


def _matching_brace(text: str, open_index: int) -> int:
    r"""Index of the ``}`` that closes the ``{`` at ``open_index``, or -1 if it is never closed.

    A backslash escapes the next character, so ``\{`` and ``\}`` (literal braces in LaTeX, as in
    set notation) do not count.
    """
    depth = 0
    for token in _BRACE_TOKEN.finditer(text, open_index):
        char = token.group(0)
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return token.start()
    return -1


def braces_balanced(text: str) -> bool:
    r"""Whether every ``{`` of ``text`` is closed by a later ``}`` and no ``}`` is left open.

    Escaped braces (``\{``, ``\}``) do not count, as in :func:`extract_answer`.
    """
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


def _last_box_start(text: str, end: int) -> tuple[int, str] | None:
    """Position and command of the last box command that starts before ``end``."""
    best: tuple[int, str] | None = None
    for command in _BOX_COMMANDS:
        position = text.rfind(command, 0, end)
        if position >= 0 and (best is None or position > best[0]):
            best = (position, command)
    return best


def extract_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``.

    Nested braces are matched (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``); the brace-less
    form ``\boxed 5`` gives the token after the space, without trailing sentence punctuation or
    ``$``. Only the last :data:`MAX_SEARCH_CHARS` characters are searched.

    Args:
        text: A response or a worked solution.

    Returns:
        The content of the last box, stripped of surrounding whitespace (possibly ``""`` for
        ``\boxed{}``); ``None`` if there is no box or if the last box is never closed.

    Raises:
        TypeError: If ``text`` is not a ``str``.

    Example:
        >>> extract_boxed(r"so $x = \boxed{\frac{1}{2}}$.")
        '\\frac{1}{2}'
        >>> extract_boxed("no box here") is None
        True
    """
    text = _check_text(text, "text")
    if len(text) > MAX_SEARCH_CHARS:
        text = text[-MAX_SEARCH_CHARS:]
    end = len(text)
    while True:
        found = _last_box_start(text, end)
        if found is None:
            return None
        position, command = found
        after = position + len(command)
        rest = text[after : after + 1]
        if rest == "":
            return None  # the text ends in a bare "\\boxed": an unfinished final answer
        if rest == "{" or rest.isspace():
            break
        # A longer command that merely starts with "\boxed" (e.g. "\boxedfoo"): keep looking left.
        end = position
    index = after
    while index < len(text) and text[index].isspace():
        index += 1
    if index < len(text) and text[index] == "{":
        close = _matching_brace(text, index)
        if close < 0:
            return None
        return text[index + 1 : close].strip()
    # "\boxed 5" form: the token after the whitespace.
    token = re.match(r"[^\s$]*", text[index:])
    content = token.group(0) if token else ""
    return content.rstrip(_SPACE_FORM_TRAILING_PUNCTUATION)


def extract_tagged(text: str, tag: str = "answer") -> str | None:
    """The content of the last ``<tag>...</tag>`` pair in ``text``.

    The last opening tag is taken and closed by the first ``</tag>`` after it; only the last
    :data:`MAX_SEARCH_CHARS` characters are searched. Tags are matched exactly (case-sensitive,
    no attributes).

    Args:
        text: A response.
        tag: The tag name (letters, digits, ``_``, ``.``, ``-``; not starting with a digit).

    Returns:
        The content, stripped of surrounding whitespace (possibly ``""``); ``None`` if there is
        no opening tag or the last one is never closed.

    Raises:
        TypeError: If ``text`` or ``tag`` is not a ``str``.
        InvalidArgumentError: If ``tag`` is not a valid tag name.

    Example:
        >>> extract_tagged("think... <answer> 42 </answer>")
        '42'
        >>> extract_tagged("<answer>1</answer> then <answer>2") is None
        True
    """
    text = _check_text(text, "text")
    if not isinstance(tag, str):
        raise invalid_type("tag", "a str", tag)
    if _TAG_NAME.fullmatch(tag) is None:
        raise InvalidArgumentError("tag", "a tag name such as 'answer'", tag)
    if len(text) > MAX_SEARCH_CHARS:
        text = text[-MAX_SEARCH_CHARS:]
    opening = f"<{tag}>"
    start = text.rfind(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(f"</{tag}>", start)
    if end < 0:
        return None
    return text[start:end].strip()


def _extract_gsm8k(text: str) -> str | None:
    position = text.rfind("####")
    if position < 0:
        return None
    line = text[position + 4 :].split("\n", 1)[0]
    return _THOUSANDS_COMMA.sub("", line).strip()


def extract_answer(text: str, extractor: str = "boxed") -> str | None:
    r"""The final answer in ``text``, read the way ``extractor`` says.

    Args:
        text: A response or a worked solution.
        extractor: ``"boxed"`` (last ``\boxed{}``/``\fbox{}``, see :func:`extract_boxed`),
            ``"gsm8k"`` (the rest of the line after the last ``####``, thousands commas removed)
            or ``"raw"`` (the stripped text). An :class:`AnswerExtractor` is accepted too.

    Returns:
        The answer, or ``None`` when the text holds none (no box, unbalanced box, no ``####``).

    Raises:
        TypeError: If ``text`` is not a ``str``.
        InvalidArgumentError: If ``extractor`` is not one of the names above.

    Example:
        >>> extract_answer("She pays 3 + 4 = 7 dollars.\n#### 1,007", extractor="gsm8k")
        '1007'
    """
    text = _check_text(text, "text")
    kind = parse_extractor(extractor)
    if len(text) > MAX_SEARCH_CHARS:
        text = text[-MAX_SEARCH_CHARS:]
    if kind is AnswerExtractor.BOXED:
        return extract_boxed(text)
    if kind is AnswerExtractor.GSM8K:
        return _extract_gsm8k(text)
    return text.strip()


def parse_extractor(extractor: str | AnswerExtractor) -> AnswerExtractor:
    """Validate an extractor name and return the :class:`AnswerExtractor`.

    Raises:
        InvalidArgumentError: If ``extractor`` is not a known extractor name.
    """
    if isinstance(extractor, AnswerExtractor):
        return extractor
    if isinstance(extractor, str):
        for kind in AnswerExtractor:
            if kind.value == extractor:
                return kind
    raise InvalidArgumentError(
        "extractor",
        "one of " + ", ".join(repr(kind.value) for kind in AnswerExtractor),
        extractor,
    )
