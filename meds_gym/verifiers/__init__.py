r"""Answer extraction and answer checking.

Final answers are read from ``\boxed{}`` or GSM8K's ``####``, and compared exactly for integers
and through math-verify for everything else: after a cheap guard that refuses absurd expressions
(:func:`refusal_reason`), with equations compared as written (:mod:`meds_gym.verifiers.equations`),
in a worker process under a hard deadline that holds in any thread and any process.

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
from meds_gym.verifiers.guard import (
    MAX_COMBINATORIAL_ARGUMENT,
    MAX_EXPONENT,
    MAX_LITERAL_DIGITS,
    MAX_NESTING_DEPTH,
    refusal_reason,
)
from meds_gym.verifiers.scoring import VerificationResult, verify_response

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_COMBINATORIAL_ARGUMENT",
    "MAX_EXPONENT",
    "MAX_LITERAL_DIGITS",
    "MAX_NESTING_DEPTH",
    "MAX_SEARCH_CHARS",
    "AnchorKind",
    "AnswerAnchor",
    "AnswerExtractor",
    "VerificationResult",
    "canonical_integer",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "refusal_reason",
    "parse_anchor",
    "verify_response",
]
