"""The project-wide character set of the text spaces.

Gymnasium's default ``Text`` charset is letters and digits only, so spaces, punctuation and
``\\boxed{}`` would fall outside it. Ours covers printable ASCII with whitespace and the Unicode
blocks that math text uses (Latin-1 and Latin Extended-A letters, Greek, punctuation, super- and
subscripts, currency, letter-like symbols, number forms, arrows, mathematical operators, technical
symbols, geometric shapes). Every question of the bundled benchmark files lies within it.
"""

from __future__ import annotations

import copy
import functools
import unicodedata
from typing import Any

from gymnasium import spaces

_UNICODE_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x00A0, 0x00FF),  # Latin-1 Supplement
    (0x0100, 0x017F),  # Latin Extended-A
    (0x0370, 0x03FF),  # Greek and Coptic
    (0x2000, 0x206F),  # General Punctuation
    (0x2070, 0x209F),  # Superscripts and Subscripts
    (0x20A0, 0x20CF),  # Currency Symbols
    (0x2100, 0x214F),  # Letterlike Symbols
    (0x2150, 0x218F),  # Number Forms
    (0x2190, 0x21FF),  # Arrows
    (0x2200, 0x22FF),  # Mathematical Operators
    (0x2300, 0x23FF),  # Miscellaneous Technical
    (0x25A0, 0x25FF),  # Geometric Shapes
)


def _build_charset() -> frozenset[str]:
    chars = {chr(c) for c in range(0x20, 0x7F)} | {"\n", "\t", "\r"}
    for start, stop in _UNICODE_BLOCKS:
        for code in range(start, stop + 1):
            ch = chr(code)
            # Unassigned code points (category "Cn") and private-use ones carry no text.
            if unicodedata.category(ch) not in ("Cn", "Co", "Cs"):
                chars.add(ch)
    return frozenset(chars)


TEXT_CHARSET: frozenset[str] = _build_charset()
"""Characters allowed in observations and actions of every meds-gym text space."""


class CharsetText(spaces.Text):
    """A :class:`gymnasium.spaces.Text` whose copies share its character tables.

    A vector env batches its sub-envs' spaces by deep-copying them once per sub-env, and a
    ``Text`` space over :data:`TEXT_CHARSET` (about 1,500 characters) holds a set, a tuple and a
    dict of them: a :class:`gymnasium.vector.SyncVectorEnv` of 64 reasoning envs spent 0.4 s
    copying them. The tables never change after construction, so a deep copy here shares them
    and copies the rest (the bounds, and the sampling generator, so each copy samples on its
    own). Equality, sampling and ``contains`` are ``Text``'s.

    Example:
        >>> import copy
        >>> space = CharsetText(max_length=8, min_length=0, charset=TEXT_CHARSET)
        >>> twin = copy.deepcopy(space)
        >>> twin == space, twin.character_list is space.character_list
        (True, True)
        >>> twin.np_random is space.np_random
        False
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> CharsetText:
        clone = copy.copy(self)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            if not name.startswith("_char"):  # the character tables are shared, not copied
                setattr(clone, name, copy.deepcopy(value, memo))
        return clone


@functools.lru_cache(maxsize=64)
def _text_template(max_length: int, charset: frozenset[str]) -> CharsetText:
    return CharsetText(max_length=max_length, min_length=0, charset=charset)


def text_space(max_length: int, charset: frozenset[str]) -> CharsetText:
    """A ``Text`` space of strings of 0 to ``max_length`` characters of ``charset``.

    Building the character tables of a large charset takes about a millisecond; an env built
    many times over (the sub-envs of a vector env) gets a copy of a cached space instead, with
    its own sampling generator.

    Example:
        >>> a, b = text_space(16, TEXT_CHARSET), text_space(16, TEXT_CHARSET)
        >>> a == b, a is b, a.contains("x = 3")
        (True, False, True)
    """
    return copy.deepcopy(_text_template(int(max_length), frozenset(charset)))
