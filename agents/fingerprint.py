"""The MEDS answer fingerprint, taken in the log-prob forward pass (DESIGN.md section 2, step 1).

For a response, let P be the position of the token that carries the ``{`` of the last ``\\boxed{``,
so that P + 1 holds the first token of the final answer. For each selected decoder layer n
(1-based; the embedding output is layer 0 and is never used) the fingerprint keeps one float:
the logit that the LM head gives, at position P, to the token actually present at P + 1, computed
from that layer's hidden state. Precisely, it is ``lm_head(hidden_states[n])[P, token[P + 1]]``
with ``hidden_states`` as Hugging Face returns it with ``output_hidden_states=True``:

* for intermediate layers n < N, ``hidden_states[n]`` is the raw output of decoder layer n, with no
  final norm applied (logit lens, as in the MEDS reference code);
* for the last layer n = N, Hugging Face's ``hidden_states[N]`` has the final norm applied, so the
  value is the model's own output logit of that token; it is read from the logits of the pass.

No extra forward pass is run. :class:`FingerprintCapture` registers forward hooks on the selected
decoder layers that copy out only the hidden state at P of each sequence, so the extra memory is
O(batch x layers x hidden), never O(batch x layers x sequence x hidden).
"""

from __future__ import annotations

import math
from enum import Enum
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from meds_gym.errors import InvalidArgumentError
from meds_gym.integrations.hf import boxed_brace_char, decoder_layers, token_at_char


class LayerSelection(str, Enum):
    """Which decoder layers the fingerprint keeps."""

    LAST_HALF = "last_half"
    """The last N // 2 layers (at least one): the MEDS paper's choice (14 of 28 for Qwen2.5-7B)."""
    ALL = "all"
    """All N decoder layers."""
    LAST_K = "last_k"
    """The last k layers (``k`` argument)."""
    DIFF = "diff"
    """Differences between consecutive layers' logits over the last half: N // 2 values, each
    ``logit(n) - logit(n - 1)`` for the last-half layers n (layer n - 1 = 0 is skipped)."""


def boxed_brace_token(tokenizer: Any, text: str) -> int | None:
    """Index of the token that carries the ``{`` of the last ``\\boxed{`` in ``text``.

    The token is found through character offsets (``return_offsets_mapping``), never by token ids,
    because tokenizers split ``\\boxed{`` in different ways (``{`` may be merged with the
    preceding ``boxed`` or with the first digits of the answer).

    Args:
        tokenizer: A fast Hugging Face tokenizer (offset mappings need one).
        text: The response text.

    Returns:
        The index into ``tokenizer(text, add_special_tokens=False).input_ids``, or None if the text
        has no ``\\boxed{``.
    """
    char = boxed_brace_char(text)
    if char is None:
        return None
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    for index, (begin, end) in enumerate(encoded["offset_mapping"]):
        if begin <= char < end:
            return index
    return None


def boxed_brace_token_in_ids(tokenizer: Any, token_ids: list[int], text: str) -> int | None:
    """Index into generated ``token_ids`` of the token carrying the ``{`` of the last ``\\boxed{``.

    ``text`` must be ``tokenizer.decode(token_ids, skip_special_tokens=True)``. When re-encoding the
    text gives back the same ids (always for the bundled character tokenizer), this is
    :func:`boxed_brace_token`. Otherwise (a sampled tokenisation that is not the canonical one) the
    token is found by bisection on the length of decoded prefixes, O(log T) decodes.

    Args:
        tokenizer: A Hugging Face tokenizer.
        token_ids: The response's token ids as generated (special tokens may follow the text).
        text: The decoded response.
    """
    char = boxed_brace_char(text)
    if char is None:
        return None
    # One encoding gives both the ids to compare and the offsets (half the cost of two calls).
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if list(token_ids[: len(ids)]) == ids:
        for index, (begin, end) in enumerate(encoded["offset_mapping"]):
            if begin <= char < end:
                return index
        return None
    return token_at_char(tokenizer, token_ids, char)


