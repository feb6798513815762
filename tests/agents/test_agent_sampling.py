"""Shared-prompt forward and the batched sampler against the plain forward pass (float32)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import agents.policy as policy  # noqa: E402
from agents.fingerprint import FingerprintCapture, answer_tokens  # noqa: E402
from agents.losses import overlong_penalty, token_logprobs  # noqa: E402
from agents.policy import (  # noqa: E402
    forward_logprobs,
    load_policy,
    prompt_text,
    sample_responses,
)
from agents.sampling import (  # noqa: E402
    _cache_argument,
    _keeps_last_logits,
    _sample_with_generate,
    groups_share_prompts,
    prompt_positions,
    sample,
    shared_prompt_forward,
    stop_token_ids,
)
from agents.tiny_model import TinyModelConfig, build_char_tokenizer, build_model  # noqa: E402
from agents.value import ValueCapture, value_head_for  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)
TOK = build_char_tokenizer()
V, PAD = len(TOK), TOK.pad_token_id
ARCHS = ["qwen2", "llama", "gpt2"]


def _model(arch: str, tokenizer=TOK):
    """A 2-layer, width-32 causal LM with random weights and a sharp LM head (logit std ~1)."""
    torch.manual_seed(0)
    if arch == "qwen2":
        model = build_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2), tokenizer)
    elif arch == "llama":
        config = transformers.LlamaConfig(
            vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            pad_token_id=PAD, eos_token_id=TOK.eos_token_id, tie_word_embeddings=False,
        )  # fmt: skip
        model = transformers.AutoModelForCausalLM.from_config(config)
    else:
        config = transformers.GPT2Config(
            vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
            eos_token_id=TOK.eos_token_id, tie_word_embeddings=False,
        )  # fmt: skip
        model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(10.0)
    return model.float().eval()


def _favour(model, strengths: dict[int, float]):
    """Favour tokens at every step (1.0: p ~ 0.1): a constant embedding dim only they read."""
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 0.1
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        for token, strength in strengths.items():
            head[token] = 0.0
            head[token, 0] = strength
    return model


def _batch(group_size=2, prompt_lengths=(5, 8, 3), response_lengths=(4, 6, 2, 6, 5, 1)):
    """Left-padded prompts (one per group, repeated) + right-padded responses, random ids."""
    gen = torch.Generator().manual_seed(1)
    width, steps, rows = max(prompt_lengths), max(response_lengths), len(response_lengths)
    ids = torch.randint(7, V, (rows, width + steps), generator=gen)
    mask = torch.zeros(rows, width + steps, dtype=torch.long)
    for row in range(rows):
        prompt = prompt_lengths[row // group_size]
        ids[row, :width] = ids[row - row % group_size, :width]  # the group's prompt
        mask[row, width - prompt : width] = 1
        mask[row, width : width + response_lengths[row]] = 1
    return ids.masked_fill(mask == 0, PAD), mask, width


def _grads(model, ids, mask, width, group_size, temperature):
    model.zero_grad()
    logprobs, _, _ = forward_logprobs(model, ids, mask, width, None, temperature, group_size)
    response_mask = mask[:, width:].float()
    weights = torch.linspace(-1.0, 2.0, logprobs.numel()).view_as(logprobs)
    ((logprobs * weights * response_mask).sum() / response_mask.sum()).backward()
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    return logprobs.detach(), grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prompt_forward_matches_plain_logprobs_and_gradients(arch, temperature, monkeypatch):
    # Pins: group_size=n gives the plain pass's log-probs and parameter gradients (1e-5).
    model = _model(arch)
    ids, mask, width = _batch()
    calls = []
    monkeypatch.setattr(
        policy, "shared_prompt_forward", lambda *a: calls.append(1) or shared_prompt_forward(*a)
    )
    shared, shared_grads = _grads(model, ids, mask, width, 2, temperature)
    assert calls, "the shared path must run for grouped prompts"
    plain, plain_grads = _grads(model, ids, mask, width, 1, temperature)
    on = mask[:, width:].bool()
    torch.testing.assert_close(shared[on], plain[on], atol=1e-5, rtol=0)
    assert (shared[on] - plain[on]).abs().max() < 1e-5 and plain[on].std() > 0.1
    for name, grad in plain_grads.items():
        if grad is None:
            assert shared_grads[name] is None, name
        else:
            torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=0, msg=name)
    assert any(g is not None and g.abs().max() > 1e-3 for g in plain_grads.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_fingerprints_and_values_agree_between_shared_and_plain(arch):
    # Pins: FingerprintCapture (absolute positions, NaN rows) and ValueCapture see the same pass.
    model = _model(arch)
    ids, mask, width = _batch()
    anchors = [1, 4, -1, 5, 3, 0]  # row 2: none; row 3: last token; row 5: only token -> NaN
    positions = torch.tensor([-1 if a < 0 else width + a for a in anchors])
    head = value_head_for(model)
    torch.nn.init.normal_(head.linear.weight)
    out = {}
    for group_size in (2, 1):
        capture = FingerprintCapture(model, positions, answer_tokens(ids, positions, mask), "all")
        with torch.no_grad(), ValueCapture(model, head, width) as critic:
            _, _, features = forward_logprobs(model, ids, mask, width, capture, 0.7, group_size)
        out[group_size] = features, critic.values()
    (shared_f, shared_v), (plain_f, plain_v) = out[2], out[1]
    assert shared_f.shape == plain_f.shape == (6, 2)
    nan_rows = np.isnan(plain_f).any(axis=1)
    assert nan_rows.tolist() == [False, False, True, True, False, True]
    np.testing.assert_array_equal(np.isnan(shared_f), np.isnan(plain_f))
    np.testing.assert_allclose(shared_f[~nan_rows], plain_f[~nan_rows], atol=1e-5, rtol=0)
    on = mask[:, width:].bool()
    assert shared_v.shape == plain_v.shape == on.shape
    torch.testing.assert_close(shared_v[on], plain_v[on], atol=1e-5, rtol=0)


def test_the_temperature_divides_the_float32_logits_of_a_bf16_model():
    # Pins: the log-probs are those of logits.float() / T; dividing in bf16 would round first.
    model = _model("qwen2").to(torch.bfloat16)
    ids, mask, width = _batch(group_size=1, prompt_lengths=(5, 8, 3, 6, 2, 7))
    with torch.no_grad():
        logprobs, logits, _ = forward_logprobs(model, ids, mask, width, None, 0.7)
        raw = model(input_ids=ids, attention_mask=mask, position_ids=prompt_positions(mask))
    raw_logits = raw.logits[:, width - 1 : -1]  # (B, T, V) bf16, predicting the response
    torch.testing.assert_close(logits, raw_logits, atol=0, rtol=0)  # returned unscaled
    want = torch.log_softmax(raw_logits.float() / 0.7, dim=-1).gather(-1, ids[:, width:, None])[
        ..., 0
    ]
    rounded = token_logprobs(raw_logits / 0.7, ids[:, width:])
    on = mask[:, width:].bool()
    torch.testing.assert_close(logprobs[on], want[on], atol=0, rtol=0)
    assert (rounded[on] - want[on]).abs().max() > 1e-3  # bf16 division would be caught


def test_rows_that_do_not_share_prompts_take_the_plain_path(monkeypatch):
    # Pins the fallback: differing prompts or a ragged batch never reach shared_prompt_forward.
    model = _model("qwen2")
    ids, mask, width = _batch(group_size=1, prompt_lengths=(5, 8, 3, 6, 2, 7))
    plain, _, _ = forward_logprobs(model, ids, mask, width)

    def refuse(*args):
        raise AssertionError("the shared path ran on rows that do not share prompts")

    monkeypatch.setattr(policy, "shared_prompt_forward", refuse)
    assert not groups_share_prompts(ids[:, :width], mask[:, :width], 2)
    with torch.no_grad():
        distinct, _, _ = forward_logprobs(model, ids, mask, width, group_size=2)
        grouped_ids, grouped_mask, _ = _batch(group_size=2)
        ragged, _, _ = forward_logprobs(model, grouped_ids, grouped_mask, width, group_size=4)
        reference, _, _ = forward_logprobs(model, grouped_ids, grouped_mask, width)
    torch.testing.assert_close(distinct, plain.detach())
    torch.testing.assert_close(ragged, reference)
    with pytest.raises(InvalidArgumentError):
        shared_prompt_forward(model, grouped_ids, grouped_mask, width, 4)


def test_groups_share_prompts_compares_ids_and_masks():
    # Pins: equal ids with different masks (a pad id that is also a real token) do not share.
    ids = torch.full((4, 3), 9)
    mask = torch.ones(4, 3, dtype=torch.long)
    assert groups_share_prompts(ids, mask, 2) and groups_share_prompts(ids, mask, 4)
    assert not groups_share_prompts(ids, mask, 1) and not groups_share_prompts(ids, mask, 3)
    mask[1, 0] = 0
    assert not groups_share_prompts(ids, mask, 2)
    assert groups_share_prompts(ids[2:], mask[2:], 2)


def _prompts():
    enc = TOK(["<|user|>1+2?<|assistant|>", "<|user|>12*3-4?\n<|assistant|>"], padding=True,
              return_tensors="pt", add_special_tokens=False)  # fmt: skip
    return enc["input_ids"], enc["attention_mask"]


def _rescore(model, prompt_ids, prompt_mask, drawn, group_size, temperature, share):
    sequences = torch.cat([prompt_ids.repeat_interleave(group_size, 0), drawn.responses], 1)
    attention = torch.cat([prompt_mask.repeat_interleave(group_size, 0), drawn.response_mask], 1)
    with torch.no_grad():
        return forward_logprobs(
            model, sequences, attention.long(), prompt_ids.shape[1], None, temperature,
            group_size if share else 1,
        )  # fmt: skip


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("arch", ARCHS)
def test_sampler_logprobs_equal_the_training_forward(arch, temperature):
    # Pins: the cached sampler's log-probs are those the trainer recomputes (1e-5 on the mask).
    model = _model(arch)
    prompt_ids, prompt_mask = _prompts()
    torch.manual_seed(3)
    drawn = sample(model, prompt_ids, prompt_mask, 3, 8, temperature, [TOK.eos_token_id], PAD)
    assert drawn.responses.shape == drawn.logprobs.shape == (6, 8)
    on = drawn.response_mask.bool()
    for share in (True, False):
        logprobs = _rescore(model, prompt_ids, prompt_mask, drawn, 3, temperature, share)[0]
        torch.testing.assert_close(drawn.logprobs[on], logprobs[on], atol=1e-5, rtol=0)
    assert drawn.logprobs.dtype == torch.float32 and drawn.logprobs[on].std() > 0.1


def test_sampler_stops_at_the_first_of_several_stop_ids():
    # Pins: any generation_config eos id ends a row; after it: pad id, mask 0, log-prob 0.
    a, b = 40, 50
    model = _favour(_model("qwen2"), {a: 1.0, b: 1.0})
    model.generation_config.eos_token_id = [a, b]
    stops = stop_token_ids(model, TOK)
    assert stops == sorted({a, b, TOK.eos_token_id})
    prompt_ids, prompt_mask = _prompts()
    torch.manual_seed(0)
    drawn = sample(model, prompt_ids, prompt_mask, 4, 12, 1.0, stops, PAD)
    lengths = drawn.response_mask.sum(1).long()
    enders = set()
    for row in range(8):
        n, tokens = int(lengths[row]), drawn.responses[row].tolist()
        assert drawn.response_mask[row, :n].all() and not drawn.response_mask[row, n:].any()
        assert not set(tokens[: n - 1]) & set(stops), "a row ran past a stop token"
        assert tokens[n:] == [PAD] * (len(tokens) - n)
        assert not drawn.logprobs[row, n:].any() and (drawn.logprobs[row, :n] < 0).all()
        if tokens[n - 1] in stops:
            enders.add(tokens[n - 1])
    assert {a, b} <= enders and len(set(lengths.tolist())) > 2  # both ids, at various steps
    logprobs = _rescore(model, prompt_ids, prompt_mask, drawn, 4, 1.0, True)[0]
    on = drawn.response_mask.bool()
    torch.testing.assert_close(drawn.logprobs[on], logprobs[on], atol=1e-5, rtol=0)


def test_stop_token_ids_collects_every_eos():
    # Pins: tokenizer eos + config eos + every generation_config eos, deduplicated and sorted.
    model = _model("qwen2")
    model.config.eos_token_id = 5
    model.generation_config.eos_token_id = [9, 7, 5]
    assert stop_token_ids(model, TOK) == [TOK.eos_token_id, 5, 7, 9]
    model.config.eos_token_id = model.generation_config.eos_token_id = None
    assert stop_token_ids(model, TOK) == [TOK.eos_token_id]
    with pytest.raises(InvalidArgumentError):
        stop_token_ids(object(), type("NoEos", (), {"eos_token_id": None})())


def _first_stop_lengths(responses, stops):
    """Each row's length counted from its tokens: up to and including the first stop, else all."""
    lengths = []
    for row in responses.tolist():
        ends = [i for i, token in enumerate(row) if token in stops]
        lengths.append(ends[0] + 1 if ends else len(row))
    return torch.tensor(lengths)


