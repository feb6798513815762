"""Sampling a causal LM's responses and scoring them with its forward, each prompt computed once.

Every batch of the agent is made of groups: ``group_size`` responses to one prompt, in
consecutive rows. Two pieces here use that:

* :func:`shared_prompt_forward`: one forward pass over prompt + response in which the prompt of a
  group runs once and its keys and values serve all the group's responses (gradients flow back
  into the prompt once per group). It gives the same log-probs and gradients as the plain pass
  over the full sequences (tested to 1e-5), for a fraction of the work when the prompt is long.
* :func:`sample`: a batched sampler for small causal LMs: the prompts of the groups are prefilled
  once, then one token per step is decoded, by a decoder that keeps each group's prompt keys once
  for Llama-family models (Llama, Qwen2, Mistral; ``_SharedPrefixDecoder``), through the model's
  own forward and key/value cache for the others. It draws from the temperature-scaled logits
  alone (no top-k/p, no repetition penalty, whatever the checkpoint's ``generation_config``
  says), stops each row at the first of its stop tokens (:func:`stop_token_ids`: the eos ids and
  the chat template's end of turn), masks what follows by position, never by the pad id (which
  may be the eos itself), and returns the log-prob of every sampled token, which the trainer's
  forward reproduces (``sampler_logprob_gap``). Models with a recurrent state (``_is_stateful``)
  use Hugging Face ``generate`` instead, with every logits processor that a saved
  ``generation_config`` could switch on set to its neutral value, and the same stop and masking.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from meds_gym.errors import InvalidArgumentError
from meds_gym.integrations.hf import unwrapped_model


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a response: the eos ids and the chat template's end of turn.

    That is the tokenizer's eos, the model's ``eos_token_id``(s) (a ``generation_config`` may
    list several: an end-of-turn and an end-of-text token) and, for a tokenizer with a chat
    template, the special token that closes an assistant turn (:func:`chat_end_token_id`): the
    agents' prompts go through the template whenever there is one, so a base checkpoint whose eos
    is ``<|endoftext|>`` still stops at the template's ``<|im_end|>``. A response stops at the
    first of any of them.
    """
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            ids += [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise InvalidArgumentError(
            "tokenizer", "a tokenizer or model with an eos token", type(tokenizer).__name__
        )
    end_of_turn = chat_end_token_id(tokenizer)
    if end_of_turn is not None:
        ids.append(end_of_turn)
    return sorted(set(ids))


_REPLY_PROBE = "meds-gym reply probe"
"""An assistant message whose rendering shows what the chat template writes after a reply."""


def chat_end_token_id(tokenizer: Any) -> int | None:
    """The special token the tokenizer's chat template writes right after an assistant reply.

    The template renders a user turn and an assistant reply; the first token after the reply is
    the end of turn (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``, or the eos itself) if it
    is a special token of the tokenizer. A template that ends a turn with plain text (the tiny
    model's newline), or that refuses that conversation, gives None.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    from jinja2 import TemplateError

    conversation = [
        {"role": "user", "content": "?"},
        {"role": "assistant", "content": _REPLY_PROBE},
    ]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
    except (TemplateError, ValueError, TypeError, KeyError):
        return None
    _, found, after = str(text).rpartition(_REPLY_PROBE)
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if found else []
    if not ids:
        return None
    token = getattr(tokenizer, "added_tokens_decoder", {}).get(ids[0])
    return int(ids[0]) if token is not None and token.special else None


def prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded block: 0, 1, ... from each row's first real token."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _forward_parameters(model: Any) -> Any:
    """The parameters of the forward of the causal LM inside ``model``'s wrappers (PEFT)."""
    return inspect.signature(unwrapped_model(model).forward).parameters


def _keeps_last_logits(model: Any) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (skip the LM head on the prompt)."""
    return "logits_to_keep" in _forward_parameters(model)


def _cache_argument(model: Any) -> str:
    """The name under which the model's forward takes its key/value cache."""
    parameters = _forward_parameters(model)
    return "cache" if "cache" in parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    """The key/value cache a forward pass returned (``cache``, or ``past_key_values`` before)."""
    return output["cache"] if "cache" in output else output["past_key_values"]


def _prefill(
    model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
) -> tuple[torch.Tensor, Any]:
    """Run the (G, P) left-padded prompts once: their last logits (G, V) and key/value cache.

    The LM head runs on the last position only where the model allows it.
    """
    extra = {"logits_to_keep": 1} if _keeps_last_logits(model) else {}
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=prompt_positions(prompt_mask),
        use_cache=True,
        **extra,
    )
    return out.logits[:, -1], _returned_cache(out)


