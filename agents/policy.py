"""Loading a causal-LM policy and scoring its responses: the pieces the training scripts share."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meds_gym.errors import InvalidArgumentError

from .fingerprint import FingerprintCapture
from .losses import token_logprobs
from .tiny_model import load_tokenizer

logger = logging.getLogger(__name__)


def load_policy(model_path: str | os.PathLike[str], device: str = "cpu") -> tuple[Any, Any]:
    """Load ``AutoModelForCausalLM.from_pretrained(model_path)`` and its tokenizer.

    The tokenizer pads on the left (for generation). A tokenizer without a pad token pads with its
    eos token (a warning is logged): padding is masked out everywhere, so any token can stand in.
    Nothing is downloaded (``local_files_only``). On a CUDA device that supports it the weights
    are loaded in bfloat16, elsewhere in float32.

    Args:
        model_path: A local directory, or a Hub name already in the local cache.
        device: Torch device of the model.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        InvalidArgumentError: If nothing loadable is at ``model_path``, or the tokenizer has
            neither a pad nor an eos token.
    """
    from transformers import AutoModelForCausalLM

    path = str(model_path)
    try:
        on_bf16_gpu = str(device).startswith("cuda") and torch.cuda.is_bf16_supported()
        model: Any = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.bfloat16 if on_bf16_gpu else torch.float32,
            local_files_only=True,
        )
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(
            "model_path",
            "a local directory with a causal LM and its tokenizer (config.json, weights, "
            "tokenizer files) or a Hub name already in the local cache",
            path,
            f"Loading failed: {error}",
        ) from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise InvalidArgumentError(
                "model_path",
                "a tokenizer with a pad or an eos token",
                path,
                "Set tokenizer.pad_token in the saved tokenizer files.",
            )
        logger.warning(
            "The tokenizer has no pad token; padding with its eos token %r.", tokenizer.eos_token
        )
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def prompt_text(tokenizer: Any, obs: str, info: dict[str, Any]) -> str:
    """The chat form of the prompt when the tokenizer has a template, else the plain observation."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            info["messages"], add_generation_prompt=True, tokenize=False
        )
    return obs


def forward_logprobs(
    model: Any,
    sequences: torch.Tensor,
    attention: torch.Tensor,
    prompt_width: int,
    capture: FingerprintCapture | None = None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """One forward pass over prompt + response: the response tokens' log-probs and logits.

    Args:
        model: The causal LM.
        sequences: (B, P + T) left-padded prompts followed by right-padded responses.
        attention: (B, P + T) attention mask, 0 on padding.
        prompt_width: P, the width of the (padded) prompt block.
        capture: If given, the pass runs inside it and the fingerprints are returned.

    Returns:
        ``(logprobs, logits, features)``: (B, T) log-probs of the response tokens, the (B, T, V)
        logits that predict them, and (B, L) fingerprints or None.
    """
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # left padding: positions as generated
    if capture is None:
        logits = model(input_ids=sequences, attention_mask=attention, position_ids=positions).logits
        features = None
    else:
        with capture:
            logits = model(
                input_ids=sequences, attention_mask=attention, position_ids=positions
            ).logits
        features = capture.features(logits, sequences, attention)
    response_logits = logits[:, prompt_width - 1 : -1]  # (B, T, V): predicts the response tokens
    return token_logprobs(response_logits, sequences[:, prompt_width:]), response_logits, features


@dataclass
class SampledBatch:
    """Prompts and the responses sampled for them, as token tensors and as text."""

    prompt_ids: torch.Tensor
    """(B, P) left-padded prompt ids, each prompt repeated ``group_size`` times in a row."""
    prompt_mask: torch.Tensor
    """(B, P) attention mask of the prompts."""
    responses: torch.Tensor
    """(B, T) response ids up to and including the first eos, then padding."""
    response_mask: torch.Tensor
    """(B, T) float, 1 on response tokens (the eos included: the policy chose to stop)."""
    texts: list[str]
    """(B,) decoded responses, special tokens removed."""

    @property
    def prompt_width(self) -> int:
        """P, the width of the padded prompt block."""
        return int(self.prompt_ids.shape[1])


@torch.no_grad()
def sample_responses(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
) -> SampledBatch:
    """Sample ``group_size`` responses to each prompt (pure temperature sampling, no top-k/p).

    Args:
        model: The causal LM (in eval mode).
        tokenizer: Its tokenizer, padding on the left.
        prompts: (G,) prompt texts, already in chat form.
        group_size: Responses per prompt.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.

    Returns:
        The G * group_size prompts and responses, grouped by prompt.
    """
    device = next(model.parameters()).device
    encoded = tokenizer(
        [p for p in prompts for _ in range(group_size)],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    ).to(device)
    generated = model.generate(
        **encoded,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    responses = generated[:, encoded["input_ids"].shape[1] :]  # (B, T)
    is_eos = responses == tokenizer.eos_token_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first eos
    responses = responses.masked_fill(after_eos, tokenizer.pad_token_id)
    return SampledBatch(
        prompt_ids=encoded["input_ids"],
        prompt_mask=encoded["attention_mask"],
        responses=responses,
        response_mask=(~after_eos).float(),
        texts=tokenizer.batch_decode(responses, skip_special_tokens=True),
    )


def score_responses(
    env: Any, problem_ids: list[str], texts: list[str]
) -> tuple[np.ndarray, list[bool], list[str | None]]:
    """Score each response with the env: ``reset`` on its problem, then ``step(text)``.

    The rewards and verdicts are the env's own; nothing is recomputed here.

    Returns:
        ``(rewards, correct, parsed_answers)``: (B,) float64 rewards, the env's verdicts and the
        final answers it parsed (None where there was none).
    """
    rewards, correct, parsed = [], [], []
    for pid, text in zip(problem_ids, texts, strict=True):
        env.reset(options={"problem_id": pid})
        _, reward, _, _, info = env.step(text)
        rewards.append(float(reward))
        correct.append(bool(info["correct"]))
        parsed.append(info["parsed_answer"])
    return np.asarray(rewards, dtype=np.float64), correct, parsed