@pytest.mark.parametrize("stateful", [False, True])
def test_pad_equal_to_eos_masks_the_tail_but_not_the_stop(stateful, tmp_path, monkeypatch):
    # Pins: a tokenizer without a pad token pads with its eos (load_policy); the stop (that eos)
    # stays in the loss mask, the eos padding after it does not, and the lengths DAPO's overlong
    # penalty reads are the real ones, in the cached sampler and in the generate fallback.
    tokenizer = build_char_tokenizer()
    eos = tokenizer.eos_token_id
    model = _favour(_model("qwen2"), {eos: 1.0})
    model.save_pretrained(tmp_path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tiny_model.json").write_text(json.dumps({}))
    model, tokenizer = load_policy(tmp_path)
    assert tokenizer.pad_token_id == eos
    monkeypatch.setattr(model, "_is_stateful", stateful, raising=False)
    prompts = ["<|user|>1+2?<|assistant|>", "<|user|>12*3-4?\n<|assistant|>"]
    torch.manual_seed(0)
    batch = sample_responses(model.eval(), tokenizer, prompts, 8, 24, 1.0)
    lengths = batch.response_mask.sum(1).long()
    assert torch.equal(lengths, _first_stop_lengths(batch.responses, {eos}))
    stopped = lengths < 24
    assert stopped.sum() > 4 and len(set(lengths.tolist())) > 2
    assert (batch.responses == eos).sum(1).gt(1).any(), "no eos padding after a stop"
    rows = torch.arange(len(lengths))
    assert (batch.responses[rows[stopped], lengths[stopped] - 1] == eos).all()
    assert batch.response_mask[rows[stopped], lengths[stopped] - 1].eq(1).all()
    penalty = overlong_penalty(lengths, 24, 4)
    assert (penalty[lengths <= 20] == 0).all() and (penalty[lengths <= 20] == 0).sum() > 4
    on = batch.response_mask.bool()
    assert not batch.sampler_logprobs[~on].any() and (batch.sampler_logprobs[on] < 0).all()


_END = "<|im_end|>"
_TURN_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    + _END
    + "\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""A chat template that closes each turn with its own special token, as Qwen's does."""


def _turn_tokenizer():
    tokenizer = build_char_tokenizer()
    tokenizer.add_tokens([_END], special_tokens=True)
    tokenizer.chat_template = _TURN_TEMPLATE
    return tokenizer


def test_stop_tokens_include_the_chat_templates_end_of_turn():
    # Pins: a base checkpoint (eos <|endoftext|>-like) whose tokenizer's chat template ends a
    # turn with <|im_end|> stops there; a plain-text turn end (the tiny model's newline), no
    # template or a template that refuses the probe conversation adds nothing.
    tokenizer = _turn_tokenizer()
    end = tokenizer.convert_tokens_to_ids(_END)
    model = _model("qwen2", tokenizer)
    assert stop_token_ids(model, tokenizer) == sorted({tokenizer.eos_token_id, end})
    from agents.sampling import chat_end_token_id

    assert chat_end_token_id(tokenizer) == end
    assert chat_end_token_id(TOK) is None and stop_token_ids(model, TOK) == [TOK.eos_token_id]
    tokenizer.chat_template = "{{ raise_exception('system message required') }}"
    assert chat_end_token_id(tokenizer) is None
    tokenizer.chat_template = None
    assert stop_token_ids(model, tokenizer) == [tokenizer.eos_token_id]


@pytest.mark.parametrize("stateful", [False, True])
def test_chat_prompts_stop_at_the_templates_end_of_turn(stateful, monkeypatch):
    # Pins: responses to chat-template prompts end at <|im_end|> (mask 0 after it, nothing
    # decoded past it), in the cached sampler and in the generate fallback.
    tokenizer = _turn_tokenizer()
    end = tokenizer.convert_tokens_to_ids(_END)
    model = _favour(_model("qwen2", tokenizer), {end: 1.0})
    monkeypatch.setattr(model, "_is_stateful", stateful, raising=False)
    info = {"messages": [{"role": "user", "content": "1+2?"}]}
    prompt = prompt_text(tokenizer, "", info)
    assert prompt.endswith("<|assistant|>") and _END in prompt
    torch.manual_seed(0)
    batch = sample_responses(model, tokenizer, [prompt, prompt], 8, 24, 1.0)
    lengths = batch.response_mask.sum(1).long()
    assert torch.equal(lengths, _first_stop_lengths(batch.responses, {end, tokenizer.eos_token_id}))
    rows = torch.arange(len(lengths))
    ended = batch.responses[rows, lengths - 1] == end
    assert ended.sum() > 4, "no response stopped at the end of turn"
    assert ((batch.responses == end) & batch.response_mask.bool()).sum(1).le(1).all()


def test_a_saved_generation_config_does_not_change_sampling(tmp_path):
    # Pins: repetition penalty, min_new_tokens, top-k, no-repeat-ngram from the checkpoint unused.
    # 16 rows and favoured tokens make each leak's absence visible whatever the exact draws.
    model = _favour(_model("qwen2"), {TOK.eos_token_id: 1.2, 30: 1.5})
    model.generation_config.update(
        do_sample=True, repetition_penalty=1.5, min_new_tokens=5, top_k=3, no_repeat_ngram_size=2
    )
    model.save_pretrained(tmp_path)
    TOK.save_pretrained(tmp_path)
    (tmp_path / "tiny_model.json").write_text(json.dumps({}))
    model, tokenizer = load_policy(tmp_path)
    assert model.generation_config.top_k == 3 and model.generation_config.min_new_tokens == 5
    prompt_ids, prompt_mask = _prompts()
    prompts = tokenizer.batch_decode(prompt_ids, skip_special_tokens=False)
    prompts = [p.replace(tokenizer.pad_token, "") for p in prompts]
    torch.manual_seed(0)
    batch = sample_responses(model, tokenizer, prompts, 8, 12, 0.8)
    assert torch.equal(batch.prompt_ids, prompt_ids.repeat_interleave(8, 0))
    torch.manual_seed(0)
    generated = _sample_with_generate(
        model, prompt_ids, prompt_mask, 8, 12, 0.8, stop_token_ids(model, tokenizer), PAD
    )
    for responses, mask, sampler in (
        (batch.responses, batch.response_mask, batch.sampler_logprobs),
        (generated.responses, generated.response_mask, generated.logprobs),
    ):
        drawn = type(generated)(responses, mask, sampler)
        logprobs, logits, _ = _rescore(model, prompt_ids, prompt_mask, drawn, 8, 0.8, True)
        on = mask.bool()
        assert (sampler - logprobs)[on].abs().max() < 1e-4
        chosen = logits.gather(-1, responses[..., None])
        rank = (logits > chosen).sum(-1)  # 0: the most likely token
        assert (rank[on] >= 3).any(), "only top-3 tokens were drawn: top_k leaked"
        assert (mask.sum(1) < 5).any(), "no response shorter than 5: min_new_tokens leaked"
        pairs = [
            list(zip(r[: n - 1], r[1:n], strict=True))
            for r, n in zip(responses.tolist(), mask.sum(1).int(), strict=True)
        ]
        assert any(len(p) > len(set(p)) for p in pairs), (
            "no repeated bigram: no_repeat_ngram leaked"
        )


def test_generate_fallback_neutralises_every_setting_a_config_can_switch_on():
    # Pins: settings that would change or cut the draw, or crash generate, are neutral there too.
    from transformers import WatermarkingConfig

    model = _favour(_model("qwen2"), {TOK.eos_token_id: 0.9, 30: 1.5})
    prompt_ids, prompt_mask = _prompts()
    torch.manual_seed(0)
    plain = _sample_with_generate(
        model, prompt_ids, prompt_mask, 4, 12, 1.0, [TOK.eos_token_id], PAD
    )
    model.generation_config.update(
        do_sample=True,
        min_length=8,
        top_h=0.2,
        guidance_scale=3.0,
        watermarking_config=WatermarkingConfig(bias=20.0),
        max_time=1e-9,
        num_return_sequences=2,
        prompt_lookup_num_tokens=3,
    )
    torch.manual_seed(0)
    saved = _sample_with_generate(
        model, prompt_ids, prompt_mask, 4, 12, 1.0, [TOK.eos_token_id], PAD
    )
    assert torch.equal(saved.responses, plain.responses)
    assert torch.equal(saved.logprobs, plain.logprobs)


def test_sampling_is_reproducible_from_the_torch_seed():
    # Pins: the same torch.manual_seed gives the same tokens and log-probs.
    model = _model("llama")
    prompt_ids, prompt_mask = _prompts()
    runs = []
    for seed in (11, 11, 12):
        torch.manual_seed(seed)
        runs.append(sample(model, prompt_ids, prompt_mask, 3, 8, 0.9, [TOK.eos_token_id], PAD))
    assert torch.equal(runs[0].responses, runs[1].responses)
    assert torch.equal(runs[0].logprobs, runs[1].logprobs)
    assert not torch.equal(runs[0].responses, runs[2].responses)


@pytest.mark.parametrize("stateful", [False, True])
def test_only_stateful_models_sample_through_generate(stateful, monkeypatch):
    # Pins the dispatch: the cached sampler for plain models, generate for recurrent ones.
    model = _model("qwen2")
    monkeypatch.setattr(model, "_is_stateful", stateful, raising=False)
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(1) or generate(**kw))
    prompt_ids, prompt_mask = _prompts()
    torch.manual_seed(0)
    drawn = sample(model, prompt_ids, prompt_mask, 2, 6, 0.7, [TOK.eos_token_id], PAD)
    assert bool(calls) == stateful
    logprobs = _rescore(model, prompt_ids, prompt_mask, drawn, 2, 0.7, True)[0]
    on = drawn.response_mask.bool()
    torch.testing.assert_close(drawn.logprobs[on], logprobs[on], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_shared_prefix_decoder_draws_what_the_models_own_decoding_draws(arch, monkeypatch):
    # Pins the Llama-family decoder (prompt keys stored once per group, GQA included): the same
    # tokens and log-probs (1e-5) as decoding through the model's forward; GPT-2 never uses it.
    from agents import sampling

    model = _favour(_model(arch), {TOK.eos_token_id: 0.6})
    assert sampling._SharedPrefixDecoder.applies(model) == (arch != "gpt2")
    prompt_ids, prompt_mask = _prompts()
    torch.manual_seed(3)
    fast = sample(model, prompt_ids, prompt_mask, 3, 10, 0.9, [TOK.eos_token_id], PAD)
    monkeypatch.setattr(sampling._SharedPrefixDecoder, "applies", classmethod(lambda c, m: False))
    torch.manual_seed(3)
    plain = sample(model, prompt_ids, prompt_mask, 3, 10, 0.9, [TOK.eos_token_id], PAD)
    assert torch.equal(fast.responses, plain.responses)
    assert (fast.response_mask.sum(1) < 10).any()  # some rows stopped: masking is exercised
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)


def test_a_peft_model_gets_the_cache_and_logits_arguments_of_the_model_it_wraps():
    # PeftModel.forward takes (*args, **kwargs): the wrapped causal LM's signature decides
    # whether the prefill may skip the LM head and under which name the cache goes in.
    peft = pytest.importorskip("peft")
    model = _model("qwen2")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert _cache_argument(lora) == _cache_argument(model)
    assert _keeps_last_logits(lora) and _keeps_last_logits(model)
