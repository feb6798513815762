"""Losses and advantages against naive per-element loops and hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from agents import losses  # noqa: E402
from agents.losses import (  # noqa: E402
    LossAggregation,
    aggregate_loss,
    clipped_policy_loss,
    clipped_value_loss,
    dynamic_sampling_mask,
    entropy_shaped_advantages,
    gae_advantages,
    group_advantages,
    k3_kl,
    kl_penalised_token_rewards,
    masked_whiten,
    overlong_penalty,
    token_entropy,
    token_logprobs,
)
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)


def _random_batch(seed: int, b: int = 5, t: int = 7):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logprobs + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 0.8
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).double()
    return logprobs, old, adv, mask


def test_group_advantages_matches_loop():
    rewards = torch.tensor(
        [[1.0, 0.0, 0.0, 1.0, 0.8], [0.0, 0.0, 0.0, 0.0, 0.0], [1, 0.9, 0.2, 0, 0]]
    )
    out = group_advantages(rewards, eps=1e-6)
    for g in range(rewards.shape[0]):
        row = rewards[g].tolist()
        mean = sum(row) / len(row)
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / (len(row) - 1))
        for i, x in enumerate(row):
            assert out[g, i].item() == pytest.approx((x - mean) / (std + 1e-6), rel=1e-5, abs=1e-6)
    assert torch.all(out[1] == 0)


def test_group_advantages_hand_value_and_unscaled():
    # [1, 0]: mean 0.5, unbiased std sqrt(0.5)
    out = group_advantages(torch.tensor([[1.0, 0.0]]), eps=0.0)
    assert out[0, 0].item() == pytest.approx(0.5 / math.sqrt(0.5))
    centred = group_advantages(torch.tensor([[1.0, 0.0, 0.0]]), scale=False)
    assert centred[0].tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3])


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(InvalidArgumentError, match="at least 2 rollouts"):
        group_advantages(torch.ones(3, 1))
    with pytest.raises(InvalidArgumentError, match="rewards"):
        group_advantages(torch.ones(3))


def test_dynamic_sampling_mask_reads_verdicts():
    correct = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    assert dynamic_sampling_mask(correct).tolist() == [False, False, True]
    assert dynamic_sampling_mask(correct.float()).tolist() == [False, False, True]
    with pytest.raises(InvalidArgumentError, match="correct"):
        dynamic_sampling_mask(torch.ones(3, dtype=torch.bool))


def test_dynamic_sampling_keeps_all_wrong_groups_for_the_meds_variant():
    correct = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    assert dynamic_sampling_mask(correct, keep_all_wrong=True).tolist() == [False, True, True]


def test_dynamic_sampling_drops_all_wrong_group_with_partial_credit():
    # A partial-credit env (reasoning-gym) can give an all-wrong group unequal rewards: the
    # group holds no right answer, so DAPO's filter (the reference's ``acc``) drops it.
    rewards = torch.tensor([[0.5, 0.0, 0.2], [1.0, 0.3, 0.0]])
    correct = rewards == 1.0
    assert dynamic_sampling_mask(correct).tolist() == [False, True]


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
@pytest.mark.parametrize("seed", range(5))
def test_clipped_policy_loss_matches_loop(aggregation, seed):
    logprobs, old, adv, mask = _random_batch(seed)
    loss, clip_frac = clipped_policy_loss(
        logprobs, old, adv, mask, clip_low=0.2, clip_high=0.28, aggregation=aggregation
    )
    b, t = logprobs.shape
    per_seq, total, count, clipped = [], 0.0, 0, 0
    for i in range(b):
        seq_sum, seq_n = 0.0, 0
        for j in range(t):
            if mask[i, j] == 0:
                continue
            r = math.exp(logprobs[i, j].item() - old[i, j].item())
            a = adv[i].item()
            rc = min(max(r, 0.8), 1.28)
            term = -min(r * a, rc * a)
            clipped += int(rc * a < r * a)
            seq_sum += term
            seq_n += 1
        total += seq_sum
        count += seq_n
        if seq_n:
            per_seq.append(seq_sum / seq_n)
    if aggregation == "token_mean":
        expected = total / max(count, 1)
    else:
        expected = sum(per_seq) / max(len(per_seq), 1)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert clip_frac.item() == pytest.approx(clipped / max(count, 1))


def test_dual_clip_caps_negative_advantage_tokens_only():
    # veRL's dual clip: where A < 0 the per-token loss is at most -c * A; the cap binds only for
    # ratios above c, and tokens with A >= 0 are untouched.
    logprobs = torch.log(torch.tensor([[20.0, 5.0, 20.0, 0.5]]))  # ratios against old = 1
    old = torch.zeros(1, 4)
    mask = torch.ones(1, 4)
    for adv_value in (-1.0, 2.0):
        adv = torch.full((1, 4), adv_value)
        plain, _ = clipped_policy_loss(logprobs, old, adv, mask, 0.2, 0.28)
        dual, _ = clipped_policy_loss(logprobs, old, adv, mask, 0.2, 0.28, clip_ratio_c=10.0)
        ratios = [20.0, 5.0, 20.0, 0.5]
        if adv_value < 0:
            # -min(r A, clip(r) A) = -r A for r > 1.2 (A < 0); capped at -10 A where r > 10.
            expected = [min(r, 10.0) if r > 1.0 else max(r, 0.8) for r in ratios]
            assert dual.item() == pytest.approx(sum(expected) / 4)
            assert plain.item() == pytest.approx(sum(r if r > 1.0 else 0.8 for r in ratios) / 4)
        else:
            assert dual.item() == pytest.approx(plain.item())
    with pytest.raises(InvalidArgumentError, match="clip_ratio_c"):
        clipped_policy_loss(logprobs, old, adv, mask, clip_ratio_c=1.0)


def test_clip_higher_is_asymmetric():
    # ratio 1.25 with positive advantage: inside 1+0.28, clipped at 1+0.2.
    lp = torch.tensor([[math.log(1.25)]])
    old = torch.zeros(1, 1)
    adv = torch.ones(1)
    mask = torch.ones(1, 1)
    loss_higher, frac_h = clipped_policy_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    loss_sym, frac_s = clipped_policy_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert loss_higher.item() == pytest.approx(-1.25)
    assert loss_sym.item() == pytest.approx(-1.2)
    assert frac_h.item() == 0.0 and frac_s.item() == 1.0


def test_clipped_loss_gradient_zero_when_clipped():
    lp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _ = clipped_policy_loss(lp, torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1))
    loss.backward()
    assert lp.grad.item() == 0.0


def test_aggregation_differs_on_unequal_lengths():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert aggregate_loss(per_token, mask, LossAggregation.TOKEN_MEAN).item() == pytest.approx(
        7 / 5
    )
    assert aggregate_loss(per_token, mask, "sequence_mean").item() == pytest.approx(2.0)
    empty = torch.zeros(2, 4)
    assert aggregate_loss(per_token, empty, "sequence_mean").item() == 0.0
    with pytest.raises(ValueError):
        aggregate_loss(per_token, mask, "sum")


def test_k3_kl_matches_loop_and_is_nonnegative():
    logprobs, old, _, _ = _random_batch(3)
    kl = k3_kl(logprobs, old)
    for i in range(kl.shape[0]):
        for j in range(kl.shape[1]):
            d = old[i, j].item() - logprobs[i, j].item()
            assert kl[i, j].item() == pytest.approx(math.exp(d) - d - 1, abs=1e-12)
    assert torch.all(kl >= 0)
    assert torch.all(k3_kl(logprobs, logprobs) == 0)


def test_k3_kl_is_unbiased_estimate_of_kl():
    # Sample from p, estimate KL(p || q) with k3 and compare to the exact sum.
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())
    g = torch.Generator().manual_seed(0)
    samples = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = k3_kl(p.log()[samples][None, :], q.log()[samples][None, :]).mean().item()
    assert est == pytest.approx(exact, rel=0.03)


def test_entropy_shaped_advantages_matches_loop():
    g = torch.Generator().manual_seed(1)
    adv = torch.randn(4, generator=g)
    ent = torch.rand(4, 6, generator=g) * 3
    out = entropy_shaped_advantages(adv, ent, coef=0.4, kappa=2.0)
    for i in range(4):
        for j in range(6):
            a = adv[i].item()
            expected = a + min(0.4 * ent[i, j].item(), abs(a) / 2)
            assert out[i, j].item() == pytest.approx(expected, rel=1e-6)
    # The bonus never flips the sign of a negative advantage.
    assert torch.all(out[adv < 0] < 0)


def test_entropy_bonus_is_detached():
    ent = torch.rand(2, 3, requires_grad=True)
    out = entropy_shaped_advantages(torch.tensor([1.0, -1.0]), ent)
    assert not out.requires_grad


def test_overlong_penalty_hand_values():
    lengths = torch.tensor([0, 2560, 2561, 2816, 3072, 3073, 5000])
    out = overlong_penalty(lengths, max_length=3072, buffer=512)
    expected = [0.0, 0.0, -1 / 512, -0.5, -1.0, -1.0, -1.0]
    assert out.tolist() == pytest.approx(expected)
    with pytest.raises(InvalidArgumentError, match="buffer"):
        overlong_penalty(lengths, max_length=10, buffer=11)


def test_token_logprobs_and_entropy_match_loop():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, generator=g)
    tokens = torch.randint(0, 5, (2, 3), generator=g)
    lp = token_logprobs(logits, tokens)
    ent = token_entropy(logits)
    for i in range(2):
        for j in range(3):
            z = [math.exp(x) for x in logits[i, j].tolist()]
            s = sum(z)
            probs = [x / s for x in z]
            assert lp[i, j].item() == pytest.approx(math.log(probs[tokens[i, j]]), abs=1e-5)
            assert ent[i, j].item() == pytest.approx(-sum(p * math.log(p) for p in probs), abs=1e-5)


def _unchunked_logprobs(logits, tokens, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    return logp.gather(-1, tokens[..., None])[..., 0]


def _unchunked_entropy(logits, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    return -(logp.exp() * logp).sum(dim=-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_logprobs_and_entropy_equal_the_unchunked_formula_with_gradients(
    monkeypatch, dtype, temperature
):
    # Chunks of 3 positions over 2 x 7 positions: several chunks and a ragged last one.
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 3 * 11)
    g = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(2, 7, 11, generator=g)).to(dtype).requires_grad_(True)
    tokens = torch.randint(0, 11, (2, 7), generator=g)
    weights = torch.randn(2, 7, generator=g)  # a loss that weighs every position differently
    pairs = [
        (
            token_logprobs(logits, tokens, temperature),
            _unchunked_logprobs(logits, tokens, temperature),
        ),
        (token_entropy(logits, temperature), _unchunked_entropy(logits, temperature)),
    ]
    for got, expected in pairs:
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # Each gradient is computed in float32 and rounded to the logits' dtype once, both ways.
        (got_grad,) = torch.autograd.grad((got * weights).sum(), logits)
        (expected_grad,) = torch.autograd.grad((expected * weights).sum(), logits)
        assert got_grad.dtype == dtype
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-5)


class _LargestFloat32(TorchDispatchMode):
    """Records the most elements of any float32 tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32:
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_entropy_never_build_the_full_float32_tensor(monkeypatch, temperature):
    # A wide vocabulary (Qwen's is 151,936) in bfloat16, as the model returns it under autocast:
    # the float32 log-softmax of all B * T positions at once would be 16 x the chunk budget.
    budget = 1 << 20
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", budget)
    batch, positions, vocab = 2, 96, 100_000
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(batch, positions, vocab, generator=g).to(torch.bfloat16)
    tokens = torch.randint(0, vocab, (batch, positions), generator=g)
    logits.requires_grad_(True)
    with _LargestFloat32() as tracker:
        logprobs = token_logprobs(logits, tokens, temperature)
        with torch.no_grad():
            entropy = token_entropy(logits, temperature)
        logprobs.sum().backward()
    assert logprobs.shape == entropy.shape == (batch, positions)
    assert logits.grad is not None and logits.grad.dtype == torch.bfloat16
    assert batch * positions * vocab >= 16 * budget
    assert 0 < tracker.largest <= budget


