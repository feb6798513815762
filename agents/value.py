"""The critic of ``--algorithm ppo``: a value head on the policy's last hidden state.

Design choice (issue 9): the critic is one linear layer on the final hidden state of the policy
itself, the input of its LM head, as in TRL's ``AutoModelForCausalLMWithValueHead``, rather than a
separate value model as veRL and OpenRLHF use. It costs no second model and no second forward
pass: :class:`ValueCapture` reads the LM head's input through a forward pre-hook during the pass
that already computes the log-probs (and the MEDS fingerprint). The trunk is shared, so the value
loss also trains it; its weight ``vf_coef`` (0.1, TRL's default) keeps it from dominating the
policy gradient. The head starts at zero, so the first values are 0 and the first advantages are
the returns.

The value of response token t is read at the position that predicts it (the state before the
token is generated), the same alignment as the log-probs: ``hidden[:, P - 1 : -1]`` for a prompt
block of width P.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn

from meds_gym.errors import InvalidArgumentError

from .cli import above, at_least, between, check_numbers, validator
from .losses import aggregate_loss, gae_advantages, kl_penalised_token_rewards, masked_whiten


@dataclass(frozen=True)
class CriticConfig:
    """The critic of ``--algorithm ppo`` and its advantage estimation (``--critic.*``)."""

    gae_lambda: float = 1.0
    """GAE lambda, with gamma 1 (veRL's PPO defaults: Monte Carlo returns minus the baseline)."""
    value_clip: float = 0.5
    """How far a value may move from its rollout-time value (veRL's ``cliprange_value``)."""
    vf_coef: float = 0.1
    """Weight of the value loss in the loss of the shared trunk (TRL's default)."""
    learning_rate: float | None = None
    """Learning rate of the value head; None: 10 x the policy's (veRL's critic/actor ratio)."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(
            self,
            {"gae_lambda": between(0, 1), "value_clip": at_least(0), "vf_coef": at_least(0),
             "learning_rate": above(0)},
            "critic.",
        )  # fmt: skip


class ValueHead(nn.Module):
    """A scalar value per position from the hidden states, computed in float32.

    Example:
        >>> head = ValueHead(hidden_size=8)
        >>> head(torch.ones(2, 5, 8)).shape
        torch.Size([2, 5])
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        if hidden_size < 1:
            raise InvalidArgumentError("hidden_size", "an int >= 1", hidden_size)
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states -> (B, T) float32 values, also under bfloat16 autocast."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self.linear(hidden.float()).squeeze(-1)


def value_head_for(model: Any) -> ValueHead:
    """A zero-initialised :class:`ValueHead` sized for ``model``, on its device.

    Raises:
        InvalidArgumentError: If the model has no output embedding (LM head) to hook.
    """
    get_lm_head = getattr(model, "get_output_embeddings", None)
    lm_head = get_lm_head() if callable(get_lm_head) else None
    if lm_head is None or not hasattr(lm_head, "in_features"):
        raise InvalidArgumentError(
            "model",
            "a causal LM whose get_output_embeddings() is a linear LM head",
            type(model).__name__,
        )
    device = next(model.parameters()).device
    return ValueHead(int(lm_head.in_features)).to(device)


class ValueCapture:
    """Context manager: during one forward pass of ``model``, the values of the response tokens.

    Use it around the log-prob pass (:func:`agents.policy.forward_logprobs`), then call
    :meth:`values`. Gradients flow into the head and, through the hidden state, the trunk.

    Args:
        model: The causal LM whose LM head input is read.
        head: The value head.
        prompt_width: P, the width of the padded prompt block of the pass.
    """

    def __init__(self, model: Any, head: ValueHead, prompt_width: int) -> None:
        self._lm_head = model.get_output_embeddings()
        self._head = head
        self._prompt_width = prompt_width
        self._hidden: list[torch.Tensor] = []
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._hidden.append(args[0])  # the final (normed) hidden states the LM head reads

    def __enter__(self) -> ValueCapture:
        self._hidden = []
        self._handle = self._lm_head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def values(self) -> torch.Tensor:
        """(B, T) values of the response tokens of the pass.

        The pass is either one forward over (B, P + T) tokens, or a shared-prompt pass
        (:func:`agents.sampling.shared_prompt_forward`): the prompts of the G groups, whose LM
        head reads only their last position, then the (B, T) responses on their cache.

        Raises:
            RuntimeError: If no forward pass ran inside the context.
        """
        if not self._hidden:
            raise RuntimeError("ValueCapture.values() needs a forward pass inside the context.")
        if len(self._hidden) == 1:
            return self._head(self._hidden[0][:, self._prompt_width - 1 : -1])  # (B, T)
        prompts, responses = self._hidden[-2], self._hidden[-1]  # (G, 1 or P, H), (B, T, H)
        group_size = responses.shape[0] // prompts.shape[0]
        first = prompts[:, -1:].repeat_interleave(group_size, dim=0)  # (B, 1, H)
        return self._head(torch.cat([first, responses[:, :-1]], dim=1))  # (B, T)


@contextlib.contextmanager
def capture_values(
    model: Any, head: ValueHead | None, prompt_width: int
) -> Iterator[ValueCapture | None]:
    """:class:`ValueCapture` around a pass with a critic; ``None`` when ``head`` is None."""
    if head is None:
        yield None
        return
    with ValueCapture(model, head, prompt_width) as capture:
        yield capture


def ppo_advantages(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    values: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """VeRL's PPO advantages: KL-penalised token rewards, GAE (gamma 1), whitened.

    Args:
        scores: (B,) sequence rewards.
        logprobs: (B, T) log-probs of the sampled tokens at rollout time.
        ref_logprobs: (B, T) the reference model's, or None (no KL penalty).
        values: (B, T) the critic's values at rollout time.
        mask: (B, T), 1 on response tokens.
        kl_coef: KL penalty coefficient.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns, kl)``: (B, T) whitened advantages, (B, T) value targets, and the
        token-mean KL estimate of the batch.
    """
    token_rewards, kl = kl_penalised_token_rewards(
        scores.to(logprobs.device), logprobs, ref_logprobs, mask, kl_coef
    )
    gae, returns = gae_advantages(token_rewards, values, mask, 1.0, lam)
    return masked_whiten(gae, mask), returns, float(aggregate_loss(kl, mask))