def num_decoder_layers(model: nn.Module) -> int:
    """Number of decoder layers N of a causal LM."""
    return len(decoder_layers(model))


def selected_layers(
    num_layers: int, selection: LayerSelection | str = LayerSelection.LAST_HALF, k: int = 1
) -> list[int]:
    """The 1-based decoder layers whose logits a selection needs, in increasing order.

    For ``diff`` this includes the layer just before the last half, when it is not the embedding.

    Args:
        num_layers: N, the number of decoder layers.
        selection: See :class:`LayerSelection`.
        k: Number of layers for ``last_k``.
    """
    if num_layers < 1:
        raise InvalidArgumentError("num_layers", "an int >= 1", num_layers)
    selection = LayerSelection(selection)
    if selection is LayerSelection.ALL:
        return list(range(1, num_layers + 1))
    if selection is LayerSelection.LAST_K:
        if not 1 <= k <= num_layers:
            raise InvalidArgumentError("k", f"an int in [1, num_layers={num_layers}]", k)
        return list(range(num_layers - k + 1, num_layers + 1))
    half = max(1, num_layers // 2)
    first = num_layers - half + 1
    if selection is LayerSelection.DIFF:
        first = max(1, first - 1)
    return list(range(first, num_layers + 1))


def fingerprint_dim(
    num_layers: int, selection: LayerSelection | str = LayerSelection.LAST_HALF, k: int = 1
) -> int:
    """Length L of the fingerprint vector for a model with ``num_layers`` decoder layers."""
    layers = selected_layers(num_layers, selection, k)
    if LayerSelection(selection) is LayerSelection.DIFF:
        return max(1, num_layers // 2) if num_layers > 1 else 1
    return len(layers)


def features_from_layer_logits(
    layer_logits: np.ndarray, num_layers: int, selection: LayerSelection | str, k: int = 1
) -> np.ndarray:
    """Turn per-layer logits (B, len(selected_layers)) into fingerprints (B, L)."""
    if LayerSelection(selection) is not LayerSelection.DIFF:
        return layer_logits
    if layer_logits.shape[1] == 1:  # a one-layer model has no consecutive pair
        return layer_logits
    diffs = np.diff(layer_logits, axis=1)  # (B, len - 1)
    return diffs[:, -fingerprint_dim(num_layers, selection, k) :]


class FingerprintCapture:
    """Forward hooks that copy each sequence's hidden state at one position out of decoder layers.

    Use as a context manager around the forward pass that computes log-probs, then call
    :meth:`features` with that pass's logits and input ids.

    Example:
        >>> with FingerprintCapture(model, positions) as capture:  # doctest: +SKIP
        ...     logits = model(input_ids, attention_mask=attention_mask).logits
        >>> features = capture.features(logits, input_ids)  # (B, L) float32, NaN rows  # +SKIP

    Args:
        model: A Hugging Face causal LM.
        positions: (B,) absolute position P in each input sequence of the token that carries
            ``{`` of the last ``\\boxed{``; -1 (or any negative) for a sequence without one.
        selection: Which layers to keep, see :class:`LayerSelection`.
        k: Number of layers for ``last_k``.
    """

    def __init__(
        self,
        model: nn.Module,
        positions: torch.Tensor,
        selection: LayerSelection | str = LayerSelection.LAST_HALF,
        k: int = 1,
    ) -> None:
        if positions.dim() != 1:
            raise InvalidArgumentError("positions", "a 1-D tensor of shape (B,)", positions.shape)
        self.model: Any = model
        self.selection = LayerSelection(selection)
        self.k = k
        self.layers_module = decoder_layers(model)
        self.num_layers = len(self.layers_module)
        self.layers = selected_layers(self.num_layers, self.selection, k)
        self.positions = positions.long()
        self.hidden_at: dict[int, torch.Tensor] = {}
        """Layer n -> (B, H) hidden state at P (zeros where P < 0); filled by the forward pass."""
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, layer: int) -> Any:
        def copy_out(module: nn.Module, inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, H)
            if hidden.shape[0] != self.positions.shape[0]:
                raise InvalidArgumentError(
                    "positions",
                    f"shape ({hidden.shape[0]},), one position per sequence of the batch",
                    tuple(self.positions.shape),
                )
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            pos = self.positions.to(hidden.device).clamp(min=0)
            self.hidden_at[layer] = hidden[rows, pos].detach().clone()  # (B, H)

        return copy_out

    def __enter__(self) -> FingerprintCapture:
        self.hidden_at.clear()
        for layer in self.layers:
            if layer < self.num_layers:  # the last layer is read from the logits
                module = self.layers_module[layer - 1]
                self._handles.append(module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def layer_logits(
        self,
        logits: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-layer logit of the token at P + 1, (B, len(self.layers)) float32, NaN rows if none.

        A row is NaN when P < 0, or when P + 1 is past the sequence or (given ``attention_mask``)
        a padding position: the response ended on the brace, with no answer token after it.

        Args:
            logits: (B, T, V) logits of the pass the hooks watched.
            input_ids: (B, T) the input ids of that pass.
            attention_mask: (B, T) its attention mask, 0 on padding.
        """
        batch, length = input_ids.shape
        if self.positions.shape[0] != batch:
            raise InvalidArgumentError(
                "positions", f"shape ({batch},) to match input_ids", tuple(self.positions.shape)
            )
        valid = (self.positions >= 0) & (self.positions + 1 < length)  # (B,)
        rows = torch.arange(batch, device=input_ids.device)
        pos = self.positions.clamp(min=0, max=length - 2)  # (B,)
        next_tokens = input_ids[rows, pos.to(input_ids.device) + 1]  # (B,)
        if attention_mask is not None:
            valid &= attention_mask[rows, pos.to(attention_mask.device) + 1].to(valid.device) > 0
        head: Any = self.model.get_output_embeddings()
        weight = head.weight[next_tokens]  # (B, H): only the rows of the tokens we need
        bias = getattr(head, "bias", None)
        columns = []
        for layer in self.layers:
            if layer == self.num_layers:
                value = logits[rows, pos.to(logits.device), next_tokens].float()  # (B,)
            else:
                hidden = self.hidden_at[layer]  # (B, H)
                value = (hidden * weight).sum(dim=-1).float()
                if bias is not None:
                    value = value + bias[next_tokens].float()
            columns.append(value)
        out = torch.stack(columns, dim=1)  # (B, layers)
        out[~valid.to(out.device)] = math.nan
        return out

    def features(
        self,
        logits: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> np.ndarray:
        """The fingerprints, (B, L) float32 numpy with NaN rows for sequences without one.

        Arguments as for :meth:`layer_logits`.
        """
        per_layer = self.layer_logits(logits, input_ids, attention_mask).cpu().numpy()
        return features_from_layer_logits(
            per_layer, self.num_layers, self.selection, self.k
        ).astype(np.float32)


@torch.no_grad()
def answer_fingerprint(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    selection: LayerSelection | str = LayerSelection.LAST_HALF,
    k: int = 1,
) -> tuple[torch.Tensor, np.ndarray]:
    """Run one forward pass and return its logits together with the answer fingerprints.

    A convenience for callers that do not run their own pass; a trainer wraps its existing
    log-prob pass in :class:`FingerprintCapture` instead.

    Args:
        model: A Hugging Face causal LM.
        input_ids: (B, T) prompt + response ids.
        attention_mask: (B, T) attention mask.
        positions: (B,) absolute position of the ``{`` token of the last ``\\boxed{``, -1 if none.
        selection: Which layers to keep.
        k: Number of layers for ``last_k``.

    Returns:
        ``(logits, features)``: (B, T, V) logits and (B, L) float32 fingerprints.
    """
    with FingerprintCapture(model, positions, selection, k) as capture:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits, capture.features(logits, input_ids, attention_mask)
