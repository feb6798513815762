r"""The agent's view of the MEDS answer fingerprint, taken in its log-prob forward pass.

The maths lives in :mod:`meds_gym.integrations.hf` (shared with the TRL reward function); this
module names the pieces the agent uses. The agent wraps its log-prob pass in
:class:`FingerprintCapture` with, for each response, the position of the token that carries the
answer anchor (:func:`boxed_brace_token_in_ids`, found once per response from the generated ids)
and the token after it (:func:`answer_tokens`), so no extra forward pass is run.
"""

from __future__ import annotations

from typing import Any

from meds_gym.integrations.hf import (
    BOXED_ANCHOR,
    FingerprintCapture,
    LayerSelection,
    anchor_token,
    answer_fingerprint,
    answer_tokens,
    features_from_layer_logits,
    fingerprint_dim,
    num_decoder_layers,
    selected_layers,
)
from meds_gym.verifiers.anchor import AnswerAnchor

__all__ = [
    "FingerprintCapture",
    "LayerSelection",
    "answer_fingerprint",
    "answer_tokens",
    "boxed_brace_char",
    "boxed_brace_token",
    "boxed_brace_token_in_ids",
    "features_from_layer_logits",
    "fingerprint_dim",
    "num_decoder_layers",
    "selected_layers",
]


def boxed_brace_char(text: str, anchor: AnswerAnchor = BOXED_ANCHOR) -> int | None:
    r"""Character offset of the anchor's last character (the ``{`` of the last ``\boxed{``)."""
    return anchor.locate(text)


def boxed_brace_token_in_ids(
    tokenizer: Any, token_ids: list[int], text: str, anchor: AnswerAnchor = BOXED_ANCHOR
) -> int | None:
    """Index into generated ``token_ids`` of the token that carries the anchor's last character.

    ``text`` must be ``tokenizer.decode(token_ids, skip_special_tokens=True)``; see
    :func:`meds_gym.integrations.hf.anchor_token`.
    """
    return anchor_token(tokenizer, token_ids, text, anchor)


def boxed_brace_token(tokenizer: Any, text: str, anchor: AnswerAnchor = BOXED_ANCHOR) -> int | None:
    """Index of the anchor token in ``tokenizer(text, add_special_tokens=False).input_ids``.

    Found through the encoding's character offsets (a fast tokenizer is needed), so it holds for
    tokenizers whose decoded text differs from ``text`` (for example ones that split on spaces).
    """
    char = anchor.locate(text)
    if char is None:
        return None
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    for index, (begin, end) in enumerate(encoded["offset_mapping"]):
        if begin <= char < end:
            return index
    return None
