"""Scoring a whole response: extract its final answer, then compare it with the gold answer."""

from __future__ import annotations

from dataclasses import dataclass

from meds_gym.errors import invalid_type
from meds_gym.verifiers.equivalence import check_timeout, is_equivalent
from meds_gym.verifiers.extraction import AnswerExtractor, extract_answer, parse_extractor


@dataclass(frozen=True)
class VerificationResult:
    r"""The verdict on one response.

    Example:
        >>> verify_response(r"3 + 4 = 7, so the answer is \boxed{7}.", "7")
        VerificationResult(correct=True, parsed_answer='7')
    """

    correct: bool
    """Whether the response's final answer is equivalent to the gold answer."""
    parsed_answer: str | None
    r"""The final answer read from the response, or ``None`` if it holds none (no ``\boxed{}``)."""


def verify_response(
    response: str,
    gold: str,
    *,
    extractor: str | AnswerExtractor = "boxed",
    timeout_seconds: float = 5.0,
) -> VerificationResult:
    r"""Extract the final answer of ``response`` and check it against ``gold``.

    A response without a final answer, or with one that cannot be parsed, is wrong; so is one
    that the guard refuses as too costly (``9^{9^{9}}``) and one whose comparison times out. The
    deadline holds in any thread and any process. Bad arguments raise (they are bugs, not
    answers), and so does a failure of the checker itself (never turned into a score).

    Args:
        response: The model's full response text.
        gold: The gold final answer (already extracted from the reference solution).
        extractor: How the final answer is read from ``response``: ``"boxed"`` (last
            ``\boxed{}``), ``"gsm8k"`` (after the last ``####``) or ``"raw"`` (whole text).
        timeout_seconds: Time allowed to the symbolic comparison (in a worker process, which is
            killed past it); see :func:`meds_gym.verifiers.is_equivalent`.

    Returns:
        The verdict and the parsed answer.

    Raises:
        TypeError: If ``response`` or ``gold`` is not a ``str``.
        InvalidArgumentError: If ``extractor`` or ``timeout_seconds`` is invalid.
        VerifierError: If the verifier worker cannot start.
    """
    if not isinstance(response, str):
        raise invalid_type("response", "a str", response)
    if not isinstance(gold, str):
        raise invalid_type("gold", "a str", gold)
    kind = parse_extractor(extractor)
    check_timeout(timeout_seconds)
    parsed = extract_answer(response, kind)
    if parsed is None:
        return VerificationResult(correct=False, parsed_answer=None)
    correct = is_equivalent(parsed, gold, timeout_seconds=timeout_seconds)
    return VerificationResult(correct=correct, parsed_answer=parsed)
