"""Loading a causal-LM policy, sampling and scoring its responses: pieces the scripts share."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from meds_gym.envs import problem_env
from meds_gym.errors import InvalidArgumentError
from meds_gym.integrations.hf import BOXED_ANCHOR
from meds_gym.meds import MEDSShaper, MEDSVectorRewardWrapper
from meds_gym.verifiers import AnswerAnchor

from .fingerprint import FingerprintCapture, answer_tokens, boxed_brace_token_in_ids
from .losses import dynamic_sampling_mask, token_logprobs
from .sampling import (
    groups_share_prompts,
    prompt_positions,
    sample,
    shared_prompt_forward,
    stop_token_ids,
)
from .tiny_model import load_tokenizer
from .value import capture_values

logger = logging.getLogger(__name__)


Precision = Literal["fp32", "bf16-mixed"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16-mixed")
"""How the agent computes: ``fp32`` throughout, or ``bf16-mixed``: float32 weights (the
optimiser's master copy, so that updates of 1e-6 do not round away as they do on bfloat16
weights) with the forward passes under bfloat16 autocast (:func:`autocast_for`)."""


def default_precision(device: str) -> Precision:
    """``bf16-mixed`` on a CUDA device that supports bfloat16, else ``fp32``."""
    on_bf16_gpu = str(device).startswith("cuda") and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if on_bf16_gpu else "fp32"


def autocast_for(precision: str | None, device: str) -> torch.autocast:
    """The autocast context of the forward passes under ``precision`` on ``device``.

    ``bf16-mixed``: bfloat16 autocast (on CUDA, or on the CPU, which supports it too); ``fp32``:
    a disabled one; None: that of :func:`default_precision`. Gradients and optimiser steps stay
    outside it, on the float32 weights.

    Raises:
        InvalidArgumentError: If ``precision`` is not one of :data:`PRECISIONS`.
    """
    precision = default_precision(device) if precision is None else precision
    if precision not in PRECISIONS:
        raise InvalidArgumentError("precision", f"one of {PRECISIONS}", precision)
    return torch.autocast(
        torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"
    )


def load_policy(model_path: str | os.PathLike[str], device: str = "cpu") -> tuple[Any, Any]:
    """Load ``AutoModelForCausalLM.from_pretrained(model_path)`` and its tokenizer.

    The tokenizer pads on the left (for generation). A tokenizer without a pad token pads with its
    eos token (a warning is logged): padding is masked out everywhere, so any token can stand in
    (a response's mask ends at its first stop token by position, not where the pad id appears, so
    the eos that ends a response counts and the eos padding after it does not).
    Nothing is downloaded (``local_files_only``). The weights are loaded in float32 on every
    device, also from a bfloat16 checkpoint: they are the optimiser's master weights, and
    bfloat16 computation comes from autocast (:data:`PRECISIONS`).

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
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, local_files_only=True
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


PROMPT_FORMATS = ("chat", "compact")
"""How an observation becomes the model's prompt: ``chat`` (the env's messages, system
instruction included, through the tokenizer's chat template) or ``compact`` (the question alone,
through the template when there is one: for models warmed up on that format, such as the tiny
model built with ``prompt_format="compact"``, which then need no instruction to know where and
how to answer)."""