def groups_share_prompts(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int
) -> bool:
    """Whether the rows form blocks of ``group_size`` identical prompts (ids and mask)."""
    rows = int(prompt_ids.shape[0])
    if group_size < 2 or rows % group_size:
        return False
    for block in (prompt_ids, prompt_mask):
        grouped = block.reshape(rows // group_size, group_size, -1)
        if not bool((grouped == grouped[:, :1]).all()):
            return False
    return True


def shared_prompt_forward(
    model: Any,
    sequences: torch.Tensor,
    attention: torch.Tensor,
    prompt_width: int,
    group_size: int,
    response_hook: Any = None,
) -> torch.Tensor:
    """Logits predicting each response token, each group's prompt computed once.

    The prompt rows of each group (the first row of the group) run as one batch with the
    key/value cache on; the cache is repeated ``group_size`` times and the responses run on top
    of it. Gradients of the response logits flow through the cache into the prompt pass.

    Args:
        model: A Hugging Face causal LM with a key/value cache.
        sequences: (B, P + T) left-padded prompts followed by right-padded responses; rows
            ``g * group_size ... (g + 1) * group_size - 1`` share one prompt.
        attention: (B, P + T) attention mask, 0 on padding.
        prompt_width: P.
        group_size: Responses per prompt (B must be a multiple of it).
        response_hook: A context manager entered around the response pass only (it sees
            (B, T) inputs: the fingerprint capture, with positions counted from the response).

    Returns:
        (B, T, V) logits, row b, column t predicting response token t (the prompt's last logit
        first, then the response pass's logits but the last).
    """
    rows = int(sequences.shape[0])
    if group_size < 1 or rows % group_size:
        raise InvalidArgumentError("group_size", f"a divisor of the batch size {rows}", group_size)
    prompt_ids = sequences[::group_size, :prompt_width]  # (G, P)
    prompt_mask = attention[::group_size, :prompt_width]  # (G, P)
    last, cache = _prefill(model, prompt_ids, prompt_mask)
    cache.batch_repeat_interleave(group_size)
    first = last[:, None].repeat_interleave(group_size, dim=0)  # (B, 1, V)
    lengths = prompt_mask.sum(dim=1, keepdim=True).repeat_interleave(group_size, dim=0)  # (B, 1)
    response_mask = attention[:, prompt_width:]
    positions = lengths + prompt_positions(response_mask)  # (B, T): continue after the prompt
    inputs = {
        "input_ids": sequences[:, prompt_width:],
        "attention_mask": attention,
        "position_ids": positions,
        _cache_argument(model): cache,
        "use_cache": True,
    }
    if response_hook is None:
        rest = model(**inputs).logits
    else:
        with response_hook:
            rest = model(**inputs).logits
    return torch.cat([first, rest[:, :-1]], dim=1)  # (B, T, V)


def _reserve(cache: Any, extra: int) -> None:
    """Give each layer of a ``DynamicCache`` room for ``extra`` more positions, written in place.

    A plain dynamic layer concatenates its keys and values with every new token, copying the whole
    cache each step; a reserved layer writes the new position into a buffer and returns a view.
    Layers of other kinds (sliding windows, recurrent states) are left as they are.
    """
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers before cache layers: keep concatenating
        return
    for each in getattr(cache, "layers", []):
        layer: Any = each
        if type(each) is DynamicLayer and layer.is_initialized:
            rows, heads, length, _ = layer.keys.shape
            buffers = [
                block.new_empty(rows, heads, length + extra, block.shape[-1])
                for block in (layer.keys, layer.values)
            ]
            buffers[0][:, :, :length] = layer.keys
            buffers[1][:, :, :length] = layer.values
            layer.__class__ = _reserved_layer_class()
            layer.buffers, layer.length = buffers, length


@functools.cache
def _reserved_layer_class() -> Any:
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A dynamic cache layer over preallocated buffers (see :func:`_reserve`)."""

        buffers: list[torch.Tensor]
        length: int

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            end = self.length + key_states.shape[-2]
            keys, values = self.buffers
            if end > keys.shape[-2]:  # past the reservation: grow as a plain layer from here
                layer: Any = self
                layer.__class__ = DynamicLayer
                return DynamicLayer.update(self, key_states, value_states, *args, **kwargs)
            keys[:, :, self.length : end] = key_states
            values[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = keys[:, :, :end], values[:, :, :end]
            return keys[:, :, :end], values[:, :, :end]

    return ReservedLayer


@dataclass
class Samples:
    """What :func:`sample` draws: response tokens, their mask and their log-probs."""

    responses: torch.Tensor
    """(B, T) token ids up to and including the first stop token, then padding."""
    response_mask: torch.Tensor
    """(B, T) float, 1 on response tokens (the stop token included)."""
    logprobs: torch.Tensor
    """(B, T) float32 log-prob of each sampled token under the sampling distribution, 0 on
    padding."""


def _mask_after_stop(tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True strictly after each row's first stop token."""
    is_stop = torch.isin(tokens, stop_ids)
    return (is_stop.cumsum(dim=1) - is_stop.long()) > 0


@torch.no_grad()
def sample(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    stop_ids: list[int],
    pad_token_id: int,
    reserve: bool = True,
) -> Samples:
    """Sample ``group_size`` responses to each prompt (pure temperature sampling).

    Args:
        model: The causal LM (in eval mode).
        prompt_ids: (G, P) left-padded prompt ids, one row per group.
        prompt_mask: (G, P) their attention mask.
        group_size: Responses per prompt.
        max_new_tokens: Longest response.
        temperature: The logits are divided by it before sampling (> 0).
        stop_ids: Tokens that end a response (:func:`stop_token_ids`).
        pad_token_id: Written after a response's stop token.
        reserve: Write each step's keys and values into buffers reserved for the whole response
            instead of concatenating the cache every step (same numbers, fewer copies).

    Returns:
        The G * group_size responses, grouped by prompt.
    """
    if not temperature > 0:
        raise InvalidArgumentError("temperature", "a float > 0", temperature)
    if max_new_tokens < 1 or group_size < 1:
        raise InvalidArgumentError(
            "max_new_tokens/group_size", "ints >= 1", (max_new_tokens, group_size)
        )
    if getattr(model, "_is_stateful", False):
        return _sample_with_generate(
            model,
            prompt_ids,
            prompt_mask,
            group_size,
            max_new_tokens,
            temperature,
            stop_ids,
            pad_token_id,
        )
    device = prompt_ids.device
    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)
    last, cache = _prefill(model, prompt_ids, prompt_mask)
    logits = last.repeat_interleave(group_size, dim=0)  # (B, V)
    decode: Any = (
        _SharedPrefixDecoder(model, cache, prompt_mask, group_size, max_new_tokens)
        if _SharedPrefixDecoder.applies(model)
        else _CacheDecoder(model, cache, prompt_mask, group_size, max_new_tokens, reserve)
    )
    rows = int(logits.shape[0])
    position = prompt_mask.sum(dim=1, keepdim=True).repeat_interleave(group_size, dim=0)  # (B, 1)
    tokens = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    active = torch.ones(rows, dtype=torch.bool, device=device)
    steps = 0
    for t in range(max_new_tokens):
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, V)
        token = torch.multinomial(logp.exp(), 1).squeeze(1)  # (B,)
        token = torch.where(active, token, pad_token_id)
        tokens[:, t] = token
        logprobs[:, t] = logp.gather(1, token[:, None]).squeeze(1) * active
        steps = t + 1
        fed = active.long()  # the token just drawn is real where the row was still running
        active = active & ~torch.isin(token, stops)
        if t + 1 == max_new_tokens or not bool(active.any()):
            break
        logits = decode(token, fed, position)
        position = position + 1
    tokens, logprobs = tokens[:, :steps], logprobs[:, :steps]
    after = _mask_after_stop(tokens, stops)
    return Samples(
        responses=tokens.masked_fill(after, pad_token_id),
        response_mask=(~after).float(),
        logprobs=logprobs.masked_fill(after, 0.0),
    )


