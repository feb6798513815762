"""The PPO critic: values read from the log-prob pass, aligned with the log-probs, trainable."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.losses import gae_advantages, kl_penalised_token_rewards, masked_whiten  # noqa: E402
from agents.policy import forward_logprobs  # noqa: E402
from agents.tiny_model import TinyModelConfig, build_char_tokenizer, build_model  # noqa: E402
from agents.value import (  # noqa: E402
    CriticConfig,
    ValueCapture,
    ValueHead,
    capture_values,
    ppo_advantages,
    value_head_for,
)
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_and_batch():
    tokenizer = build_char_tokenizer()
    model = build_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2), tokenizer)
    prompts = ["<|user|>1+2?\n<|assistant|>", "<|user|>11*12-3?\n<|assistant|>"]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    responses = torch.tensor([tokenizer("\\boxed{3}", add_special_tokens=False).input_ids] * 2)
    sequences = torch.cat([enc["input_ids"], responses], dim=1)
    attention = torch.cat([enc["attention_mask"], torch.ones_like(responses)], dim=1)
    return model.eval(), sequences, attention, enc["input_ids"].shape[1]


def test_values_are_read_at_the_position_that_predicts_each_token(model_and_batch):
    model, sequences, attention, width = model_and_batch
    head = value_head_for(model)
    torch.nn.init.normal_(head.linear.weight)  # a non-zero head, so the check means something
    with torch.no_grad(), ValueCapture(model, head, width) as capture:
        logprobs, _, _ = forward_logprobs(model, sequences, attention, width)
    values = capture.values()
    assert values.shape == logprobs.shape == (2, sequences.shape[1] - width)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(
            input_ids=sequences,
            attention_mask=attention,
            position_ids=positions,
            output_hidden_states=True,
        )
        expected = head(out.hidden_states[-1][:, width - 1 : -1])
    torch.testing.assert_close(values, expected)
    # The hook is gone after the context: a later pass is untouched.
    assert not model.get_output_embeddings()._forward_pre_hooks


def test_value_head_starts_at_zero_and_learns_through_the_shared_trunk(model_and_batch):
    model, sequences, attention, width = model_and_batch
    head = value_head_for(model)
    with capture_values(model, head, width) as capture:
        forward_logprobs(model, sequences, attention, width)
    assert capture is not None
    values = capture.values()
    assert not values.detach().any()
    model.zero_grad()
    ((values - 1.0) ** 2).mean().backward()
    assert head.linear.bias.grad is not None and head.linear.bias.grad.abs().item() > 0
    with capture_values(model, None, width) as nothing:
        assert nothing is None


def test_values_stay_float32_under_bfloat16_autocast():
    # The forward passes of --precision bf16-mixed run under autocast; GAE reads these values.
    head = ValueHead(hidden_size=8)
    torch.nn.init.normal_(head.linear.weight)
    with torch.no_grad():
        hidden = torch.randn(2, 5, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            values = head(hidden)
        assert values.dtype == torch.float32
        torch.testing.assert_close(values, head(hidden))


def test_temperature_scales_the_logits_of_the_logprobs(model_and_batch):
    model, sequences, attention, width = model_and_batch
    with torch.no_grad():
        plain, logits, _ = forward_logprobs(model, sequences, attention, width)
        hot, hot_logits, _ = forward_logprobs(model, sequences, attention, width, temperature=0.5)
    torch.testing.assert_close(hot_logits, logits)  # returned as the model gives them
    tokens = sequences[:, width:]
    expected = torch.log_softmax(logits / 0.5, dim=-1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(hot, expected)
    assert not torch.allclose(hot, plain)
    with pytest.raises(InvalidArgumentError, match="`temperature` must be a float > 0"):
        forward_logprobs(model, sequences, attention, width, temperature=0.0)


def test_ppo_advantages_compose_the_pure_pieces():
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([1.0, 0.0, 0.8])
    logprobs = -torch.rand(3, 4, generator=g)
    ref = -torch.rand(3, 4, generator=g)
    values = torch.randn(3, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    advantages, returns, kl = ppo_advantages(scores, logprobs, ref, values, mask, 0.01, 0.9)
    token_rewards, kl_tokens = kl_penalised_token_rewards(scores, logprobs, ref, mask, 0.01)
    gae, expected_returns = gae_advantages(token_rewards, values, mask, 1.0, 0.9)
    torch.testing.assert_close(advantages, masked_whiten(gae, mask))
    torch.testing.assert_close(returns, expected_returns)
    assert kl == pytest.approx(float((kl_tokens * mask).sum() / mask.sum()))


def test_critic_config_and_head_reject_bad_values(model_and_batch):
    model = model_and_batch[0]
    with pytest.raises(InvalidArgumentError, match="critic.gae_lambda"):
        CriticConfig(gae_lambda=1.5)
    with pytest.raises(InvalidArgumentError, match="critic.vf_coef"):
        CriticConfig(vf_coef=-1.0)
    with pytest.raises(InvalidArgumentError, match="critic.learning_rate"):
        CriticConfig(learning_rate=0.0)
    with pytest.raises(InvalidArgumentError, match="hidden_size"):
        ValueHead(0)
    with pytest.raises(RuntimeError, match="forward pass inside"):
        ValueCapture(model, value_head_for(model), 1).values()
    with pytest.raises(InvalidArgumentError, match="linear LM head"):
        value_head_for(torch.nn.Module())
