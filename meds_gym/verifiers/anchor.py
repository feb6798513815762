r"""The answer anchor: where a response's final answer starts, for extraction and fingerprints.

MEDS fingerprints the token that opens the final answer (paper section 3; docs/design.md section
2). With math prompts that is the ``{`` of the last ``\boxed{``; tasks whose prompts ask for
``<answer>...</answer>`` tags, or any other format, need another anchor. An
:class:`AnswerAnchor` is that setting, shared by everything that reads a response:

* :meth:`AnswerAnchor.extract` gives the final answer (what an env scores);
* :meth:`AnswerAnchor.locate` gives the character index, in the response, of the last character
  of the anchor (the ``{`` of the last ``\boxed{``, the ``>`` of the last ``<answer>``, the last
  character before a regex's answer group), so a fingerprint can take the token carrying that
  character; the next token is the first token of the answer;
* :attr:`AnswerAnchor.instruction` is the sentence a prompt uses to ask for the answer in this
  format, and :meth:`AnswerAnchor.format_answer` writes an answer in it.

A response without the anchor has no answer (``extract`` gives None) and no fingerprint
(``locate`` gives None).

Example:
    >>> anchor = parse_anchor("answer_tag")
    >>> text = "2 + 2 = 4, so <answer>4</answer>"
    >>> anchor.extract(text), text[anchor.locate(text)]
    ('4', '>')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from meds_gym.errors import InvalidArgumentError, invalid_type
from meds_gym.verifiers.extraction import (
    BOXED_OPENING,
    MAX_SEARCH_CHARS,
    extract_boxed,
    extract_tagged,
)

ANSWER_TAG = "answer"
"""Name of the tag of :meth:`AnswerAnchor.answer_tag`: ``<answer>...</answer>``."""

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The prompt sentence of the boxed anchor (the MEDS paper's evaluation prompt)."""

ANSWER_TAG_INSTRUCTION = (
    "Please reason step by step, and put your final answer within <answer> </answer> tags, "
    "for example <answer>42</answer>."
)
"""The prompt sentence of the ``<answer>`` tag anchor."""


class AnchorKind(str, Enum):
    """Which text marks the start of the final answer."""

    BOXED = "boxed"
    r"""The last ``\boxed{...}`` (the default, as in the MEDS paper)."""
    ANSWER_TAG = "answer_tag"
    """The last ``<answer>...</answer>``."""
    REGEX = "regex"
    """The last match of a user regular expression with one capture group (the answer)."""


