r"""The MEDS answer fingerprint of a Hugging Face causal LM: the logit lens at the answer anchor.

DESIGN (docs/design.md section 2, step 1): for a response, let P be the position of the token that
carries the last character of the answer anchor (by default the ``{`` of the last ``\boxed{``; see
:class:`~meds_gym.verifiers.AnswerAnchor`), so that P + 1 holds the first token of the final
answer. For each selected decoder layer n (1-based; the embedding output is never used) the
fingerprint keeps ``lm_head(hidden_states[n])[P, token[P + 1]]``, with ``hidden_states`` as
Hugging Face returns it with ``output_hidden_states=True``, as the MEDS reference code does:

* for intermediate layers n < N, ``hidden_states[n]`` is the raw output of decoder layer n, with no
  final norm (the logit lens);
* for the last layer n = N, ``hidden_states[N]`` has the final norm applied: it is what the LM
  head receives, so the value is the LM head's output logit of that token. Models that
  post-process the head's logits (Gemma 2's soft-capping, Cohere's logit scale) return a
  different logit from their forward; the fingerprint keeps the head's, before that step.

Every value is ``dot(hidden at P, head.weight[token]) (+ head.bias[token])`` in float32, whatever
the model's dtype, from one head row per sequence.

This module holds that computation once, for the bundled agent (which rides on its log-prob pass)
and for the TRL reward function (which runs one no-grad pass over prompt + response up to P).
:class:`FingerprintCapture` registers forward hooks that copy out only the hidden state at P of
each sequence, so the extra memory is O(batch x layers x hidden), and a forward pre-hook on the LM
head that computes the values while the forward runs: there the head's weight is complete even
when DeepSpeed ZeRO-3 partitions it (ZeRO-3 gathers a module's parameters in a forward pre-hook
registered before ours and releases them after its forward, so outside the forward the weight is
an empty shard). The tokens at P + 1 are therefore given before the pass. Decoder layers are found
through PEFT wrappers (a LoRA model's fingerprint includes its adapters). It needs torch (the
``agents`` or ``trl`` extra).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from enum import Enum
from types import TracebackType
from typing import Any

import numpy as np

from meds_gym.errors import InvalidArgumentError, MissingExtraError
from meds_gym.verifiers.anchor import AnswerAnchor

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("The answer fingerprint", "agents", "torch") from exc

BOXED_ANCHOR = AnswerAnchor.boxed()
"""The default anchor: the ``{`` of the last ``\\boxed{``."""


# --------------------------------------------------------------------------------------------
# Which layers.
# --------------------------------------------------------------------------------------------


class LayerSelection(str, Enum):
    """Which decoder layers the fingerprint keeps."""

    LAST_HALF = "last_half"
    """The last N // 2 layers (at least one). On the paper's 28-layer Qwen2.5-7B this is the
    reference's 14 layers; the reference keeps 14 whatever the depth (``LAST_K`` with k = 14)."""
    ALL = "all"
    """All N decoder layers."""
    LAST_K = "last_k"
    """The last k layers (``k`` argument)."""
    DIFF = "diff"
    """Differences between consecutive layers' logits over the last half: N // 2 values, each
    ``logit(n) - logit(n - 1)`` for the last-half layers n (layer n - 1 = 0 is skipped)."""


def _wrapped_models(model: nn.Module) -> list[nn.Module]:
    """The model, then the models it wraps, outermost first.

    Follows ``get_base_model()`` (PEFT's ``PeftModel``), else ``base_model.model`` (a tuner such
    as PEFT's ``LoraModel``), until neither gives another module.
    """
    chain = [model]
    while True:
        outer: Any = chain[-1]
        unwrap = getattr(outer, "get_base_model", None)
        inner = (
            unwrap()
            if callable(unwrap)
            else getattr(getattr(outer, "base_model", None), "model", None)
        )
        if not isinstance(inner, nn.Module) or any(inner is seen for seen in chain):
            return chain
        chain.append(inner)


def unwrapped_model(model: nn.Module) -> nn.Module:
    """The causal LM inside any wrappers (PEFT's ``PeftModel``, see :func:`decoder_layers`).

    A wrapper's ``forward`` takes ``*args, **kwargs`` and passes them on; the wrapped model's
    signature says which arguments (``logits_to_keep``, the cache's name) it accepts.
    """
    return _wrapped_models(model)[-1]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (Llama/Qwen/Mistral, GPT-2, GPT-NeoX, OPT).

    Looks through wrappers that expose the model they wrap: PEFT's ``PeftModel`` (LoRA, whose
    adapters live inside these layers) and anything with ``get_base_model()`` or
    ``base_model.model``.

    Raises:
        InvalidArgumentError: If the model keeps its layers elsewhere.
    """
    for candidate in _wrapped_models(model):
        for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
            module: Any = candidate
            for attr in path.split("."):
                module = getattr(module, attr, None)
                if module is None:
                    break
            if isinstance(module, nn.ModuleList):
                return module
    raise InvalidArgumentError(
        "model",
        "a causal LM whose decoder layers are at model.layers, transformer.h, gpt_neox.layers "
        "or model.decoder.layers (possibly inside a PEFT wrapper)",
        type(model).__name__,
    )


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
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
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


# --------------------------------------------------------------------------------------------
# Where: the token that carries the anchor.
# --------------------------------------------------------------------------------------------


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


_PIECES: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()
"""Per tokenizer, the decoded text of each token id seen (decoding one id is the slow part)."""


def _token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    try:
        cache = _PIECES.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        cache = {}
    missing = [t for t in dict.fromkeys(ids) if t not in cache]
    for t in missing:
        cache[t] = tokenizer.decode([t], skip_special_tokens=True)
    return [cache[t] for t in ids]


def anchor_token(
    tokenizer: Any,
    token_ids: Sequence[int],
    text: str | None = None,
    anchor: AnswerAnchor = BOXED_ANCHOR,
) -> int | None:
    """Index into generated ``token_ids`` of the token that carries the anchor's last character.

    Found from the generated ids, once per response: the decoded text of each token id (cached
    per tokenizer) is laid end to end, and when that reproduces the decoded response the token
    is read off the running lengths. Otherwise (a tokenizer whose pieces do not concatenate, such
    as byte-level merges split inside a character) it falls back to bisection on decoded prefixes
    (:func:`token_at_char`). Never through re-encoding the text, which a sampled tokenisation
    need not match.

    Args:
        tokenizer: A Hugging Face tokenizer.
        token_ids: The response's token ids as generated (special tokens may follow the text).
        text: ``tokenizer.decode(token_ids, skip_special_tokens=True)``, if already at hand.
        anchor: Which text opens the final answer.

    Returns:
        The token index, or None when the response has no anchor.
    """
    ids = [int(t) for t in token_ids]
    if text is None:
        text = tokenizer.decode(ids, skip_special_tokens=True)
    char = anchor.locate(text)
    if char is None:
        return None
    pieces = _token_pieces(tokenizer, ids)
    if "".join(pieces) == text:
        ends = np.cumsum([len(p) for p in pieces])  # (T,) end offset of each token's text
        index = int(np.searchsorted(ends, char, side="right"))
        return index if index < len(ids) else None
    return token_at_char(tokenizer, ids, char)


def answer_has_token(text: str, anchor: AnswerAnchor = BOXED_ANCHOR) -> bool:
    """Whether some text follows the anchor (a response ending on the anchor has no answer)."""
    char = anchor.locate(text)
    return char is not None and char < len(text.rstrip()) - 1


# --------------------------------------------------------------------------------------------
# What: the logit lens at P.
# --------------------------------------------------------------------------------------------


def answer_tokens(
    input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Each sequence's token at P + 1 (the first token of the answer), -1 where there is none.

    There is none when P < 0, or when P + 1 is past the sequence or (given ``attention_mask``) a
    padding position: the response ended on the anchor, with no answer token after it.

    Args:
        input_ids: (B, T) the ids the pass will run on.
        positions: (B,) P in each sequence, negative for a sequence without an anchor.
        attention_mask: (B, T) its attention mask, 0 on padding.

    Returns:
        (B,) long tensor on the device of ``input_ids``.
    """
    batch, length = input_ids.shape
    if positions.shape != (batch,):
        raise InvalidArgumentError(
            "positions", f"shape ({batch},) to match input_ids", tuple(positions.shape)
        )
    after = positions.long().to(input_ids.device) + 1  # (B,)
    valid = (after > 0) & (after < length)
    rows = torch.arange(batch, device=input_ids.device)
    at = after.clamp(min=0, max=length - 1)
    if attention_mask is not None:
        mask_device = attention_mask.device
        valid &= attention_mask[rows.to(mask_device), at.to(mask_device)].to(valid.device) > 0
    return torch.where(valid, input_ids[rows, at], -1)


def layer_logits_at(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    hidden_at: dict[int, torch.Tensor],
    next_tokens: torch.Tensor,
    layers: Sequence[int],
) -> torch.Tensor:
    """Per-layer logit of each sequence's next token at P: the fingerprint's maths, once.

    ``dot(hidden_at[n], weight[token]) + bias[token]`` for each selected layer n, all in float32
    from the rows of the tokens only (no (B, V) logits).

    Args:
        weight: (V, H) the LM head's weight, complete (gathered, under ZeRO-3).
        bias: (V,) its bias, or None.
        hidden_at: Layer n -> (B, H) hidden state at P, for every selected layer n; for the last
            layer N, the final-normed one that the head receives.
        next_tokens: (B,) the token at P + 1; negative values (no token) read row 0.
        layers: The selected 1-based layers.

    Returns:
        (B, len(layers)) float32, on the device of ``weight``.
    """
    tokens = next_tokens.to(weight.device).clamp(min=0)  # -1 would be an out-of-range index
    rows = weight[tokens].float()  # (B, H): only the rows needed
    values = torch.stack(
        [(hidden_at[n].to(rows.device).float() * rows).sum(dim=-1) for n in layers], dim=1
    )  # (B, len(layers))
    if bias is not None:
        values = values + bias[tokens].float()[:, None]
    return values


class FingerprintCapture:
    """Forward hooks that compute each sequence's fingerprint during one forward pass.

    Hooks on the selected decoder layers copy out each sequence's hidden state at P; a forward
    pre-hook on the LM head then dots them, and the final-normed hidden state the head receives,
    with the head's rows of the tokens at P + 1 while the head's weight is at hand (complete even
    under DeepSpeed ZeRO-3, whose own pre-hook, registered at engine start, runs first). Use as a
    context manager around the forward pass that computes log-probs, then call :meth:`features`.
    The head may see only the last positions (``logits_to_keep``), as long as they include P.

    Example:
        >>> tokens = answer_tokens(input_ids, positions, attention_mask)  # doctest: +SKIP
        >>> with FingerprintCapture(model, positions, tokens) as capture:  # doctest: +SKIP
        ...     logits = model(input_ids, attention_mask=attention_mask).logits
        >>> features = capture.features()  # doctest: +SKIP

    Args:
        model: A Hugging Face causal LM (or a PEFT model wrapping one).
        positions: (B,) position P in each input sequence of the token that carries the anchor;
            -1 (or any negative) for a sequence without one.
        next_tokens: (B,) the token at P + 1 of each sequence (:func:`answer_tokens`); -1 (or
            any negative) where there is none.
        selection: Which layers to keep, see :class:`LayerSelection`.
        k: Number of layers for ``last_k``.
    """

    def __init__(
        self,
        model: nn.Module,
        positions: torch.Tensor,
        next_tokens: torch.Tensor,
        selection: LayerSelection | str = LayerSelection.LAST_HALF,
        k: int = 1,
    ) -> None:
        if not isinstance(positions, torch.Tensor) or positions.dim() != 1:
            raise InvalidArgumentError("positions", "a 1-D tensor of shape (B,)", positions)
        if not isinstance(next_tokens, torch.Tensor) or next_tokens.shape != positions.shape:
            raise InvalidArgumentError(
                "next_tokens",
                f"a tensor of shape {tuple(positions.shape)}, one token per position",
                next_tokens,
            )
        self.model: Any = model
        self.selection = LayerSelection(selection)
        self.k = k
        self.layers_module = decoder_layers(model)
        self.num_layers = len(self.layers_module)
        self.layers = selected_layers(self.num_layers, self.selection, k)
        self.positions = positions.long()
        self.next_tokens = next_tokens.long().to(positions.device)
        self.hidden_at: dict[int, torch.Tensor] = {}
        """Layer n -> (B, H) hidden state at P (P < 0 reads 0), for the selected n < N."""
        self._length: int | None = None  # T of the pass, seen at the last decoder layer
        self._values: torch.Tensor | None = None  # (B, len(layers)), set by the head's pre-hook
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _check_batch(self, hidden: torch.Tensor) -> None:
        if hidden.shape[0] != self.positions.shape[0]:
            raise InvalidArgumentError(
                "positions",
                f"shape ({hidden.shape[0]},), one position per sequence of the batch",
                tuple(self.positions.shape),
            )

    def _hook(self, layer: int) -> Any:
        def copy_out(module: nn.Module, inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, H)
            self._check_batch(hidden)
            self._length = hidden.shape[1]
            if layer < self.num_layers:  # the last layer's value is read at the head
                rows = torch.arange(hidden.shape[0], device=hidden.device)
                pos = self.positions.to(hidden.device).clamp(min=0)
                self.hidden_at[layer] = hidden[rows, pos].detach().clone()  # (B, H)

        return copy_out

    @torch.no_grad()
    def _at_head(self, head: nn.Module, inputs: tuple[Any, ...]) -> None:
        hidden = inputs[0]  # (B, T', H) final-normed; T' < T when only the last logits are kept
        self._check_batch(hidden)
        if self._length is None:
            raise InvalidArgumentError(
                "model",
                "a causal LM that runs its decoder layers before its LM head",
                type(self.model).__name__,
            )
        skipped = self._length - hidden.shape[1]
        index = self.positions.to(hidden.device) - skipped  # (B,) P among the head's positions
        if bool(((index < 0) & (self.positions.to(hidden.device) >= 0)).any()):
            raise InvalidArgumentError(
                "logits_to_keep",
                "a number of last positions that includes every sequence's position P",
                hidden.shape[1],
            )
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        hidden_at = {**self.hidden_at, self.num_layers: hidden[rows, index.clamp(min=0)]}
        weight: Any = head.weight
        self._values = layer_logits_at(
            weight, getattr(head, "bias", None), hidden_at, self.next_tokens, self.layers
        )

    def __enter__(self) -> FingerprintCapture:
        self.hidden_at.clear()
        self._length, self._values = None, None
        for layer in sorted({*self.layers, self.num_layers}):  # the last one tells T
            module = self.layers_module[layer - 1]
            self._handles.append(module.register_forward_hook(self._hook(layer)))
        head = self.model.get_output_embeddings()
        if not isinstance(head, nn.Module) or not isinstance(
            getattr(head, "weight", None), torch.Tensor
        ):
            raise InvalidArgumentError(
                "model", "a causal LM whose get_output_embeddings() has a weight", head
            )
        self._handles.append(head.register_forward_pre_hook(self._at_head))
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

    def layer_logits(self) -> torch.Tensor:
        """Per-layer logit of the token at P + 1, (B, len(self.layers)) float32, NaN rows if none.

        A row is NaN when P < 0 or its token at P + 1 is negative (none).

        Raises:
            InvalidArgumentError: If no forward pass reached the LM head inside the capture.
        """
        if self._values is None:
            raise InvalidArgumentError(
                "capture",
                "a forward pass of the model run inside `with capture:`",
                "no pass through the LM head",
            )
        out = self._values.clone()
        missing = (self.positions < 0) | (self.next_tokens < 0)
        out[missing.to(out.device)] = math.nan
        return out

    def features(self) -> np.ndarray:
        """The fingerprints, (B, L) float32 numpy with NaN rows for sequences without one."""
        per_layer = self.layer_logits().cpu().numpy()
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
        positions: (B,) absolute position of the anchor token, -1 if none.
        selection: Which layers to keep.
        k: Number of layers for ``last_k``.

    Returns:
        ``(logits, features)``: (B, T, V) logits and (B, L) float32 fingerprints.
    """
    tokens = answer_tokens(input_ids, positions, attention_mask)
    with FingerprintCapture(model, positions, tokens, selection, k) as capture:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits, capture.features()