# -- PPO with a critic -------------------------------------------------------------------------


def _naive_gae(rewards, values, length, gamma, lam):
    """Textbook GAE over one episode of ``length`` steps, V = 0 after the last step."""
    advantages = [0.0] * length
    running = 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages, [a + v for a, v in zip(advantages, values[:length], strict=False)]


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (1.0, 0.95), (0.9, 0.5), (1.0, 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_naive_loop(gamma, lam, seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 6, 9
    rewards = torch.randn(b, t, generator=g, dtype=torch.float64)
    values = torch.randn(b, t, generator=g, dtype=torch.float64)
    lengths = [0, 1, 9, 4, 7, 2]
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).double()
    advantages, returns = gae_advantages(rewards, values, mask, gamma, lam)
    for i, length in enumerate(lengths):
        adv, ret = _naive_gae(rewards[i].tolist(), values[i].tolist(), length, gamma, lam)
        assert advantages[i, :length].tolist() == pytest.approx(adv, abs=1e-12)
        assert returns[i, :length].tolist() == pytest.approx(ret, abs=1e-12)
        assert not advantages[i, length:].any() and not returns[i, length:].any()


def test_gae_with_gamma_and_lambda_one_is_return_minus_value():
    # veRL's default (gamma = lam = 1): A_t = sum of the rewards from t on, minus V_t.
    rewards = torch.tensor([[0.0, -0.1, 0.2, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 0.2]])
    advantages, returns = gae_advantages(rewards, values, torch.ones(1, 4))
    torch.testing.assert_close(returns, torch.tensor([[1.1, 1.1, 1.2, 1.0]]))
    torch.testing.assert_close(advantages, returns - values)


def test_kl_penalised_token_rewards_match_loop():
    g = torch.Generator().manual_seed(3)
    b, t = 5, 6
    logprobs = -torch.rand(b, t, generator=g, dtype=torch.float64)
    ref = -torch.rand(b, t, generator=g, dtype=torch.float64)
    scores = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = [6, 3, 0, 1, 5]
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).double()
    token_rewards, kl = kl_penalised_token_rewards(scores, logprobs, ref, mask, kl_coef=0.05)
    for i, length in enumerate(lengths):
        for j in range(t):
            expected_kl = float(logprobs[i, j] - ref[i, j]) if j < length else 0.0
            expected = -0.05 * expected_kl + (float(scores[i]) if j == length - 1 else 0.0)
            assert float(kl[i, j]) == pytest.approx(expected_kl, abs=1e-12)
            assert float(token_rewards[i, j]) == pytest.approx(expected, abs=1e-12)
    # No reference model: the score alone, on the last token.
    plain, zero_kl = kl_penalised_token_rewards(scores, logprobs, None, mask, kl_coef=0.05)
    assert not zero_kl.any()
    assert plain.sum(dim=1).tolist() == pytest.approx((scores * (mask.sum(1) > 0)).tolist())