class _CacheDecoder:
    """One decoding step through the model's own forward and its key/value cache (any model)."""

    def __init__(
        self,
        model: Any,
        cache: Any,
        prompt_mask: torch.Tensor,
        group_size: int,
        max_new_tokens: int,
        reserve: bool,
    ) -> None:
        cache.batch_repeat_interleave(group_size)
        if reserve:
            _reserve(cache, max_new_tokens)
        self.model, self.cache = model, cache
        self.cache_argument = _cache_argument(model)
        self.mask = prompt_mask.repeat_interleave(group_size, dim=0)  # (B, P + t)

    def __call__(
        self, token: torch.Tensor, fed: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        """(B, V) logits after feeding ``token`` (B,) at ``position`` (B, 1); ``fed`` masks it."""
        self.mask = torch.cat([self.mask, fed[:, None]], dim=1)
        out = self.model(
            input_ids=token[:, None],
            attention_mask=self.mask,
            position_ids=position,
            use_cache=True,
            **{self.cache_argument: self.cache},
        )
        return out.logits[:, -1]


def _joined_linear(
    module: Any, names: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Weight and bias computing the named linears of ``module`` side by side; their widths.

    Plain tensors, not a new ``nn.Linear``, whose initialisation would draw from the global
    generator the sampler draws tokens from.
    """
    parts = [getattr(module, name) for name in names]
    weight = torch.cat([part.weight.detach() for part in parts])
    bias = None
    if any(part.bias is not None for part in parts):
        bias = torch.cat(
            [
                part.bias.detach() if part.bias is not None else weight.new_zeros(part.out_features)
                for part in parts
            ]
        )
    return weight, bias, [part.out_features for part in parts]


class _SharedPrefixDecoder:
    """One decoding step of a Llama-family model with each group's prompt keys stored once.

    The prompt's keys and values stay at (G, heads, P, d): each step scores the n queries of a
    group against them in one matmul, and against each row's own response keys (kept in buffers
    reserved for the whole response), instead of reading n copies of the prompt. The layers' own
    modules (norms, projections, rotary embedding, MLP) compute everything else, so the logits
    equal the model's forward (the sampler's log-probs are checked against the trainer's every
    iteration: ``sampler_logprob_gap``). Applies to Llama, Qwen2 and Mistral models without
    sliding windows; other models decode through :class:`_CacheDecoder`.
    """

    MODEL_TYPES = frozenset({"llama", "qwen2", "mistral"})

    @classmethod
    def applies(cls, model: Any) -> bool:
        """Whether ``model`` has the plain Llama-family layout this decoder reproduces."""
        if getattr(model.config, "model_type", None) not in cls.MODEL_TYPES:
            return False
        base = getattr(model, "model", None)
        needed = ("embed_tokens", "rotary_emb", "norm", "layers")
        if base is None or not all(hasattr(base, name) for name in needed):
            return False
        for layer in base.layers:
            attention = getattr(layer, "self_attn", None)
            parts = ("q_proj", "k_proj", "v_proj", "o_proj", "scaling", "head_dim")
            if attention is None or not all(hasattr(attention, name) for name in parts):
                return False
            if getattr(attention, "sliding_window", None) or hasattr(attention, "q_norm"):
                return False
            mlp = getattr(layer, "mlp", None)
            if mlp is None or not all(
                isinstance(getattr(mlp, name, None), torch.nn.Linear)
                for name in ("gate_proj", "up_proj", "down_proj")
            ):
                return False
            if not all(
                isinstance(getattr(attention, name), torch.nn.Linear)
                for name in ("q_proj", "k_proj", "v_proj")
            ):
                return False
        return True

    def __init__(
        self,
        model: Any,
        cache: Any,
        prompt_mask: torch.Tensor,
        group_size: int,
        max_new_tokens: int,
    ) -> None:
        import sys

        self.model, self.base = model, model.model
        self.n = group_size
        first = self.base.layers[0].self_attn
        self.rotary = sys.modules[type(first).__module__].apply_rotary_pos_emb
        self.prefix = [(layer.keys, layer.values) for layer in cache.layers]  # (G, KV, P, d)
        groups, kv_heads, width, head_dim = self.prefix[0][0].shape
        rows = groups * group_size
        self.buffers = [
            (
                keys.new_empty(rows, kv_heads, max_new_tokens, head_dim),
                values.new_empty(rows, kv_heads, max_new_tokens, values.shape[-1]),
            )
            for keys, values in self.prefix
        ]
        # The weights do not change while sampling: join q/k/v and gate/up into one matmul each.
        self.qkv = [
            _joined_linear(layer.self_attn, ("q_proj", "k_proj", "v_proj"))
            for layer in self.base.layers
        ]
        self.gate_up = [
            _joined_linear(layer.mlp, ("gate_proj", "up_proj")) for layer in self.base.layers
        ]
        dtype = self.prefix[0][0].dtype
        blocked = torch.finfo(dtype).min
        prompt = prompt_mask.repeat_interleave(group_size, dim=0)  # (B, P)
        self.bias = torch.zeros(rows, 1, 1, width + max_new_tokens, dtype=dtype)
        self.bias[:, 0, 0, :width] = torch.where(prompt > 0, 0.0, blocked)
        self.bias = self.bias.to(prompt_mask.device)
        self.blocked, self.width, self.t = blocked, width, 0

    def _attend(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        """(B, H, d) attention output of the step's queries ``q`` (B, H, d)."""
        keys, values = self.prefix[layer]
        groups, kv_heads, width, head_dim = keys.shape
        rows, heads, _ = q.shape
        per_kv = heads // kv_heads
        n, t = self.n, self.t + 1
        q = q.view(rows, kv_heads, per_kv, head_dim)
        grouped = q.view(groups, n, kv_heads, per_kv, head_dim).transpose(1, 2)
        grouped = grouped.reshape(groups, kv_heads, n * per_kv, head_dim)
        scores_prefix = torch.matmul(grouped, keys.transpose(-1, -2))  # (G, KV, n * g, P)
        scores_prefix = scores_prefix.view(groups, kv_heads, n, per_kv, width).transpose(1, 2)
        response_keys, response_values = self.buffers[layer]
        scores_own = torch.matmul(q, response_keys[:, :, :t].transpose(-1, -2))  # (B, KV, g, t)
        scores = torch.cat([scores_prefix.reshape(rows, kv_heads, per_kv, width), scores_own], -1)
        attention = self.base.layers[layer].self_attn
        scores = scores * attention.scaling + self.bias[..., : width + t]
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        prefix_weights = weights[..., :width].reshape(groups, n, kv_heads, per_kv, width)
        prefix_weights = prefix_weights.transpose(1, 2).reshape(groups, kv_heads, n * per_kv, width)
        out = torch.matmul(prefix_weights, values)  # (G, KV, n * g, d)
        out = (
            out.view(groups, kv_heads, n, per_kv, -1)
            .transpose(1, 2)
            .reshape(rows, kv_heads, per_kv, -1)
        )
        out = out + torch.matmul(weights[..., width:], response_values[:, :, :t])
        return out.reshape(rows, heads, -1)

    def __call__(
        self, token: torch.Tensor, fed: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        """(B, V) logits after feeding ``token`` (B,) at ``position`` (B, 1); ``fed`` masks it."""
        rows = int(token.shape[0])
        self.bias[:, 0, 0, self.width + self.t] = torch.where(fed > 0, 0.0, self.blocked)
        x = self.base.embed_tokens(token[:, None])  # (B, 1, D)
        cos, sin = self.base.rotary_emb(x, position)
        for index, layer in enumerate(self.base.layers):
            attention = layer.self_attn
            head_dim = attention.head_dim
            weight, bias, sizes = self.qkv[index]
            qkv = torch.nn.functional.linear(layer.input_layernorm(x), weight, bias)
            q, k, v = qkv.split(sizes, dim=-1)
            q = q.view(rows, 1, -1, head_dim).transpose(1, 2)  # (B, H, 1, d)
            k = k.view(rows, 1, -1, head_dim).transpose(1, 2)  # (B, KV, 1, d)
            v = v.view(rows, 1, -1, head_dim).transpose(1, 2)
            q, k = self.rotary(q, k, cos, sin)
            keys, values = self.buffers[index]
            keys[:, :, self.t] = k[:, :, 0]
            values[:, :, self.t] = v[:, :, 0]
            out = self._attend(index, q[:, :, 0])  # (B, H, d)
            x = x + attention.o_proj(out.reshape(rows, 1, -1))
            weight, bias, (width, _) = self.gate_up[index]
            joined = torch.nn.functional.linear(layer.post_attention_layernorm(x), weight, bias)
            gate, up = joined.split(width, dim=-1)
            x = x + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        self.t += 1
        return self.model.lm_head(self.base.norm(x))[:, -1]


NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_new_tokens": 0,  # takes precedence over a saved min_length
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_p": None,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "num_beams": 1,
    "num_return_sequences": 1,
    "top_h": None,
    "guidance_scale": None,
    "watermarking_config": None,
    "max_time": None,
    "token_healing": False,
    "prompt_lookup_num_tokens": None,
    "dola_layers": None,
}
"""Settings of ``generate`` that a checkpoint's ``generation_config`` could change and that the
scored log-probs do not include: each at the value that leaves the logits alone."""


def _sample_with_generate(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    stop_ids: list[int],
    pad_token_id: int,
) -> Samples:
    """:func:`sample` through Hugging Face ``generate`` (models with a recurrent state)."""
    ids = prompt_ids.repeat_interleave(group_size, dim=0)
    mask = prompt_mask.repeat_interleave(group_size, dim=0)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
        **NEUTRAL_GENERATION,
    )
    tokens = out.sequences[:, ids.shape[1] :]  # (B, T)
    logits = torch.stack(list(out.logits), dim=1).float() / temperature  # (B, T, V) raw logits
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
    stops = torch.tensor(stop_ids, dtype=torch.long, device=tokens.device)
    after = _mask_after_stop(tokens, stops)
    return Samples(
        responses=tokens.masked_fill(after, pad_token_id),
        response_mask=(~after).float(),
        logprobs=logprobs.masked_fill(after, 0.0),
    )
