r"""Hugging Face causal-LM helpers shared by the answer fingerprint of the agent and of TRL.

The MEDS fingerprint (DESIGN.md section 2, step 1) is read at the token that carries the ``{`` of
the last ``\boxed{`` of a response, from every decoder layer. These helpers find that token and
the decoder layers; they need torch (the ``agents`` or ``trl`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meds_gym.errors import InvalidArgumentError, MissingExtraError

try:
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("The answer fingerprint", "agents", "torch") from exc

BOXED = "\\boxed{"
"""The marker whose brace starts the final answer."""


def boxed_brace_char(text: str) -> int | None:
    r"""Character offset of the ``{`` of the last ``\boxed{`` in ``text``, or None if absent."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    return start + len(BOXED) - 1


def token_at_char(tokenizer: Any, token_ids: Sequence[int], char: int) -> int | None:
    """Index of the token of ``token_ids`` whose decoded text covers character ``char``.

    Finds the smallest ``i`` whose decoded prefix ``token_ids[: i + 1]`` reaches past ``char`` by
    bisection, O(log T) decodes. It works for any tokenisation, including sampled ones that are
    not what re-encoding the text would give.

    Args:
        tokenizer: A Hugging Face tokenizer.
        token_ids: Token ids as generated (special tokens may follow the text).
        char: A character offset into ``tokenizer.decode(token_ids, skip_special_tokens=True)``.

    Returns:
        The token index, or None if the decoded text is not longer than ``char``.
    """
    ids = [int(t) for t in token_ids]
    if len(tokenizer.decode(ids, skip_special_tokens=True)) <= char:
        return None
    low, high = 0, len(ids) - 1
    while low < high:
        middle = (low + high) // 2
        if len(tokenizer.decode(ids[: middle + 1], skip_special_tokens=True)) > char:
            high = middle
        else:
            low = middle + 1
    return low


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (Llama/Qwen/Mistral, GPT-2, GPT-NeoX, OPT).

    Raises:
        InvalidArgumentError: If the model keeps its layers elsewhere.
    """
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        module: Any = model
        for attr in path.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise InvalidArgumentError(
        "model",
        "a causal LM whose decoder layers are at model.layers, transformer.h, gpt_neox.layers "
        "or model.decoder.layers",
        type(model).__name__,
    )