def test_clipped_value_loss_matches_loop():
    g = torch.Generator().manual_seed(4)
    b, t = 4, 5
    old = torch.randn(b, t, generator=g, dtype=torch.float64)
    new = old + torch.randn(b, t, generator=g, dtype=torch.float64)
    returns = torch.randn(b, t, generator=g, dtype=torch.float64)
    mask = (torch.arange(t)[None, :] < torch.tensor([5, 2, 0, 4])[:, None]).double()
    loss, clip_fraction = clipped_value_loss(new, old, returns, mask, clip_range=0.5)
    total, clipped_count, tokens = 0.0, 0, 0
    for i in range(b):
        for j in range(t):
            if not mask[i, j]:
                continue
            v, v_old, r = float(new[i, j]), float(old[i, j]), float(returns[i, j])
            v_clipped = min(max(v, v_old - 0.5), v_old + 0.5)
            e1, e2 = (v - r) ** 2, (v_clipped - r) ** 2
            total += 0.5 * max(e1, e2)
            clipped_count += e2 > e1
            tokens += 1
    assert float(loss) == pytest.approx(total / tokens, abs=1e-12)
    assert float(clip_fraction) == pytest.approx(clipped_count / tokens)


def test_value_loss_gradient_stops_when_the_clipped_error_dominates():
    old = torch.tensor([[0.0]])
    returns = torch.tensor([[-1.0]])
    new = torch.tensor([[2.0]], requires_grad=True)  # moved 2 from old, away from the target
    loss, _ = clipped_value_loss(new, old, returns, torch.ones(1, 1), clip_range=0.5)
    loss.backward()
    assert float(new.grad) == pytest.approx(3.0)  # unclipped (2 + 1)^2 > clipped (0.5 + 1)^2
    near = torch.tensor([[-0.9]], requires_grad=True)  # moved towards the target beyond the clip
    loss, _ = clipped_value_loss(near, old, returns, torch.ones(1, 1), clip_range=0.5)
    loss.backward()
    assert float(near.grad) == 0.0  # clipped error (-0.5 + 1)^2 > (0.1)^2: no gradient


def test_masked_whiten_matches_formula():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.float64)
    white = masked_whiten(values, mask)
    kept = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    expected = (kept - kept.mean()) / kept.std()
    assert white[mask.bool()].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert not white[~mask.bool()].any()
    assert not masked_whiten(values, torch.zeros_like(mask)).any()


def test_critic_losses_reject_bad_shapes():
    with pytest.raises(InvalidArgumentError, match="`mask` must be shape"):
        gae_advantages(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(InvalidArgumentError, match="gamma/lam"):
        gae_advantages(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), lam=1.5)
    with pytest.raises(InvalidArgumentError, match="`returns` must be shape"):
        clipped_value_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(InvalidArgumentError, match="`scores` must be shape"):
        kl_penalised_token_rewards(torch.zeros(3), torch.zeros(2, 3), None, torch.ones(2, 3), 0.1)
