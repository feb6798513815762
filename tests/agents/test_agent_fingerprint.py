"""The hooked fingerprint against the slow computation from ``output_hidden_states=True``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agents.fingerprint import (  # noqa: E402
    FingerprintCapture,
    LayerSelection,
    answer_fingerprint,
    answer_tokens,
    boxed_brace_char,
    boxed_brace_token,
    fingerprint_dim,
    selected_layers,
)
from agents.tiny_model import build_char_tokenizer  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402
from tests.partitioned import partitioned_lm_head  # noqa: E402

torch.set_num_threads(1)

RESPONSES = [
    "3*4=12\n2+12=14\n\\boxed{14}",
    "first \\boxed{9} then \\boxed{20}",  # the last \boxed counts
    "no final answer here",
    "cut short \\boxed{",  # the brace is the last token: no answer token follows
]


def _model(arch: str, tokenizer, layers: int = 4):
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    if arch == "qwen2":
        config = transformers.Qwen2Config(**common, tie_word_embeddings=False)
    else:
        config = transformers.LlamaConfig(**common, tie_word_embeddings=True)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    # Random-init biases are zero; give the LM head none (Llama) and check real logits differ
    # between layers, so that a mix-up of layer indices cannot pass.
    return model


def _batch(tokenizer):
    prompt = tokenizer("<|user|>What is 2+3*4?\n<|assistant|>", add_special_tokens=False).input_ids
    rows, positions = [], []
    for text in RESPONSES:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        brace = boxed_brace_token(tokenizer, text)
        positions.append(-1 if brace is None else len(prompt) + brace)
        rows.append(prompt + ids)
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # right padding
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    lengths = attention.sum(dim=1)
    return input_ids, attention, torch.tensor(positions), lengths


def _slow_layer_logits(model, input_ids, attention, positions, lengths, layers):
    """Full hidden states of every layer, LM head on the whole sequence, then pick (P, P+1)."""
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
    hidden_states = out.hidden_states
    assert len(hidden_states) == model.config.num_hidden_layers + 1  # embeddings + N layers
    head = model.get_output_embeddings()
    result = np.full((input_ids.shape[0], len(layers)), np.nan)
    for b in range(input_ids.shape[0]):
        p = int(positions[b])
        if p < 0 or p + 1 >= int(lengths[b]):
            continue
        token = int(input_ids[b, p + 1])
        for j, n in enumerate(layers):
            result[b, j] = float(head(hidden_states[n])[b, p, token].detach())
    return result, hidden_states, out.logits


def test_boxed_brace_char_and_token():
    tok = build_char_tokenizer()
    text = RESPONSES[1]
    char = boxed_brace_char(text)
    assert text[char] == "{" and text[char - 6 : char] == "\\boxed" and char > 10
    assert boxed_brace_token(tok, text) == char  # one token per character
    assert boxed_brace_char("nothing") is None
    assert boxed_brace_token(tok, "nothing") is None


def test_boxed_brace_token_with_merging_tokenizer():
    # A BPE tokenizer trained in-process merges "{" with neighbouring characters; the token found
    # must be the one whose character span covers the brace, whatever it looks like.
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    corpus = ["answer \\boxed{14}", "so \\boxed{12}", "\\boxed{1}"] * 50
    bpe.train_from_iterator(
        corpus, tokenizers.trainers.BpeTrainer(vocab_size=80, special_tokens=["[UNK]"])
    )
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")
    text = "we get \\boxed{14} so \\boxed{12}"
    index = boxed_brace_token(fast, text)
    begin, end = fast(text, return_offsets_mapping=True)["offset_mapping"][index]
    assert begin <= boxed_brace_char(text) < end
    assert "{" in fast.convert_ids_to_tokens(fast(text).input_ids[index])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("selection", ["last_half", "all", "last_k", "diff"])
def test_hooks_match_output_hidden_states(arch, selection):
    tok = build_char_tokenizer()
    model = _model(arch, tok, layers=5)
    input_ids, attention, positions, lengths = _batch(tok)
    layers = selected_layers(5, selection, k=3)
    slow, hidden_states, slow_logits = _slow_layer_logits(
        model, input_ids, attention, positions, lengths, layers
    )
    hooks_before = [len(layer._forward_hooks) for layer in model.model.layers]
    tokens = answer_tokens(input_ids, positions, attention)
    with FingerprintCapture(model, positions, tokens, selection, k=3) as capture:
        logits = model(input_ids=input_ids, attention_mask=attention).logits
    # Hidden states copied by the hooks are bit-identical to Hugging Face's intermediate ones.
    rows = torch.arange(input_ids.shape[0])
    for n in layers:
        if n < 5:
            assert torch.equal(capture.hidden_at[n], hidden_states[n][rows, positions.clamp(min=0)])
    assert torch.equal(logits, slow_logits)
    fast = capture.layer_logits().numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    # Rows: answer, last of two answers, no \boxed, brace with nothing after it.
    assert not np.isnan(fast[:2]).any() and np.isnan(fast[2:]).all()
    features = capture.features()
    assert features.dtype == np.float32
    assert features.shape == (4, fingerprint_dim(5, selection, k=3))
    if selection == "diff":
        np.testing.assert_allclose(features[:2], np.diff(slow[:2], axis=1), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(features[:2], slow[:2], rtol=1e-5, atol=1e-5)
    # Layers really differ, so swapping layer indices could not go unnoticed.
    assert len(set(np.round(slow[0], 4))) == len(layers)
    # Hooks are removed on exit.
    assert [len(layer._forward_hooks) for layer in model.model.layers] == hooks_before


def test_answer_fingerprint_convenience_and_no_grad():
    tok = build_char_tokenizer()
    model = _model("qwen2", tok)
    input_ids, attention, positions, lengths = _batch(tok)
    logits, features = answer_fingerprint(model, input_ids, attention, positions)
    slow, _, _ = _slow_layer_logits(
        model, input_ids, attention, positions, lengths, selected_layers(4)
    )
    assert features.shape == (4, 2)  # last half of 4 layers
    np.testing.assert_allclose(features, slow, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert not logits.requires_grad


def test_capture_inside_grad_pass_does_not_keep_graph():
    tok = build_char_tokenizer()
    model = _model("qwen2", tok)
    input_ids, attention, positions, _ = _batch(tok)
    with FingerprintCapture(model, positions, answer_tokens(input_ids, positions)) as capture:
        logits = model(input_ids=input_ids, attention_mask=attention).logits
    assert logits.requires_grad
    assert all(not h.requires_grad for h in capture.hidden_at.values())
    assert capture.hidden_at[3].shape == (4, 32)  # (B, H): only position P is kept
    assert not capture.layer_logits().requires_grad
    assert not math.isnan(float(capture.features()[0, 0]))


def test_selected_layers():
    assert selected_layers(28) == list(range(15, 29))  # 14 of 28, the paper's choice
    assert selected_layers(28, "all") == list(range(1, 29))
    assert selected_layers(28, LayerSelection.LAST_K, k=3) == [26, 27, 28]
    assert selected_layers(28, "diff") == list(range(14, 29))
    assert fingerprint_dim(28, "diff") == 14
    assert selected_layers(1) == [1] and fingerprint_dim(1, "diff") == 1
    with pytest.raises(InvalidArgumentError, match="`k`"):
        selected_layers(4, "last_k", k=5)
    with pytest.raises(ValueError):
        selected_layers(4, "first_half")


def test_positions_must_match_batch():
    tok = build_char_tokenizer()
    model = _model("qwen2", tok)
    input_ids, attention, _, _ = _batch(tok)
    three = torch.zeros(3, dtype=torch.long)
    with pytest.raises(InvalidArgumentError, match="positions"):
        FingerprintCapture(model, torch.zeros(2, 2, dtype=torch.long), three)
    with pytest.raises(InvalidArgumentError, match="next_tokens"):
        FingerprintCapture(model, three, torch.zeros(2, dtype=torch.long))
    with pytest.raises(InvalidArgumentError, match="positions"):
        answer_tokens(input_ids, three)
    with pytest.raises(InvalidArgumentError, match="one position per sequence"):
        with FingerprintCapture(model, three, three):
            model(input_ids=input_ids, attention_mask=attention)
    # With the last layer alone (read at the LM head), the batch is checked too.
    with pytest.raises(InvalidArgumentError, match="one position per sequence"):
        with FingerprintCapture(model, three, three, "last_k", k=1):
            model(input_ids=input_ids, attention_mask=attention)
    with pytest.raises(InvalidArgumentError, match="no pass through the LM head"):
        FingerprintCapture(model, three, three).features()


def test_boxed_brace_token_in_ids():
    from agents.fingerprint import boxed_brace_token_in_ids

    tok = build_char_tokenizer()
    text = RESPONSES[0]
    ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id, tok.pad_token_id]
    assert boxed_brace_token_in_ids(tok, ids, text) == boxed_brace_char(text)
    assert boxed_brace_token_in_ids(tok, ids, "no answer") is None
    # A non-canonical tokenisation (two characters fused into one token by a merging tokenizer)
    # falls back to bisection over decoded prefixes.
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    corpus = ["so \\boxed{14}", "\\boxed{12} ok"] * 50
    bpe.train_from_iterator(
        corpus, tokenizers.trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"])
    )
    bpe.decoder = tokenizers.decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")
    text = "so \\boxed{14}"
    # Spell the text one character per token: a valid but non-canonical sampled sequence.
    char_ids = [fast.convert_tokens_to_ids(c) for c in text]
    assert fast.decode(char_ids) == text and char_ids != fast(text).input_ids
    assert boxed_brace_token_in_ids(fast, char_ids, text) == text.index("{")


TAGGED = [
    "3*4=12\n2+12=14\n<answer>14</answer>",
    "first <answer>9</answer> then <answer>20</answer>",  # the last tag counts
    "no final answer here",
    "cut short <answer>",  # the anchor is the last token: no answer token follows
]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_answer_tag_anchor_matches_output_hidden_states_and_the_trl_path(arch):
    """Fingerprints at the `<answer>` anchor: the agent's hooked pass equals the slow
    output_hidden_states computation, and the TRL reward function's pass gives the same values
    with the same anchor setting."""
    from agents.fingerprint import boxed_brace_token_in_ids
    from meds_gym.integrations.trl import answer_fingerprints
    from meds_gym.verifiers import parse_anchor

    anchor = parse_anchor("answer_tag")
    tok = build_char_tokenizer()
    model = _model(arch, tok, layers=4)
    prompt = tok("<|user|>What is 2+3*4?\n<|assistant|>", add_special_tokens=False).input_ids
    rows, positions = [], []
    for text in TAGGED:
        ids = tok(text, add_special_tokens=False).input_ids
        token = boxed_brace_token_in_ids(tok, ids, text, anchor)
        assert token is None or text[token] == ">"  # one token per character
        positions.append(-1 if token is None else len(prompt) + token)
        rows.append(prompt + ids)
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tok.pad_token_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    positions = torch.tensor(positions)
    layers = selected_layers(4)
    slow, _, _ = _slow_layer_logits(
        model, input_ids, attention, positions, attention.sum(dim=1), layers
    )
    with FingerprintCapture(model, positions, answer_tokens(input_ids, positions, attention)) as c:
        model(input_ids=input_ids, attention_mask=attention)
    fast = c.features()
    np.testing.assert_allclose(fast[:2], slow[:2], rtol=1e-5, atol=1e-5)
    assert np.isnan(fast[2:]).all()
    # The TRL path: prompt + response up to P, target P + 1, one forward per sequence.
    sequences = [rows[i][: int(positions[i]) + 1] for i in range(2)]
    targets = [rows[i][int(positions[i]) + 1] for i in range(2)]
    trl = answer_fingerprints(model, sequences, targets, pad_token_id=tok.pad_token_id)
    np.testing.assert_allclose(trl, fast[:2], rtol=1e-5, atol=1e-5)


def test_the_agents_log_prob_pass_reads_the_fingerprint_at_the_envs_anchor():
    """agents.ppo passes the env's answer anchor to its log-prob pass: with `<answer>` tags the
    fingerprint sits on the tag's `>`, and a boxed-only response has none."""
    from agents.policy import SampledBatch, logprob_pass
    from meds_gym.verifiers import parse_anchor

    tok = build_char_tokenizer()
    model = _model("qwen2", tok, layers=4)
    texts = ["so <answer>14</answer>", "so \\boxed{14}"]
    prompt = tok("<|user|>What is 2+3*4?\n<|assistant|>", add_special_tokens=False).input_ids
    rows = [tok(t, add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, rows))
    responses = torch.full((2, width), tok.pad_token_id)
    mask = torch.zeros((2, width))
    for i, row in enumerate(rows):
        responses[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    batch = SampledBatch(
        prompt_ids=torch.tensor([prompt, prompt]),
        prompt_mask=torch.ones((2, len(prompt)), dtype=torch.long),
        responses=responses,
        response_mask=mask,
        texts=texts,
    )
    tagged = logprob_pass(model, tok, batch, 2, anchor=parse_anchor("answer_tag")).fingerprints
    boxed = logprob_pass(model, tok, batch, 2).fingerprints
    assert not np.isnan(tagged[0]).any() and np.isnan(tagged[1]).all()
    assert np.isnan(boxed[0]).all() and not np.isnan(boxed[1]).any()
    # The oracle: hooks at the tag's ">" in the full sequence.
    position = len(prompt) + texts[0].index("<answer>") + len("<answer>") - 1
    ids = torch.tensor([prompt + rows[0]])
    position = torch.tensor([position])
    with FingerprintCapture(model, position, answer_tokens(ids, position)) as capture:
        model(input_ids=ids)
    np.testing.assert_allclose(tagged[0], capture.features()[0], rtol=1e-5, atol=1e-5)


def _sampled_batch(tokenizer, group_size: int):
    """The RESPONSES as one group of rollouts of one prompt (left-padded prompt block)."""
    from agents.policy import SampledBatch

    prompt = tokenizer("<|user|>What is 2+3*4?\n<|assistant|>", add_special_tokens=False).input_ids
    rows = [tokenizer(t, add_special_tokens=False).input_ids for t in RESPONSES]
    width = max(map(len, rows))
    responses = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width))
    for i, row in enumerate(rows):
        responses[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return SampledBatch(
        prompt_ids=torch.tensor([prompt] * len(rows)),
        prompt_mask=torch.ones((len(rows), len(prompt)), dtype=torch.long),
        responses=responses,
        response_mask=mask,
        texts=list(RESPONSES),
        group_size=group_size,
    )


@pytest.mark.parametrize("group_size", [1, 2])  # 2: the shared-prompt pass
@pytest.mark.parametrize("arch", ["qwen2", "llama"])  # llama: the head is tied to the embeddings
def test_log_prob_pass_under_a_zero3_partitioned_lm_head(arch, group_size):
    """ZeRO-3 holds the head's weight only inside the forwards of the modules that own it: the
    agent's fingerprint must be computed there, and equal the plain model's."""
    from agents.policy import logprob_pass

    tok = build_char_tokenizer()
    model = _model(arch, tok)
    batch = _sampled_batch(tok, group_size)
    plain = logprob_pass(model, tok, batch, 4, temperature=0.7, fingerprint_layers="all")
    with partitioned_lm_head(model) as weight:
        sharded = logprob_pass(model, tok, batch, 4, temperature=0.7, fingerprint_layers="all")
        assert weight.numel() == 0  # the emulation: nothing outside the owners' forwards
    np.testing.assert_allclose(sharded.fingerprints, plain.fingerprints, rtol=1e-6, atol=1e-6)
    assert not np.isnan(plain.fingerprints[:2]).any() and np.isnan(plain.fingerprints[2:]).all()
    torch.testing.assert_close(sharded.logprobs, plain.logprobs)


@pytest.mark.parametrize("group_size", [1, 2])
def test_the_fingerprint_of_a_lora_model_includes_its_adapters(group_size):
    """A LoRA policy (a PEFT model) gives the merged model's fingerprint, not the base model's."""
    from agents.policy import logprob_pass

    peft = pytest.importorskip("peft")
    tok = build_char_tokenizer()
    model = _model("qwen2", tok)
    batch = _sampled_batch(tok, group_size)
    base = logprob_pass(model, tok, batch, 4).fingerprints
    config = peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    torch.manual_seed(1)
    lora = peft.get_peft_model(copy.deepcopy(model), config).eval()
    got = logprob_pass(lora, tok, batch, 4).fingerprints
    merged = logprob_pass(copy.deepcopy(lora).merge_and_unload(), tok, batch, 4).fingerprints
    np.testing.assert_allclose(got, merged, rtol=1e-5, atol=1e-5)
    assert np.abs(got[:2] - base[:2]).max() > 1e-2  # the adapters change the fingerprint


def test_every_column_is_a_float32_dot_product_for_a_bf16_model():
    """The last column too is dot(normed hidden at P, head row) in float32, as the intermediate
    ones; it was the model's bf16 logit before."""
    tok = build_char_tokenizer()
    model = _model("qwen2", tok).to(torch.bfloat16)
    input_ids, attention, positions, _ = _batch(tok)
    _, features = answer_fingerprint(model, input_ids, attention, positions, "all")
    with torch.no_grad():
        hidden = model(input_ids, attention_mask=attention, output_hidden_states=True).hidden_states
        for b in range(2):  # the rows with an answer token
            p = int(positions[b])
            row = model.lm_head.weight[input_ids[b, p + 1]].float()
            want = [float((hidden[n][b, p].float() * row).sum()) for n in range(1, 5)]
            np.testing.assert_allclose(features[b], want, rtol=1e-6, atol=1e-6)


def test_the_lm_head_must_see_the_anchor_position():
    tok = build_char_tokenizer()
    model = _model("qwen2", tok)
    input_ids, attention, positions, _ = _batch(tok)
    tokens = answer_tokens(input_ids, positions, attention)
    with pytest.raises(InvalidArgumentError, match="logits_to_keep"):
        with FingerprintCapture(model, positions, tokens):
            model(input_ids=input_ids, attention_mask=attention, logits_to_keep=1)