@dataclass(frozen=True)
class AnswerAnchor:
    r"""Where the final answer of a response starts, and how it is read.

    Build one with :meth:`boxed`, :meth:`answer_tag`, :meth:`from_regex` or
    :func:`parse_anchor`; all three kinds search only the last
    :data:`meds_gym.verifiers.MAX_SEARCH_CHARS` characters when extracting, so their cost is
    bounded for any response (a user regex must itself avoid catastrophic backtracking).

    Example:
        >>> anchor = AnswerAnchor.boxed()
        >>> text = r"so $x = \boxed{\frac{1}{2}}$"
        >>> anchor.extract(text), text[anchor.locate(text)]
        ('\\frac{1}{2}', '{')
        >>> anchor.format_answer("7")
        '\\boxed{7}'
    """

    kind: AnchorKind = AnchorKind.BOXED
    """Which anchor this is."""
    pattern: str | None = None
    """The regular expression of a ``REGEX`` anchor (exactly one capture group: the answer);
    None for the other kinds."""
    instruction_text: str | None = None
    """The prompt sentence that asks for the final answer in this format; None for the kind's
    default (:attr:`instruction`)."""
    answer_template: str | None = None
    """How :meth:`format_answer` writes an answer for a ``REGEX`` anchor: a string with one
    ``{answer}`` field (for example ``"Final answer: {answer}"``); None for the other kinds."""
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            kind = AnchorKind(self.kind)
        except ValueError:
            raise InvalidArgumentError(
                "kind", "one of " + ", ".join(repr(k.value) for k in AnchorKind), self.kind
            ) from None
        object.__setattr__(self, "kind", kind)
        for name in ("instruction_text", "answer_template"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise invalid_type(name, "a str or None", value)
        if kind is not AnchorKind.REGEX:
            if self.pattern is not None:
                raise InvalidArgumentError(
                    "pattern",
                    f"None for a {kind.value!r} anchor (only 'regex' anchors take a pattern)",
                    self.pattern,
                    fix="Use AnswerAnchor.from_regex(pattern) for a regular expression.",
                )
            if self.answer_template is not None:
                raise InvalidArgumentError(
                    "answer_template",
                    f"None for a {kind.value!r} anchor (it writes answers itself)",
                    self.answer_template,
                )
            return
        if not isinstance(self.pattern, str) or not self.pattern:
            raise InvalidArgumentError(
                "pattern", "a non-empty regular expression with one capture group", self.pattern
            )
        try:
            regex = re.compile(self.pattern)
        except re.error as error:
            raise InvalidArgumentError(
                "pattern",
                f"a valid regular expression ({error})",
                self.pattern,
            ) from None
        if regex.groups != 1:
            raise InvalidArgumentError(
                "pattern",
                f"a regular expression with exactly one capture group (the answer); it has "
                f"{regex.groups}",
                self.pattern,
                fix="Make other groups non-capturing: (?:...).",
            )
        if self.answer_template is not None and "{answer}" not in self.answer_template:
            raise InvalidArgumentError(
                "answer_template", "a string with an '{answer}' field", self.answer_template
            )
        object.__setattr__(self, "_regex", regex)

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def boxed(cls) -> AnswerAnchor:
        r"""The ``\boxed{`` anchor (the default): the answer is the content of the last box."""
        return cls(AnchorKind.BOXED)

    @classmethod
    def answer_tag(cls) -> AnswerAnchor:
        """The ``<answer>...</answer>`` anchor: the answer is the content of the last tag pair."""
        return cls(AnchorKind.ANSWER_TAG)

    @classmethod
    def from_regex(
        cls,
        pattern: str,
        *,
        instruction: str | None = None,
        answer_template: str | None = None,
    ) -> AnswerAnchor:
        r"""An anchor given by a regular expression with exactly one capture group: the answer.

        The answer is the capture group of the last (non-overlapping, leftmost-first) match in the
        searched tail of the response; the anchor is the character just before that group.

        Args:
            pattern: For example ``r"Final answer: (\S+)"``.
            instruction: The prompt sentence that asks for this format (a generic sentence
                naming the pattern when None).
            answer_template: How :meth:`format_answer` writes an answer, with one ``{answer}``
                field (for example ``"Final answer: {answer}"``).

        Raises:
            InvalidArgumentError: If ``pattern`` does not compile or has not exactly one
                capture group.

        Example:
            >>> anchor = AnswerAnchor.from_regex(r"Final answer: (\S+)")
            >>> anchor.extract("Final answer: 12")
            '12'
        """
        return cls(
            AnchorKind.REGEX,
            pattern=pattern,
            instruction_text=instruction,
            answer_template=answer_template,
        )

    # -- reading a response ---------------------------------------------------------------------

    @property
    def instruction(self) -> str:
        """The prompt sentence that asks for the final answer in this anchor's format."""
        if self.instruction_text is not None:
            return self.instruction_text
        if self.kind is AnchorKind.BOXED:
            return BOXED_INSTRUCTION
        if self.kind is AnchorKind.ANSWER_TAG:
            return ANSWER_TAG_INSTRUCTION
        return (
            "Please reason step by step, and end with your final answer in the form matched by "
            f"the regular expression {self.pattern}."
        )

    @property
    def setting(self) -> str:
        """The string :func:`parse_anchor` reads back: ``"boxed"``, ``"answer_tag"`` or the regex.

        For a command line or a saved config; a custom instruction or answer template is not
        part of it.
        """
        if self.kind is AnchorKind.REGEX:
            return str(self.pattern)  # a non-empty str, checked in __post_init__
        return self.kind.value

    def extract(self, text: str) -> str | None:
        r"""The final answer of ``text`` under this anchor, stripped of surrounding whitespace.

        * boxed: exactly :func:`meds_gym.verifiers.extract_boxed` (nested braces, ``\fbox``,
          the brace-less ``\boxed 5`` form);
        * answer tag: the content of the last ``<answer>`` up to the next ``</answer>``;
        * regex: the capture group of the last match.

        Returns:
            The answer, or None when the text has no anchor or the last one is never closed.

        Raises:
            TypeError: If ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise invalid_type("text", "a str", text)
        if self.kind is AnchorKind.BOXED:
            return extract_boxed(text)
        if self.kind is AnchorKind.ANSWER_TAG:
            return extract_tagged(text, ANSWER_TAG)
        match = self._last_match(text)
        if match is None:
            return None
        return match[1].strip()

    def locate(self, text: str) -> int | None:
        r"""Index in ``text`` of the last character of the anchor, or None when there is none.

        * boxed: the ``{`` of the last ``\boxed{`` (the fingerprint position of the MEDS
          paper; ``\fbox`` and the brace-less form are read by :meth:`extract` but carry no
          fingerprint, as before anchors were a setting);
        * answer tag: the ``>`` of the last ``<answer>``;
        * regex: the last character before the capture group of the last match (None when
          the group starts at index 0, where no character precedes it).

        Like the fingerprint it feeds, ``locate`` also finds an anchor whose answer is never
        closed (a truncated response): such a response is wrong and still fingerprinted.
        Whenever :meth:`extract` reads an answer from ``\boxed{...}``, ``<answer>...</answer>``
        or a regex match, ``text[locate(text) + 1:]`` starts with that answer (up to the
        whitespace that ``extract`` strips).

        Raises:
            TypeError: If ``text`` is not a ``str``.

        Example:
            >>> AnswerAnchor.boxed().locate(r"\boxed{1} then \boxed{22}")
            21
        """
        if not isinstance(text, str):
            raise invalid_type("text", "a str", text)
        if self.kind is AnchorKind.BOXED:
            start = text.rfind(BOXED_OPENING)
            return None if start < 0 else start + len(BOXED_OPENING) - 1
        if self.kind is AnchorKind.ANSWER_TAG:
            opening = f"<{ANSWER_TAG}>"
            start = text.rfind(opening)
            return None if start < 0 else start + len(opening) - 1
        offset = max(0, len(text) - MAX_SEARCH_CHARS)
        match = self._last_match(text)
        if match is None or match.start(1) + offset == 0:
            return None
        return offset + match.start(1) - 1

    def format_answer(self, answer: str) -> str:
        """``answer`` written in this anchor's format (what a correct response ends with).

        Raises:
            TypeError: If ``answer`` is not a ``str``.
            InvalidArgumentError: For a regex anchor built without ``answer_template``.
        """
        if not isinstance(answer, str):
            raise invalid_type("answer", "a str", answer)
        if self.kind is AnchorKind.BOXED:
            return "\\boxed{" + answer + "}"
        if self.kind is AnchorKind.ANSWER_TAG:
            return f"<{ANSWER_TAG}>{answer}</{ANSWER_TAG}>"
        if self.answer_template is None:
            raise InvalidArgumentError(
                "answer_template",
                "a string with an '{answer}' field, to write answers for a regex anchor",
                None,
                fix="Pass answer_template= to AnswerAnchor.from_regex.",
            )
        return self.answer_template.replace("{answer}", answer)

    def _last_match(self, text: str) -> re.Match[str] | None:
        """The last match with a participating group, in the searched tail of ``text``."""
        regex = self._regex
        if regex is None:  # not a REGEX anchor: it has no pattern to match
            return None
        tail = text[-MAX_SEARCH_CHARS:] if len(text) > MAX_SEARCH_CHARS else text
        last = None
        for match in regex.finditer(tail):
            if match.start(1) >= 0:
                last = match
        return last


def parse_anchor(value: str | AnswerAnchor | None) -> AnswerAnchor:
    r"""An :class:`AnswerAnchor` from a setting.

    Args:
        value: ``"boxed"`` (or None: the default), ``"answer_tag"``, a regular expression with
            one capture group, or an :class:`AnswerAnchor` (returned as is).

    Raises:
        InvalidArgumentError: If ``value`` is a string that is neither a kind name nor a valid
            regular expression with one capture group.
        TypeError: For any other type.

    Example:
        >>> parse_anchor(r"ANSWER: (.+)").kind.value
        'regex'
    """
    if value is None:
        return AnswerAnchor.boxed()
    if isinstance(value, AnswerAnchor):
        return value
    if isinstance(value, AnchorKind):
        value = value.value
    if not isinstance(value, str):
        raise invalid_type(
            "answer_anchor", "'boxed', 'answer_tag', a regex string or an AnswerAnchor", value
        )
    if value == AnchorKind.BOXED.value:
        return AnswerAnchor.boxed()
    if value == AnchorKind.ANSWER_TAG.value:
        return AnswerAnchor.answer_tag()
    try:
        return AnswerAnchor.from_regex(value)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            "answer_anchor",
            "'boxed', 'answer_tag', or a regular expression with exactly one capture group "
            f"({error})",
            value,
        ) from None
