r"""Answer extraction and answer checking.

Final answers are read from ``\boxed{}`` or GSM8K's ``####``, and compared exactly for integers
and through math-verify for everything else.

Example:
    >>> from meds_gym.verifiers import verify_response
    >>> verify_response(r"Half of it: $\boxed{\frac{1}{2}}$.", "0.5").correct
    True
"""

from meds_gym.verifiers.anchor import AnchorKind, AnswerAnchor, parse_anchor
from meds_gym.verifiers.equivalence import MAX_ANSWER_CHARS, canonical_integer, is_equivalent
from meds_gym.verifiers.extraction import (
    MAX_SEARCH_CHARS,
    AnswerExtractor,
    extract_answer,
    extract_boxed,
)
from meds_gym.verifiers.scoring import VerificationResult, verify_response

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_SEARCH_CHARS",
    "AnchorKind",
    "AnswerAnchor",
    "AnswerExtractor",
    "VerificationResult",
    "canonical_integer",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "parse_anchor",
    "verify_response",
]
