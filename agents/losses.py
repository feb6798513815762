"""Advantages and losses of the GRPO / DAPO family and of PPO with a critic, as pure functions.

Shapes use B = number of sequences (rollouts), T = response tokens, V = vocabulary size,
G = number of groups (prompts) and n = group size (rollouts per prompt). ``mask`` is a (B, T)
float or bool tensor that is 1 on response tokens the loss sees and 0 on padding.

References: GRPO (Shao et al. 2024, DeepSeekMath), DAPO (Yu et al. 2025: clip-higher, token-mean
loss, overlong reward shaping, dynamic sampling), the k3 KL estimator (Schulman 2020, "Approximating
KL divergence"), and GRPO+Entropy (Cheng et al. 2025, "Reasoning with exploration: an entropy
perspective"), the baselines of the MEDS paper (arXiv 2604.11297, section 5); PPO with a critic
and GAE (Schulman et al. 2016, 2017) as veRL's PPO recipe applies it to language models: the KL to
the reference model as a per-token reward penalty, token-level GAE, a clipped value loss.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import partial

import torch
from torch.utils.checkpoint import checkpoint

from meds_gym.errors import InvalidArgumentError


class LossAggregation(str, Enum):
    """How per-token losses become one scalar."""

    TOKEN_MEAN = "token_mean"
    """Mean over every unmasked token of the batch (DAPO): long responses weigh more."""
    SEQUENCE_MEAN = "sequence_mean"
    """Mean over tokens within each sequence, then over sequences (original GRPO)."""


def _check_2d(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() != 2:
        raise InvalidArgumentError(name, "a 2-D tensor of shape (B, T)", tuple(tensor.shape))


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """Group-normalised advantages, (r - mean) / (std + eps) within each group (GRPO).

    The standard deviation is the unbiased sample one (``torch.std``), as in the GRPO reference
    implementations. A group whose rewards are all equal gets zero advantages.

    Args:
        rewards: (G, n) rewards, one row per prompt; n must be at least 2.
        eps: Added to the standard deviation to avoid division by zero.
        scale: If False, only subtract the group mean (Dr. GRPO style, no std division).

    Returns:
        (G, n) advantages, same dtype as ``rewards``.
    """
    if rewards.dim() != 2:
        raise InvalidArgumentError("rewards", "a 2-D tensor of shape (G, n)", tuple(rewards.shape))
    if rewards.shape[1] < 2:
        raise InvalidArgumentError(
            "rewards",
            "groups of at least 2 rollouts (shape (G, n) with n >= 2)",
            tuple(rewards.shape),
            "Group-relative advantages need several rollouts per prompt.",
        )
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (G, n)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)  # (G, n)


def dynamic_sampling_mask(correct: torch.Tensor, keep_all_wrong: bool = False) -> torch.Tensor:
    """Which groups DAPO's dynamic sampling keeps: those holding both right and wrong answers.

    The filter reads the verdicts, as the reference's ``filter_groups`` does with its ``acc``
    metric, not the rewards: with a partial-credit env an all-wrong group can have unequal
    rewards and is still dropped. A group of all-right or all-wrong rollouts teaches nothing
    about right against wrong; DAPO drops it (and samples more prompts instead).

    With ``keep_all_wrong`` (MEDS shaping all-wrong groups too, ``GroupRule.MIXED_AND_ALL_WRONG``)
    all-wrong groups are kept as well: there MEDS's penalties can make their rewards differ, and
    dropping them would undo the variant. Whether they do is known only after shaping; one whose
    shaped rewards are all equal gets a zero group-normalised advantage and adds only to the
    token count of the loss.

    Args:
        correct: (G, n) verdicts (bool, or 0/1 numbers).
        keep_all_wrong: Keep all-wrong groups too (all-right groups are always dropped).

    Returns:
        (G,) bool tensor, True for groups to keep.
    """
    if correct.dim() != 2:
        raise InvalidArgumentError("correct", "a 2-D tensor of shape (G, n)", tuple(correct.shape))
    right = correct.to(torch.bool)
    if keep_all_wrong:
        return ~right.all(dim=1)  # (G,)
    return right.any(dim=1) & ~right.all(dim=1)  # (G,)


def aggregate_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: LossAggregation | str = LossAggregation.TOKEN_MEAN,
) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar over the unmasked tokens.

    Args:
        per_token: (B, T) loss per token.
        mask: (B, T), 1 where the token counts.
        aggregation: ``token_mean`` (sum over all tokens / number of tokens) or ``sequence_mean``
            (per-sequence token mean, then mean over sequences that have at least one token).

    Returns:
        A scalar tensor; 0 when no token is unmasked.
    """
    _check_2d("per_token", per_token)
    if mask.shape != per_token.shape:
        raise InvalidArgumentError("mask", f"shape {tuple(per_token.shape)}", tuple(mask.shape))
    aggregation = LossAggregation(aggregation)
    mask = mask.to(per_token.dtype)
    if aggregation is LossAggregation.TOKEN_MEAN:
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    tokens = mask.sum(dim=1)  # (B,)
    per_sequence = (per_token * mask).sum(dim=1) / tokens.clamp(min=1.0)  # (B,)
    has_tokens = (tokens > 0).to(per_token.dtype)  # (B,)
    return (per_sequence * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    aggregation: LossAggregation | str = LossAggregation.TOKEN_MEAN,
    clip_ratio_c: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate with separate lower and upper clip ranges (DAPO clip-higher).

    Per token: ``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)`` with
    ``ratio = exp(logprobs - old_logprobs)``. ``clip_low == clip_high`` is ordinary PPO/GRPO.

    Dual-clip PPO (Ye et al. 2020; veRL's ``clip_ratio_c``): where ``A < 0`` the loss is also
    capped at ``-clip_ratio_c * A``, so a token whose ratio has grown far past 1 under a negative
    advantage cannot dominate the batch. The cap binds only where ``ratio > clip_ratio_c``.

    Args:
        logprobs: (B, T) log-probabilities of the taken tokens under the current policy.
        old_logprobs: (B, T) the same under the policy that sampled them (no gradient).
        advantages: (B,) one advantage per sequence, or (B, T) per token.
        mask: (B, T), 1 on response tokens.
        clip_low: Lower clip range epsilon_low (ratio floor 1 - clip_low).
        clip_high: Upper clip range epsilon_high (ratio ceiling 1 + clip_high).
        aggregation: How to reduce tokens to a scalar, see :func:`aggregate_loss`.
        clip_ratio_c: The dual-clip bound (> 1), or None for none.

    Returns:
        ``(loss, clip_fraction)``: the scalar loss and the share of unmasked tokens whose
        ratio was clipped (a detached scalar, for logging).
    """
    _check_2d("logprobs", logprobs)
    if old_logprobs.shape != logprobs.shape:
        raise InvalidArgumentError(
            "old_logprobs", f"shape {tuple(logprobs.shape)}", tuple(old_logprobs.shape)
        )
    if clip_low < 0 or clip_high < 0:
        raise InvalidArgumentError(
            "clip_low/clip_high", "non-negative floats", (clip_low, clip_high)
        )
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:
        raise InvalidArgumentError("clip_ratio_c", "None or a float > 1", clip_ratio_c)
    if advantages.dim() == 1:
        advantages = advantages[:, None]  # (B, 1), broadcast over T
    if advantages.shape[0] != logprobs.shape[0]:
        raise InvalidArgumentError(
            "advantages",
            f"shape ({logprobs.shape[0]},) or {tuple(logprobs.shape)}",
            tuple(advantages.shape),
        )
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    unclipped = ratio * advantages  # (B, T)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)  # (B, T)
    per_token = -torch.minimum(unclipped, clipped_ratio * advantages)  # (B, T)
    if clip_ratio_c is not None:
        capped = torch.minimum(per_token, -clip_ratio_c * advantages)  # (B, T)
        per_token = torch.where(advantages < 0, capped, per_token)
    loss = aggregate_loss(per_token, mask, aggregation)
    with torch.no_grad():
        was_clipped = (clipped_ratio * advantages < unclipped).to(per_token.dtype)  # (B, T)
        m = mask.to(per_token.dtype)
        clip_fraction = (was_clipped * m).sum() / m.sum().clamp(min=1.0)
    return loss, clip_fraction


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): ``exp(d) - d - 1`` with d = ref - pi.

    Unbiased for the KL when tokens are sampled from the policy, and always >= 0.

    Args:
        logprobs: (B, T) log-probabilities of the taken tokens under the policy.
        ref_logprobs: (B, T) the same under the reference model.

    Returns:
        (B, T) per-token KL estimates; aggregate with :func:`aggregate_loss`.
    """
    if ref_logprobs.shape != logprobs.shape:
        raise InvalidArgumentError(
            "ref_logprobs", f"shape {tuple(logprobs.shape)}", tuple(ref_logprobs.shape)
        )
    log_ratio = ref_logprobs - logprobs  # (B, T)
    return torch.exp(log_ratio) - log_ratio - 1.0


def entropy_shaped_advantages(
    advantages: torch.Tensor, entropy: torch.Tensor, coef: float = 0.4, kappa: float = 2.0
) -> torch.Tensor:
    """GRPO+Entropy per-token advantage: ``A + min(coef * H.detach(), |A| / kappa)``.

    The entropy bonus is clipped by a share of the advantage's magnitude so it never flips the
    advantage's sign, and it is detached: it changes the weight of the policy gradient, it is not
    a gradient of the entropy.

    Args:
        advantages: (B,) per sequence or (B, T) per token.
        entropy: (B, T) entropy of the policy's next-token distribution at each response token.
        coef: Entropy coefficient (0.4 in the paper).
        kappa: The bonus is at most ``|A| / kappa`` (2 in the paper).

    Returns:
        (B, T) shaped advantages.
    """
    _check_2d("entropy", entropy)
    if kappa <= 0:
        raise InvalidArgumentError("kappa", "a positive float", kappa)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(entropy)  # (B, T)
    bonus = torch.minimum(coef * entropy.detach(), advantages.abs() / kappa)  # (B, T)
    return advantages + bonus


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward.

    0 for ``L <= max_length - buffer``; ``(max_length - buffer - L) / buffer`` (from 0 down to -1)
    inside the buffer; -1 beyond ``max_length``.

    Args:
        lengths: (B,) response lengths in tokens.
        max_length: The maximum response length L_max.
        buffer: The length of the punishment interval L_cache (0 < buffer <= max_length).

    Returns:
        (B,) float penalties in [-1, 0].
    """
    if not 0 < buffer <= max_length:
        raise InvalidArgumentError("buffer", f"an int in (0, max_length={max_length}]", buffer)
    lengths = lengths.to(torch.float32)
    soft_start = float(max_length - buffer)
    penalty = (soft_start - lengths) / float(buffer)  # (B,)
    penalty = torch.clamp(penalty, min=-1.0, max=0.0)
    return torch.where(lengths > max_length, torch.full_like(penalty, -1.0), penalty)


CHUNK_ELEMENTS = 1 << 24
"""Logit entries (positions x vocabulary) that :func:`token_logprobs` and :func:`token_entropy`
convert to float32 at a time: 64 MB of float32, about 110 positions of Qwen's 151,936-token
vocabulary."""


def _over_positions(
    per_chunk: Callable[..., torch.Tensor], logits: torch.Tensor, *per_position: torch.Tensor
) -> torch.Tensor:
    """``per_chunk`` applied to chunks of positions of ``logits``, in float32 one chunk at a time.

    The full (B, T, V) float32 tensor is never built: each chunk of at most
    :data:`CHUNK_ELEMENTS` logits is converted, reduced over the vocabulary and freed. With a
    gradient, each chunk is checkpointed (its float32 copy recomputed in the backward pass), so
    the forward does not keep every chunk's copy alive for the backward either; the gradient of
    ``logits`` is then built in their own dtype, chunk by chunk.

    Args:
        per_chunk: ``(n, V) float32 logits, *(n,) tensors -> (n,)`` result.
        logits: (B, T, V) logits, in any float dtype.
        per_position: (B, T) tensors cut into the same chunks as ``logits``.

    Returns:
        (B, T) float32 results.
    """
    vocab = logits.shape[-1]
    rows = max(1, CHUNK_ELEMENTS // max(1, vocab))
    chunks = zip(
        logits.reshape(-1, vocab).split(rows),
        *(x.reshape(-1).split(rows) for x in per_position),
        strict=True,
    )
    keep_graph = torch.is_grad_enabled() and logits.requires_grad
    parts = [
        checkpoint(per_chunk, *chunk, use_reentrant=False) if keep_graph else per_chunk(*chunk)
        for chunk in chunks
    ]
    return torch.cat(parts).view(logits.shape[:-1])  # (B, T)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits`` in float32, divided by ``temperature`` there (bf16 would round first)."""
    logits = logits.float()
    return logits if temperature == 1.0 else logits / temperature


def _chunk_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(_scaled(logits, temperature), dim=-1)  # (n, V)
    return logp.gather(-1, tokens[:, None]).squeeze(-1)  # (n,)


def _chunk_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(_scaled(logits, temperature), dim=-1)  # (n, V)
    return -(logp.exp() * logp).sum(dim=-1)  # (n,)


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probabilities of ``tokens`` under ``logits / temperature``, taken in float32.

    The log-softmax runs over chunks of positions (:data:`CHUNK_ELEMENTS` logits each), so no
    float32 copy of the whole (B, T, V) tensor is made, with or without a gradient: with Qwen's
    152k-token vocabulary and 1,024 response tokens that copy would take 0.6 GB per sequence.
    The (B, T, V) ``logits`` themselves, the model's output in its own dtype, are the caller's.

    Args:
        logits: (B, T, V) next-token logits aligned with ``tokens``.
        tokens: (B, T) token ids.
        temperature: The logits are divided by it, in float32, chunk by chunk (the sampling
            distribution at that temperature).

    Returns:
        (B, T) float32 log-probabilities; gradients flow into ``logits`` as through
        ``log_softmax(logits.float() / temperature).gather(tokens)``.
    """
    return _over_positions(partial(_chunk_logprobs, temperature=temperature), logits, tokens)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of the next-token distribution ``softmax(logits / temperature)``, in float32.

    Computed over chunks of positions as :func:`token_logprobs` is, without a float32 copy of the
    whole (B, T, V) tensor.

    Args:
        logits: (B, T, V) logits.
        temperature: The logits are divided by it, in float32, chunk by chunk.

    Returns:
        (B, T) float32 entropies in nats.
    """
    return _over_positions(partial(_chunk_entropy, temperature=temperature), logits)


# -- PPO with a critic -------------------------------------------------------------------------


def kl_penalised_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of PPO: the sequence score on its last token, minus a KL penalty.

    As in veRL's ``apply_kl_penalty`` (``kl_penalty: kl``): every response token t is charged
    ``kl_coef * (logprobs[t] - ref_logprobs[t])``, the sampled-token estimate of
    KL(policy || reference), and the last unmasked token also receives the sequence's score.

    Args:
        scores: (B,) one reward per sequence (the verifier's, shaped by MEDS or the overlong
            penalty as configured).
        logprobs: (B, T) log-probs of the sampled tokens under the sampling policy.
        ref_logprobs: (B, T) the same under the reference model, or None (no penalty).
        mask: (B, T), 1 on response tokens, contiguous from the first token (right padding).
        kl_coef: Coefficient of the penalty (veRL's fixed ``kl_coef``, 0.001).

    Returns:
        ``(token_rewards, kl)``: (B, T) rewards, 0 on padding, and the (B, T) per-token KL
        estimate, 0 on padding. A sequence with no token gets no reward.
    """
    _check_2d("logprobs", logprobs)
    if mask.shape != logprobs.shape:
        raise InvalidArgumentError("mask", f"shape {tuple(logprobs.shape)}", tuple(mask.shape))
    if scores.shape != (logprobs.shape[0],):
        raise InvalidArgumentError("scores", f"shape ({logprobs.shape[0]},)", tuple(scores.shape))
    m = mask.to(logprobs.dtype)
    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None:
        if ref_logprobs.shape != logprobs.shape:
            raise InvalidArgumentError(
                "ref_logprobs", f"shape {tuple(logprobs.shape)}", tuple(ref_logprobs.shape)
            )
        kl = (logprobs - ref_logprobs) * m  # (B, T)
    lengths = m.sum(dim=1).long()  # (B,)
    last = (lengths - 1).clamp(min=0)  # (B,) index of the last response token
    token_rewards = -kl_coef * kl  # (B, T)
    has_tokens = (lengths > 0).to(logprobs.dtype)  # (B,)
    token_rewards[torch.arange(len(last)), last] += scores.to(logprobs.dtype) * has_tokens
    return token_rewards, kl


def gae_advantages(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level generalised advantage estimation over right-padded responses.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V`` zero after the last response token (the
    episode ends there), ``A_t = delta_t + gamma * lam * A_{t+1}``, and the value targets
    ``returns = A + V``. Advantages are not whitened here (see :func:`masked_whiten`).

    Args:
        token_rewards: (B, T) per-token rewards (:func:`kl_penalised_token_rewards`).
        values: (B, T) the critic's values of the states before each response token.
        mask: (B, T), 1 on response tokens, contiguous from the first token.
        gamma: Discount (1.0 in veRL's recipe: the only reward is at the end).
        lam: GAE lambda (veRL's default 1.0: Monte Carlo returns minus the value baseline).

    Returns:
        ``(advantages, returns)``, both (B, T) and 0 on padding.
    """
    _check_2d("values", values)
    for name, tensor in (("token_rewards", token_rewards), ("mask", mask)):
        if tensor.shape != values.shape:
            raise InvalidArgumentError(name, f"shape {tuple(values.shape)}", tuple(tensor.shape))
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise InvalidArgumentError("gamma/lam", "floats in [0, 1]", (gamma, lam))
    m = mask.to(values.dtype)
    v = values * m  # (B, T): V = 0 on padding, so the step after the last token bootstraps 0
    r = token_rewards * m
    advantages = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])  # (B,)
    for t in reversed(range(v.shape[1])):
        next_value = v[:, t + 1] if t + 1 < v.shape[1] else torch.zeros_like(running)
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = delta + gamma * lam * running
        running = running * m[:, t]  # padding tokens carry nothing back
        advantages[:, t] = running
    return advantages, (advantages + v) * m


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shift and scale the unmasked entries to mean 0 and variance 1 (veRL's ``masked_whiten``).

    The variance is the unbiased one over unmasked entries. Masked entries come back as 0.

    Args:
        values: (B, T) values, e.g. GAE advantages.
        mask: (B, T), 1 where the entry counts.
        eps: Added to the variance before the square root.

    Returns:
        (B, T) whitened values; all zeros when fewer than 2 entries are unmasked.
    """
    _check_2d("values", values)
    m = mask.to(values.dtype)
    count = m.sum()
    if count < 2:
        return torch.zeros_like(values)
    mean = (values * m).sum() / count
    variance = (((values - mean) * m) ** 2).sum() / (count - 1)
    return (values - mean) * torch.rsqrt(variance + eps) * m


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.5,
    aggregation: LossAggregation | str = LossAggregation.TOKEN_MEAN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss: ``0.5 * max((V - R)^2, (clip(V, V_old +- eps) - R)^2)``.

    The new value may move at most ``clip_range`` from the value it had when the batch was
    collected before its error stops counting in its favour (veRL's ``cliprange_value``, 0.5).

    Args:
        values: (B, T) the critic's current values.
        old_values: (B, T) its values when the rollouts were collected (no gradient).
        returns: (B, T) value targets (:func:`gae_advantages`).
        mask: (B, T), 1 on response tokens.
        clip_range: How far the value may move from ``old_values``.
        aggregation: How to reduce tokens to a scalar, see :func:`aggregate_loss`.

    Returns:
        ``(loss, clip_fraction)``: the scalar loss and the detached share of unmasked tokens
        where the clipped error was the larger one.
    """
    _check_2d("values", values)
    for name, tensor in (("old_values", old_values), ("returns", returns), ("mask", mask)):
        if tensor.shape != values.shape:
            raise InvalidArgumentError(name, f"shape {tuple(values.shape)}", tuple(tensor.shape))
    if clip_range < 0:
        raise InvalidArgumentError("clip_range", "a non-negative float", clip_range)
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)  # (B, T)
    unclipped_error = (values - returns) ** 2  # (B, T)
    clipped_error = (clipped - returns) ** 2  # (B, T)
    loss = 0.5 * aggregate_loss(torch.maximum(unclipped_error, clipped_error), mask, aggregation)
    with torch.no_grad():
        m = mask.to(values.dtype)
        clip_fraction = (
            (clipped_error > unclipped_error).to(values.dtype) * m
        ).sum() / m.sum().clamp(min=1.0)
    return loss, clip_fraction