def prompt_text(tokenizer: Any, obs: str, info: dict[str, Any], prompt_format: str = "chat") -> str:
    """The prompt of one observation in ``prompt_format`` (see :data:`PROMPT_FORMATS`).

    ``chat``: the chat form of the env's messages when the tokenizer has a template, else the
    plain observation. ``compact``: the user message alone through the template, else the
    question followed by a newline.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise InvalidArgumentError("prompt_format", f"one of {PROMPT_FORMATS}", prompt_format)
    template = getattr(tokenizer, "chat_template", None)
    if prompt_format == "chat":
        if template:
            return tokenizer.apply_chat_template(
                info["messages"], add_generation_prompt=True, tokenize=False
            )
        return obs
    question = info["question"]
    if template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
    return question + "\n"


def forward_logprobs(
    model: Any,
    sequences: torch.Tensor,
    attention: torch.Tensor,
    prompt_width: int,
    capture: FingerprintCapture | None = None,
    temperature: float = 1.0,
    group_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """One forward pass over prompt + response: the response tokens' log-probs and logits.

    The log-probs are those of the distribution the tokens were sampled from: the logits are
    divided by the sampling ``temperature`` first, as veRL does (issue 9), in float32, chunk by
    chunk inside :func:`~agents.losses.token_logprobs` (no float32 copy of the whole logits).
    The fingerprint is computed inside the pass, without the temperature (a property of the
    model, not of the sampling).

    With ``group_size > 1``, where consecutive blocks of that many rows share their prompt, the
    prompt of each block runs once and its keys and values serve the block's responses
    (:func:`agents.sampling.shared_prompt_forward`: same log-probs and gradients, less work);
    otherwise every row runs in full.

    Args:
        model: The causal LM.
        sequences: (B, P + T) left-padded prompts followed by right-padded responses.
        attention: (B, P + T) attention mask, 0 on padding.
        prompt_width: P, the width of the (padded) prompt block.
        capture: If given, the pass runs inside it and the fingerprints are returned. Its
            positions are absolute (counted from the start of the prompt block).
        temperature: The sampling temperature (> 0).
        group_size: Rows per prompt group (1: no sharing).

    Returns:
        ``(logprobs, logits, features)``: (B, T) log-probs of the response tokens, the (B, T, V)
        logits that predict them (the model's, before the temperature), and (B, L) fingerprints
        or None.
    """
    if not temperature > 0:
        raise InvalidArgumentError("temperature", "a float > 0", temperature)
    features = None
    share = groups_share_prompts(
        sequences[:, :prompt_width], attention[:, :prompt_width], group_size
    )
    if share:
        response_capture = (
            None
            if capture is None
            else FingerprintCapture(
                model,
                capture.positions - prompt_width,
                capture.next_tokens,
                capture.selection,
                capture.k,
            )
        )
        response_logits = shared_prompt_forward(
            model, sequences, attention, prompt_width, group_size, response_capture
        )
        if response_capture is not None:
            features = response_capture.features()
    else:
        positions = prompt_positions(attention)  # left padding: positions as generated
        if capture is None:
            logits = model(
                input_ids=sequences, attention_mask=attention, position_ids=positions
            ).logits
        else:
            with capture:
                logits = model(
                    input_ids=sequences, attention_mask=attention, position_ids=positions
                ).logits
            features = capture.features()
        response_logits = logits[:, prompt_width - 1 : -1]  # (B, T, V): predicts the response
    tokens = sequences[:, prompt_width:]
    return token_logprobs(response_logits, tokens, temperature), response_logits, features


def forward_with_values(
    model: Any,
    value_head: Any,
    sequences: torch.Tensor,
    attention: torch.Tensor,
    prompt_width: int,
    capture: FingerprintCapture | None,
    temperature: float,
    group_size: int,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None, torch.Tensor | None]:
    """:func:`forward_logprobs`, plus the critic's values read in the same pass.

    Returns:
        ``(logprobs, logits, features, values)``: the first three as :func:`forward_logprobs`
        gives them; (B, T) values of the states before each response token, or None without a
        ``value_head``.
    """
    with capture_values(model, value_head, prompt_width) as critic:
        logprobs, logits, features = forward_logprobs(
            model, sequences, attention, prompt_width, capture, temperature, group_size
        )
    return logprobs, logits, features, None if critic is None else critic.values()


@dataclass
class SampledBatch:
    """Prompts and the responses sampled for them, as token tensors and as text."""

    prompt_ids: torch.Tensor
    """(B, P) left-padded prompt ids, each prompt repeated ``group_size`` times in a row."""
    prompt_mask: torch.Tensor
    """(B, P) attention mask of the prompts."""
    responses: torch.Tensor
    """(B, T) response ids up to and including the first stop token, then padding."""
    response_mask: torch.Tensor
    """(B, T) float, 1 on response tokens (the stop token included: the policy chose to stop)."""
    texts: list[str]
    """(B,) decoded responses, special tokens removed."""
    sampler_logprobs: torch.Tensor | None = None
    """(B, T) log-prob of each token under the sampler (0 on padding), or None."""
    group_size: int = 1
    """Rows per prompt group: consecutive blocks of this many rows share a prompt."""

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

    Sampling uses the agent's settings only (:func:`agents.sampling.sample`): a checkpoint's
    ``generation_config`` changes nothing but the stop tokens, and every response ends at the
    first of the model's stop tokens (:func:`agents.sampling.stop_token_ids`: the eos ids, and
    the chat template's end of turn when the tokenizer has a template).

    Args:
        model: The causal LM (in eval mode).
        tokenizer: Its tokenizer, padding on the left.
        prompts: (G,) prompt texts, already in chat form.
        group_size: Responses per prompt.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.

    Returns:
        The G * group_size prompts and responses, grouped by prompt, with the sampler's
        log-probs.
    """
    device = next(model.parameters()).device
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        device
    )
    drawn = sample(
        model,
        encoded["input_ids"],
        encoded["attention_mask"],
        group_size,
        max_new_tokens,
        temperature,
        stop_token_ids(model, tokenizer),
        tokenizer.pad_token_id,
    )
    return SampledBatch(
        prompt_ids=encoded["input_ids"].repeat_interleave(group_size, dim=0),
        prompt_mask=encoded["attention_mask"].repeat_interleave(group_size, dim=0),
        responses=drawn.responses,
        response_mask=drawn.response_mask,
        texts=tokenizer.batch_decode(drawn.responses, skip_special_tokens=True),
        sampler_logprobs=drawn.logprobs,
        group_size=group_size,
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


def concat_batches(batches: list[SampledBatch], pad_token_id: int) -> SampledBatch:
    """Join sampled batches, re-padding prompts on the left and responses on the right.

    Args:
        batches: Batches of possibly different prompt and response widths (at least one).
        pad_token_id: Id written into the new padding (masked out everywhere).

    Returns:
        One batch whose rows are those of ``batches`` in order.
    """
    if not batches:
        raise InvalidArgumentError("batches", "a non-empty list of SampledBatch", batches)
    width_p = max(b.prompt_width for b in batches)
    width_t = max(int(b.responses.shape[1]) for b in batches)
    logged = [b.sampler_logprobs for b in batches if b.sampler_logprobs is not None]
    sizes = {b.group_size for b in batches}

    def pad(x: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
        missing = width - int(x.shape[1])
        fill = torch.full((x.shape[0], missing), value, dtype=x.dtype, device=x.device)
        return torch.cat([fill, x] if left else [x, fill], dim=1)

    return SampledBatch(
        prompt_ids=torch.cat([pad(b.prompt_ids, width_p, pad_token_id, True) for b in batches]),
        prompt_mask=torch.cat([pad(b.prompt_mask, width_p, 0, True) for b in batches]),
        responses=torch.cat([pad(b.responses, width_t, pad_token_id, False) for b in batches]),
        response_mask=torch.cat([pad(b.response_mask, width_t, 0.0, False) for b in batches]),
        texts=[text for b in batches for text in b.texts],
        sampler_logprobs=(
            torch.cat([pad(t, width_t, 0.0, False) for t in logged])
            if len(logged) == len(batches)
            else None
        ),
        group_size=sizes.pop() if len(sizes) == 1 else 1,
    )


def select_rows(batch: SampledBatch, rows: list[int], group_size: int = 1) -> SampledBatch:
    """The rows ``rows`` of ``batch``, in that order, forming groups of ``group_size`` rows."""
    index = torch.as_tensor(rows, dtype=torch.long, device=batch.prompt_ids.device)
    return SampledBatch(
        prompt_ids=batch.prompt_ids[index],
        prompt_mask=batch.prompt_mask[index],
        responses=batch.responses[index],
        response_mask=batch.response_mask[index],
        texts=[batch.texts[i] for i in rows],
        sampler_logprobs=(
            None if batch.sampler_logprobs is None else batch.sampler_logprobs[index]
        ),
        group_size=group_size,
    )


@dataclass
class Rollouts:
    """One iteration's rollouts: every sampled one (for logging) and the kept groups (to train)."""

    batch: SampledBatch | None
    """(B,) kept rollouts, ``group_size`` consecutive rows per kept group; None if none kept."""
    kept: list[int]
    """(B,) index of each kept rollout among the sampled ones."""
    rounds: int
    """Generation rounds this iteration took."""
    sampled_ids: list[str]
    """Problem of every sampled rollout, kept or not."""
    sampled_rewards: np.ndarray
    """(N,) env reward of every sampled rollout: the policy's success rate, before any filter."""
    sampled_correct: list[bool]
    """(N,) the env's verdict on every sampled rollout."""
    sampled_parsed: list[str | None]
    """(N,) parsed final answer of every sampled rollout (None: no answer)."""

    @property
    def problem_ids(self) -> list[str]:
        """(B,) problem of each kept rollout."""
        return [self.sampled_ids[i] for i in self.kept]

    @property
    def rewards(self) -> np.ndarray:
        """(B,) env rewards of the kept rollouts."""
        return self.sampled_rewards[self.kept]

    @property
    def correct(self) -> list[bool]:
        """(B,) env verdicts of the kept rollouts."""
        return [self.sampled_correct[i] for i in self.kept]

    @property
    def parsed(self) -> list[str | None]:
        """(B,) parsed answers of the kept rollouts."""
        return [self.sampled_parsed[i] for i in self.kept]


def collect_rollouts(
    model: Any,
    tokenizer: Any,
    env: Any,
    rng: np.random.Generator,
    groups: int,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    dynamic_sampling: bool = False,
    max_rounds: int = 1,
    prompt_format: str = "chat",
    keep_all_wrong: bool = False,
    draw: Callable[[int], Sequence[int]] | None = None,
) -> Rollouts:
    """Sample groups of responses to random problems of ``env`` and score them with it.

    Without dynamic sampling: one round of ``groups`` problems, every group kept. With it, as
    DAPO does: rounds of ``groups`` problems each, keeping only the groups holding both right
    and wrong answers by the env's verdicts (not its rewards, which may give partial credit),
    until ``groups`` groups are kept (extra kept groups of the last round are left
    out) or ``max_rounds`` rounds have run; the batch may then hold fewer groups, or none.

    Args:
        model: The causal LM (in eval mode).
        tokenizer: Its tokenizer, padding on the left.
        env: A :class:`~meds_gym.envs.ProblemEnv` (or a wrapper of one).
        rng: Draws the problems of each round.
        groups: Groups wanted in the batch (prompts per round).
        group_size: Responses per problem.
        max_new_tokens: Longest response.
        temperature: Sampling temperature.
        dynamic_sampling: Keep only groups with both right and wrong answers.
        max_rounds: Cap on generation rounds (DAPO's ``max_num_gen_batches``).
        prompt_format: How observations become prompts (:data:`PROMPT_FORMATS`).
        keep_all_wrong: Dynamic sampling keeps all-wrong groups too (MEDS shaping them; see
            :func:`~agents.losses.dynamic_sampling_mask`).
        draw: ``draw(groups)`` gives the problem indices of a round (e.g. an
            :class:`EpochSchedule`); None draws them with ``rng``, independently per round.

    Returns:
        The kept rollouts, grouped, and every sampled rollout's ids, rewards and verdicts.
    """
    if groups < 1 or group_size < 1 or max_rounds < 1:
        raise InvalidArgumentError(
            "groups/group_size/max_rounds", "ints >= 1", (groups, group_size, max_rounds)
        )
    source = problem_env(env).source
    kept_parts: list[SampledBatch] = []
    kept: list[int] = []
    ids_all: list[str] = []
    rewards_all: list[np.ndarray] = []
    correct_all: list[bool] = []
    parsed_all: list[str | None] = []
    rounds = 0
    while len(kept) < groups * group_size and rounds < max_rounds:
        rounds += 1
        indices = (
            draw(groups)
            if draw is not None
            else rng.choice(len(source), size=groups, replace=len(source) < groups)
        )
        problem_ids, prompts = [], []
        for index in indices:
            obs, info = env.reset(options={"index": int(index)})
            problem_ids.append(info["problem_id"])
            prompts.append(prompt_text(tokenizer, obs, info, prompt_format))
        batch = sample_responses(model, tokenizer, prompts, group_size, max_new_tokens, temperature)
        ids = [pid for pid in problem_ids for _ in range(group_size)]
        rewards, correct, parsed = score_responses(env, ids, batch.texts)
        keep = (
            dynamic_sampling_mask(
                torch.as_tensor(correct).view(groups, group_size), keep_all_wrong
            ).tolist()
            if dynamic_sampling
            else [True] * groups
        )
        rows: list[int] = []
        for g in range(groups):
            if keep[g] and len(kept) + len(rows) < groups * group_size:
                rows += range(g * group_size, (g + 1) * group_size)
        if rows:
            kept_parts.append(select_rows(batch, rows, group_size))
            kept += [len(ids_all) + r for r in rows]
        ids_all += ids
        rewards_all.append(rewards)
        correct_all += correct
        parsed_all += parsed
    return Rollouts(
        batch=concat_batches(kept_parts, tokenizer.pad_token_id) if kept_parts else None,
        kept=kept,
        rounds=rounds,
        sampled_ids=ids_all,
        sampled_rewards=np.concatenate(rewards_all),
        sampled_correct=correct_all,
        sampled_parsed=parsed_all,
    )


@dataclass
class LogProbPass:
    """What the no-grad pass over a batch of rollouts gives, before the update."""

    logprobs: torch.Tensor
    """(B, T) log-probs of the sampled tokens under the sampling policy, at its temperature."""
    ref_logprobs: torch.Tensor | None
    """(B, T) the same under the reference model, or None without one."""
    values: torch.Tensor | None
    """(B, T) the critic's values of the states before each token, or None without a critic."""
    fingerprints: np.ndarray
    """(B, L) MEDS answer fingerprints, NaN rows for responses without ``\\boxed{``."""
    boxed: list[bool]
    """(B,) whether each response has a ``\\boxed{`` (hence a fingerprint)."""
    kept: KeptForward | None = None
    """The forward of the pass's first micro-batch with its graph, for the first update step;
    None where not kept."""


@dataclass
class KeptForward:
    """The log-prob pass's forward over its first micro-batch, with its autograd graph.

    Before the first optimiser step the update's forward of that micro-batch would compute the
    same numbers again; it reuses these instead (:func:`logprob_pass` with ``keep_graph=True``).
    """

    logprobs: torch.Tensor
    """(b, T) log-probs, differentiable."""
    logits: torch.Tensor
    """(b, T, V) the logits that predict the response tokens, differentiable."""
    values: torch.Tensor | None
    """(b, T) the critic's values, differentiable, or None without a critic."""


def train_matches_eval(model: Any) -> bool:
    """Whether the model computes the same in training and evaluation mode: no dropout.

    Conservative: a dropout module, or a module's float ``*dropout*`` attribute (the rate that
    Hugging Face attention layers pass to their attention function in training), above zero
    counts as a difference.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            return False
        for name, value in vars(module).items():
            if "dropout" in name and isinstance(value, float) and value > 0:
                return False
    return True


@torch.no_grad()
def logprob_pass(
    model: Any,
    tokenizer: Any,
    batch: SampledBatch,
    micro_batch_size: int,
    temperature: float = 1.0,
    fingerprint_layers: str = "last_half",
    fingerprint_k: int = 4,
    reference: Any = None,
    value_head: Any = None,
    anchor: AnswerAnchor = BOXED_ANCHOR,
    keep_graph: bool = False,
) -> LogProbPass:
    """One forward pass over the batch: old log-probs, fingerprints, values, reference.

    The MEDS fingerprint (:class:`~agents.fingerprint.FingerprintCapture`) and the critic's values
    (:class:`~agents.value.ValueCapture`) ride on the same forward pass as the log-probs; the
    reference model, when given, runs its own pass.

    With ``keep_graph`` the policy's forward of the first micro-batch runs with autograd on and
    is returned as :attr:`LogProbPass.kept`: the first update step, taken before any optimiser
    step, would compute exactly these log-probs, logits and values again. Only that micro-batch's
    graph is held, so the memory stays that of one micro-batch's forward and backward, as in the
    update; with one micro-batch the whole forward is reused. The caller runs it in training mode
    on a model where that equals evaluation mode (:func:`train_matches_eval`). The returned
    log-probs and values are detached either way.

    Args:
        model: The policy.
        tokenizer: Its tokenizer (locates the ``\\boxed{`` token of each response).
        batch: The rollouts.
        micro_batch_size: Sequences per forward pass.
        temperature: The sampling temperature (log-probs of the sampling distribution).
        fingerprint_layers: Layer selection of the fingerprint.
        fingerprint_k: Number of layers for ``last_k``.
        reference: The reference model, or None.
        value_head: The critic's value head, or None.
        anchor: Where each response's final answer starts (the env's setting): the fingerprint
            is read at the token that carries it.
        keep_graph: Keep the first micro-batch's forward with its graph.

    Returns:
        The pass's outputs, one row per rollout.
    """
    prompt_width, responses, texts = batch.prompt_width, batch.responses, batch.texts
    sequences = torch.cat([batch.prompt_ids, responses], dim=1)  # (B, P + T)
    attention = torch.cat([batch.prompt_mask, batch.response_mask.long()], dim=1)
    brace = [
        boxed_brace_token_in_ids(tokenizer, responses[i].tolist(), texts[i], anchor)
        for i in range(len(texts))
    ]
    brace_positions = torch.tensor([-1 if b is None else prompt_width + b for b in brace])
    answer_starts = answer_tokens(sequences, brace_positions, attention)  # (B,) tokens at P + 1
    logprob_parts, ref_parts, value_parts = [], [], []
    feature_parts: list[Any] = []
    kept = None
    for s in range(0, len(texts), micro_batch_size):
        sl = slice(s, s + micro_batch_size)
        capture = FingerprintCapture(
            model, brace_positions[sl], answer_starts[sl], fingerprint_layers, fingerprint_k
        )
        keep = keep_graph and s == 0
        with torch.set_grad_enabled(keep):
            logprobs, logits, features, values = forward_with_values(
                model,
                value_head,
                sequences[sl],
                attention[sl],
                prompt_width,
                capture,
                temperature,
                batch.group_size,
            )
        if keep:
            kept = KeptForward(logprobs, logits, values)
        if values is not None:
            value_parts.append(values.detach())
        logprob_parts.append(logprobs.detach())
        feature_parts.append(features)
        if reference is not None:
            ref_parts.append(
                forward_logprobs(
                    reference,
                    sequences[sl],
                    attention[sl],
                    prompt_width,
                    None,
                    temperature,
                    batch.group_size,
                )[0]
            )
    return LogProbPass(
        logprobs=torch.cat(logprob_parts),
        ref_logprobs=torch.cat(ref_parts) if ref_parts else None,
        values=torch.cat(value_parts) if value_parts else None,
        fingerprints=np.concatenate(feature_parts),
        boxed=[b is not None for b in brace],
        kept=kept,
    )


class EpochSchedule:
    """Problem indices in epochs: every problem once per epoch, in a fresh order each epoch.

    Draw ``d`` (counted over the whole run) is problem ``permutation(epoch)[d % n]`` with
    ``epoch = d // n`` and the permutation seeded by ``(seed, epoch)``, so the schedule is a pure
    function of the seed and the number of draws: a resumed run continues it from the draws its
    finished iterations made. Over ``k * n`` draws every problem is met exactly ``k`` times.

    Args:
        num_problems: Problems in the training set.
        seed: The run's seed.
        draws: Draws already made (nonzero when resuming).
    """

    def __init__(self, num_problems: int, seed: int, draws: int = 0) -> None:
        if num_problems < 1:
            raise InvalidArgumentError("num_problems", "an int >= 1", num_problems)
        self.num_problems = num_problems
        self.seed = seed
        self.draws = draws
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s order (the current epoch's is kept, not drawn again per draw)."""
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            self._epoch, self._order = epoch, rng.permutation(self.num_problems)
        return self._order

    def __call__(self, count: int) -> list[int]:
        """The next ``count`` problem indices."""
        out = []
        for draw in range(self.draws, self.draws + count):
            epoch, position = divmod(draw, self.num_problems)
            out.append(int(self._permutation(epoch)[position]))
        self.draws += count
        return out


class MEDSScorer:
    """Scores rollouts and MEDS-shapes their rewards by stepping the wrapped env, as users do.

    The rollouts of a batch are the sub-envs of a :class:`gymnasium.vector.SyncVectorEnv` of the
    training env, wrapped in :class:`~meds_gym.meds.MEDSVectorRewardWrapper` with
    ``skip_uniform_groups=True``: each sub-env is reset on its rollout's problem and stepped with
    ``{"text": response, "features": fingerprint}``. The env gives the reward and the verdict;
    the wrapper groups the rollouts by sampled group (``group_size`` consecutive rollouts: a
    problem drawn twice is two groups, as veRL's uid makes them), leaves the groups that the
    config's ``shape_groups`` rule does not shape (by default those all right or all wrong: the
    reference's order, DAPO's filter then MEDS) unshaped and out of the memory, and shapes the
    rest as one batch; the memory keys by problem id. One shaper (one
    memory) serves every batch size.

    Args:
        make_env: Makes one training env (a sub-env of the vector env).
        shaper: The MEDS shaper whose memory the wrapper uses.
        group_size: Rollouts per sampled group.
    """

    def __init__(self, make_env: Callable[[], Any], shaper: MEDSShaper, group_size: int) -> None:
        self.shaper = shaper
        self.group_size = group_size
        self._make_env = make_env
        self._wrappers: dict[int, MEDSVectorRewardWrapper] = {}

    def step(
        self, problem_ids: list[str], texts: list[str], fingerprints: np.ndarray
    ) -> tuple[np.ndarray, list[bool], dict[str, np.ndarray]]:
        """Score and shape one batch of rollouts.

        Args:
            problem_ids: (B,) problem of each rollout.
            texts: (B,) responses.
            fingerprints: (B, L) answer fingerprints; a row with NaN means no fingerprint.

        Returns:
            ``(shaped_rewards, correct, meds_info)``: (B,) shaped rewards, the env's verdicts, and
            the wrapper's ``info["meds"]`` ((B,) ``raw_reward``, ``penalty``, ``cluster`` (-2:
            not shaped), ``cluster_size``, ``shaped_reward``).
        """
        wrapper = self._wrappers.get(len(texts))
        if wrapper is None:
            vector = gym.vector.SyncVectorEnv(
                [self._make_env] * len(texts), autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
            )
            wrapper = MEDSVectorRewardWrapper(
                vector, self.shaper.config, skip_uniform_groups=True, group_size=self.group_size
            )
            self._wrappers[len(texts)] = wrapper
        wrapper.shaper = self.shaper  # the one memory, also after a resume replaced the shaper
        for sub_env, pid in zip(wrapper.env.envs, problem_ids, strict=True):  # type: ignore[attr-defined]
            sub_env.reset(options={"problem_id": pid})
        actions = [
            {"text": text, "features": None if np.isnan(row).any() else row}
            for text, row in zip(texts, fingerprints, strict=True)
        ]
        _, shaped, _, _, info = wrapper.step(actions)
        final = info["final_info"]  # single-turn envs finish (and auto-reset) on every step
        return np.asarray(shaped), [bool(c) for c in final["correct"]], info["meds"]
