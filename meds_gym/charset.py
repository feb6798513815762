"""The project-wide character set of the text spaces.

Gymnasium's default ``Text`` charset is letters and digits only, so spaces, punctuation and
``\\boxed{}`` would fall outside it. Ours covers printable ASCII with whitespace and the Unicode
blocks that math text uses (Latin-1 and Latin Extended-A letters, Greek, punctuation, super- and
subscripts, currency, letter-like symbols, number forms, arrows, mathematical operators, technical
symbols, geometric shapes). Every question of the bundled benchmark files lies within it.
"""

from __future__ import annotations

import unicodedata

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
