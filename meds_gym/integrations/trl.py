r"""MEDS inside TRL's ``GRPOTrainer``: a reward function with one error memory for all processes.

:class:`MEDSRewardFunction` is an ordinary TRL reward function (a callable that receives the
prompts, the completions, the completion ids and the dataset columns), so MEDS runs on every path
TRL supports (accelerate multi-GPU, DeepSpeed, vLLM generation) without touching the trainer. On
each call it

1. grades the process's completions with the verifier (gold answer from a dataset column),
2. computes each completion's MEDS answer fingerprint (docs/design.md section 2, step 1) with the
   policy model,
3. gathers problem ids, correctness, rewards and fingerprints from all processes in rank order
   (the order in which TRL gathers the rewards),
4. shapes the *global* batch with :class:`~meds_gym.meds.MEDSShaper` on every process (the
   shaper is deterministic and every process feeds it the same inputs, so all processes hold the
   same memory), and
5. returns the shaped rewards of its own rows.

TRL then sums the reward functions and normalises each group, so the penalty acts on the wrong
completions' rewards *before* the group normalisation, as in the paper.

**Groups whose completions are all right or all wrong** are skipped by default
(``skip_uniform_groups=True``), as the reference code does: it clusters after DAPO's
dynamic-sampling filter. Such a group keeps its raw rewards (+1 or -1 by default) and does not
enter the memory. TRL still trains on it, but its rewards are all equal, so GRPO's group-normalised
advantage is 0 for every completion of it: it adds no policy-gradient signal (only the KL term,
when ``beta > 0``), exactly as if it had been filtered out. With
``MEDSConfig(shape_groups=GroupRule.MIXED_AND_ALL_WRONG)`` (a variant beyond the paper) all-wrong
groups are shaped and stored too, and their penalties become their only signal. Set
``skip_uniform_groups=False`` to shape and store every group. The penalties of a step do not
depend on the number of processes: a 2-process run gives the same penalties as a 1-process run
on the same completions.

**What a group is.** As in the reference (veRL's ``uid``), a group is the completions sampled
together for one prompt. TRL lays the gathered global batch out as consecutive blocks of
``num_generations`` completions per prompt (the blocks it normalises), so each block is a group,
judged on its own: a problem drawn twice in one batch is two groups. The group size comes from
:meth:`MEDSRewardFunction.bind` (the trainer's ``num_generations``, or ``num_generations_eval``
in its evaluation loop) or from the constructor. While it is unknown (no ``bind``, no
``num_generations=``), the completions sharing a problem id form one group instead. The memory is
keyed by problem id either way.

**Cost of the fingerprint.** TRL's reward functions do not see the policy's log-prob pass, so the
fingerprint takes one extra no-grad forward per completion that has an answer anchor (by default
``\boxed{``; see ``answer_anchor``), over the prompt and the completion *truncated at the anchor
token P* (the causal model needs nothing after P), keeping only the last position's logits
(``logits_to_keep=1``) and copying one hidden vector per selected layer out of forward hooks.
The cost is therefore at most one inference forward of the batch, without the (T, V) logits; it
runs in ``fingerprint_batch_size`` chunks.

Example (``model`` and ``dataset`` with ``prompt``, ``answer`` and ``problem_id`` columns)::

    from trl import GRPOConfig, GRPOTrainer

    meds = MEDSRewardFunction(MEDSConfig(alpha=0.1, beta=0.2))
    trainer = GRPOTrainer(model=model, reward_funcs=[meds], args=GRPOConfig(...),
                          train_dataset=dataset)
    meds.bind(trainer)  # the policy model and tokenizer, and the memory in each checkpoint
    trainer.train()  # or trainer.train(resume_from_checkpoint=True): the memory comes back too

**Checkpoints.** :meth:`MEDSRewardFunction.bind` adds a :class:`MEDSCheckpointCallback` to the
trainer: each checkpoint folder the trainer writes also holds the memory (:data:`MEMORY_FILE`),
and a run resumed from a checkpoint starts with that checkpoint's memory on every process.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError, MissingExtraError, invalid_type
from meds_gym.integrations.hf import (
    FingerprintCapture,
    LayerSelection,
    anchor_token,
    answer_has_token,
    decoder_layers,
    features_from_layer_logits,
    fingerprint_dim,
)
from meds_gym.meds import MEDSConfig, MEDSShaper, ShapeResult, shaped_groups
from meds_gym.meds.adapter import HoldsShaper, reads_answers, shape_rollouts
from meds_gym.verifiers import AnswerAnchor, is_equivalent, parse_anchor, verify_response

try:  # the integration needs the ``trl`` extra; fail with the command that installs it
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised through a subprocess test
    raise MissingExtraError("MEDS for TRL", "trl", "torch") from exc
try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as exc:  # pragma: no cover - trl needs transformers
    raise MissingExtraError("MEDS for TRL", "trl", "transformers") from exc
for _package in ("trl", "accelerate"):
    try:
        __import__(_package)
    except ImportError as exc:
        raise MissingExtraError("MEDS for TRL", "trl", _package) from exc

logger = logging.getLogger(__name__)

FeaturesFn = Callable[[Sequence[Any], Sequence[str], Sequence[Sequence[int]]], np.ndarray]
"""``(prompts, completion_texts, completion_ids) -> (B, L) float`` fingerprints, NaN rows = none."""

CorrectnessFn = Callable[[str, str], bool]
"""``(completion_text, gold_answer) -> correct?``."""


# --------------------------------------------------------------------------------------------
# Pure helpers: the gather across processes and the completion text.
# --------------------------------------------------------------------------------------------


def gather_across_processes(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order; ``[value]`` when not running distributed.

    Uses ``torch.distributed.all_gather_object``, which accelerate, DeepSpeed and ``torchrun``
    all initialise; every process must call it at the same point.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def process_rank() -> int:
    """This process's rank (0 when not running distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a str, or the content of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # content blocks
            return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise invalid_type("completions[i]", "a str or a list of chat messages", completion)


# --------------------------------------------------------------------------------------------
# The fingerprint: one no-grad forward over prompt + completion[: P + 1].
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def answer_fingerprints(
    model: nn.Module,
    sequences: Sequence[Sequence[int] | None],
    targets: Sequence[int | None],
    *,
    pad_token_id: int,
    batch_size: int = 8,
    selection: LayerSelection | str = LayerSelection.LAST_HALF,
) -> npt.NDArray[np.float32]:
    """MEDS fingerprints from sequences that end on the answer's anchor token P.

    For each sequence (prompt ids + completion ids up to and including P) and its target (the
    completion's token at P + 1), the fingerprint holds, for each selected decoder layer n,
    ``lm_head(hidden_n[P])[target]``, computed by :mod:`meds_gym.integrations.hf` exactly as
    the bundled agent computes it in its log-prob pass.

    Sequences are left-padded in chunks of ``batch_size`` with explicit position ids, so a
    sequence's fingerprint does not depend on its neighbours' positions; with ``batch_size=1``
    there is no padding at all and the values do not depend on how the batch was split. Rows given
    as ``None`` have no fingerprint; they still take a slot (a one-token dummy).

    Under DeepSpeed ZeRO-3 every forward gathers the weights collectively, so every process runs
    the same number of forwards: that of the process with the most chunks (the others pad with
    one-token dummy forwards). Every process must therefore call this function at the same point,
    as the reward function does; outside a distributed run it is an ordinary function. The values
    are computed inside the forward (see :class:`~meds_gym.integrations.hf.FingerprintCapture`),
    where ZeRO-3's LM head weight is gathered.

    Args:
        model: A Hugging Face causal LM (unwrapped from DDP/DeepSpeed; a PEFT model is fine).
        sequences: (B,) token id lists, or None for a completion without a fingerprint.
        targets: (B,) the token id at P + 1, or None.
        pad_token_id: Id used for left padding and for the dummy rows.
        batch_size: Sequences per forward.
        selection: Which decoder layers to keep (default the last half, as in the paper).

    Returns:
        (B, L) float32 fingerprints, NaN rows where there is none.
    """
    if len(sequences) != len(targets):
        raise InvalidArgumentError(
            "targets", f"{len(sequences)} entries (one per sequence)", f"{len(targets)} entries"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError("batch_size", "an int >= 1", batch_size)
    num_layers = len(decoder_layers(model))
    out = np.full(
        (len(sequences), fingerprint_dim(num_layers, selection)), np.nan, dtype=np.float32
    )
    # ZeRO-3 gathers are collectives: as many forwards here as on the busiest process.
    chunks = max(gather_across_processes(math.ceil(len(sequences) / batch_size)))
    device = model.get_output_embeddings().weight.device  # type: ignore[operator]
    was_training = model.training
    model.eval()  # no dropout: the fingerprint must be a function of the weights only
    try:
        for start in range(0, chunks * batch_size, batch_size):
            chunk = range(start, min(start + batch_size, len(sequences)))  # empty past our rows
            rows = [list(sequences[i] or [pad_token_id]) for i in chunk] or [[pad_token_id]]
            tgt = [-1 if sequences[i] is None or targets[i] is None else targets[i] for i in chunk]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, row in enumerate(rows):
                ids[j, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[j, width - len(row) :] = 1
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (b, T): 0 at the first real token
            kwargs = dict(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=False,
            )
            last = torch.full((len(rows),), width - 1, dtype=torch.long)  # P: the last position
            next_tokens = torch.tensor(tgt or [-1], dtype=torch.long)
            with FingerprintCapture(model, last, next_tokens, selection) as capture:
                try:
                    model(**kwargs, logits_to_keep=1)  # the head sees P only
                except TypeError:  # an architecture without ``logits_to_keep``
                    model(**kwargs)
            per_layer = capture.layer_logits().cpu().numpy()  # (b, layers), NaN rows: no target
            values = features_from_layer_logits(per_layer, num_layers, selection)
            out[chunk.start : chunk.stop] = values[: len(chunk)]
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------
# The reward function.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MEDSStep:
    """What one reward call did, for the whole global batch (identical on every process).

    Attributes:
        problem_ids: (B,) problem id of each completion, in global (rank) order.
        completions: (B,) completion texts.
        correct: (B,) bool verdicts.
        rewards: (B,) float64 rewards before shaping (1.0 right, 0.0 wrong).
        features: (B, L) float32 fingerprints, NaN rows where there is none.
        result: The shaper's output (penalties, clusters, cluster sizes, shaped rewards).
        kept: (B,) bool, the completions in groups that were shaped and stored.
        local: The rows of this process.
        training: Whether the memory learned from this step.
    """

    problem_ids: tuple[str, ...]
    completions: tuple[str, ...]
    correct: npt.NDArray[np.bool_]
    rewards: npt.NDArray[np.float64]
    features: npt.NDArray[np.float32]
    result: ShapeResult
    kept: npt.NDArray[np.bool_]
    local: slice
    training: bool


def anchored_correctness(anchor: AnswerAnchor) -> CorrectnessFn:
    """``(completion, gold) -> correct?`` reading the final answer at ``anchor``."""
    if anchor == AnswerAnchor.boxed():
        return lambda completion, gold: verify_response(completion, gold).correct

    def correct(completion: str, gold: str) -> bool:
        answer = anchor.extract(completion)
        return answer is not None and is_equivalent(answer, gold)

    return correct


class MEDSRewardFunction(HoldsShaper):
    r"""A TRL reward function that grades completions and applies the MEDS penalty.

    Pass it in ``GRPOTrainer(reward_funcs=[...])`` and call :meth:`bind` with the trainer (or give
    ``model`` and ``tokenizer`` here). The dataset needs a gold-answer column and a problem-id
    column (names configurable). The reward is 1.0 for a correct completion and
    ``-penalty`` for a wrong one; the penalty is ``min(alpha * log(n + 1), beta)`` for a wrong
    completion that falls into a cluster of n past wrong completions of the same problem.

    All processes gather the batch and shape it identically (see the module docstring); the
    memory therefore stays the same on every process and the result does not depend on the
    number of processes. While the policy model is in eval mode (TRL's evaluation loop) the
    memory is frozen: completions are penalised but not stored. :meth:`bind` also makes the
    trainer save the memory with its checkpoints and restore it on resume
    (:class:`MEDSCheckpointCallback`); :meth:`save` and :meth:`load` do it by hand.

    Args:
        config: MEDS configuration (ignored when ``shaper`` is given).
        model: The policy model, if not bound later with :meth:`bind`.
        tokenizer: The policy's tokenizer, if not bound later with :meth:`bind`.
        shaper: A shaper to continue (e.g. ``MEDSShaper.load(path)``).
        answer_column: Dataset column holding the gold answer.
        problem_id_column: Dataset column holding the stable problem id.
        correctness_fn: ``(completion_text, gold) -> bool``; default
            :func:`meds_gym.verifiers.verify_response`.
        features_fn: ``(prompts, completion_texts, completion_ids) -> (B, L)`` fingerprints;
            default: the policy model's answer fingerprint (needs ``model`` and ``tokenizer``).
            Not called with ``ClusterMethod.ANSWER``, which clusters by the answer at
            ``answer_anchor`` instead (no model forward).
        fingerprint_batch_size: Completions per fingerprint forward (1 makes the fingerprints
            independent of how the batch is split across processes, bit for bit).
        answer_anchor: Where the final answer starts: ``"boxed"`` (default), ``"answer_tag"``,
            a regex with one group, or an :class:`~meds_gym.verifiers.AnswerAnchor`; used by the
            fingerprint and by the default correctness check (the env's setting, shared).
        skip_uniform_groups: Shape and store only the groups that ``config.shape_groups``
            names: by default those holding both right and wrong completions, as the reference
            does after DAPO's filter; see the module docstring for what TRL does with the others.
        num_generations: Completions per prompt in training (``GRPOConfig.num_generations``):
            each consecutive block of that many completions of the global batch is one group for
            ``skip_uniform_groups``. ``None``: taken from the trainer by :meth:`bind`; while still
            unknown, the completions sharing a problem id form one group (wrong when a problem is
            drawn twice in one batch).
        correct_reward: Reward of a right completion, before shaping.
        incorrect_reward: Reward of a wrong one. The defaults score +1 / -1, as the reference
            does, so that ``MEDSConfig``'s default alpha and beta mean the paper's setting; on
            1 / 0 the same strength is alpha / 2, beta / 2 (see :class:`MEDSConfig`).
        num_generations_eval: The same for TRL's evaluation loop (the policy model in eval mode);
            ``None``: the trainer's ``num_generations_eval`` after :meth:`bind`, else
            ``num_generations``.
        fingerprint_layers: Which decoder layers the fingerprint keeps (default the last half).
        record_history: Keep a :class:`MEDSStep` per call in :attr:`history` (for analysis
            and tests; it grows with training).

    Example:
        >>> import numpy as np
        >>> meds = MEDSRewardFunction(features_fn=lambda p, c, ids: np.ones((len(c), 2)))
        >>> meds(prompts=["1+1?"] * 2, completions=[r"\boxed{3}", r"\boxed{2}"],
        ...      answer=["2", "2"], problem_id=["p0", "p0"])  # +1 / -1, as the reference
        [-1.0, 1.0]
    """

    __name__ = "meds"  # TRL names its logged reward metrics after the function

    def __init__(
        self,
        config: MEDSConfig | None = None,
        *,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        shaper: MEDSShaper | None = None,
        answer_column: str = "answer",
        problem_id_column: str = "problem_id",
        correctness_fn: CorrectnessFn | None = None,
        features_fn: FeaturesFn | None = None,
        fingerprint_batch_size: int = 8,
        record_history: bool = False,
        answer_anchor: AnswerAnchor | str = "boxed",
        skip_uniform_groups: bool = True,
        fingerprint_layers: LayerSelection | str = LayerSelection.LAST_HALF,
        num_generations: int | None = None,
        num_generations_eval: int | None = None,
        correct_reward: float = 1.0,
        incorrect_reward: float = -1.0,
    ) -> None:
        if shaper is not None and not isinstance(shaper, MEDSShaper):
            raise InvalidArgumentError("shaper", "a MEDSShaper or None", shaper)
        if config is not None and not isinstance(config, MEDSConfig):
            raise InvalidArgumentError("config", "a MEDSConfig or None", config)
        for name, value in (
            ("answer_column", answer_column),
            ("problem_id_column", problem_id_column),
        ):
            if not isinstance(value, str) or not value:
                raise InvalidArgumentError(name, "a non-empty dataset column name", value)
        if (
            isinstance(fingerprint_batch_size, bool)
            or not isinstance(fingerprint_batch_size, int)
            or fingerprint_batch_size < 1
        ):
            raise InvalidArgumentError(
                "fingerprint_batch_size", "an int >= 1", fingerprint_batch_size
            )
        for name, fn in (("correctness_fn", correctness_fn), ("features_fn", features_fn)):
            if fn is not None and not callable(fn):
                raise InvalidArgumentError(name, "a callable or None", fn)
        scale: tuple[tuple[str, Any], ...] = (
            ("correct_reward", correct_reward),
            ("incorrect_reward", incorrect_reward),
        )
        for name, value in scale:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError(name, "a finite real number", value)
            if not np.isfinite(value):
                raise InvalidArgumentError(name, "a finite real number", value)
        if not correct_reward > incorrect_reward:
            raise InvalidArgumentError(
                "correct_reward", f"more than incorrect_reward={incorrect_reward}", correct_reward
            )
        self.correct_reward = float(correct_reward)
        self.incorrect_reward = float(incorrect_reward)
        self.shaper = shaper if shaper is not None else MEDSShaper(config)
        self.model = model
        self.tokenizer = tokenizer
        self.answer_column = answer_column
        self.problem_id_column = problem_id_column
        if not isinstance(skip_uniform_groups, bool):
            raise InvalidArgumentError("skip_uniform_groups", "a bool", skip_uniform_groups)
        for name, count in (
            ("num_generations", num_generations),
            ("num_generations_eval", num_generations_eval),
        ):
            if count is not None and (
                isinstance(count, bool) or not isinstance(count, int) or count < 1
            ):
                raise InvalidArgumentError(name, "an int >= 1 or None", count)
        self.num_generations = num_generations
        self.num_generations_eval = num_generations_eval
        self._given_counts = {
            "num_generations": num_generations,
            "num_generations_eval": num_generations_eval,
        }  # what the caller asked for; bind() checks the trainer against it
        try:
            self.fingerprint_layers = LayerSelection(fingerprint_layers)
        except ValueError as exc:
            raise InvalidArgumentError(
                "fingerprint_layers",
                f"one of {[s.value for s in LayerSelection]}",
                fingerprint_layers,
            ) from exc
        self.answer_anchor = parse_anchor(answer_anchor)
        self.skip_uniform_groups = skip_uniform_groups
        self.correctness_fn: CorrectnessFn = correctness_fn or anchored_correctness(
            self.answer_anchor
        )
        self.features_fn = features_fn
        self.fingerprint_batch_size = fingerprint_batch_size
        self.record_history = bool(record_history)
        self.history: list[MEDSStep] = []
        self.last_step: MEDSStep | None = None
        self.chat_template_kwargs: dict[str, Any] = {}
        """Extra ``apply_chat_template`` arguments for chat prompts (set by :meth:`bind`)."""

    def bind(self, trainer: Any) -> MEDSRewardFunction:
        """Take the policy model and tokenizer from a TRL trainer; returns ``self``.

        Also adds a :class:`MEDSCheckpointCallback` for this function to the trainer's callbacks
        (once, however often it is bound), so that the memory is saved in every checkpoint and
        restored by ``trainer.train(resume_from_checkpoint=...)``.

        Args:
            trainer: A ``GRPOTrainer`` (anything with ``model``, ``processing_class`` and
                ``accelerator``; its ``num_generations`` and ``num_generations_eval``, when it has
                them, set the group size of ``skip_uniform_groups``; its ``callback_handler``,
                when it has one, gets the checkpoint callback).

        Raises:
            InvalidArgumentError: If ``num_generations`` or ``num_generations_eval`` was given to
                the constructor and differs from the trainer's.
        """
        for attr in ("model", "processing_class"):
            if not hasattr(trainer, attr):
                raise InvalidArgumentError(
                    "trainer", f"a TRL trainer (with a `{attr}` attribute)", trainer
                )
        # The group size of DAPO's filter: TRL's blocks of num_generations completions per prompt.
        counts: dict[str, int] = {}
        for name in ("num_generations", "num_generations_eval"):
            theirs = getattr(trainer, name, None)
            if isinstance(theirs, bool) or not isinstance(theirs, int):
                continue
            mine = self._given_counts[name]
            if mine is not None and mine != theirs:
                raise InvalidArgumentError(
                    name,
                    f"the trainer's {name} ({theirs}), or None to take it from the trainer",
                    mine,
                )
            counts[name] = theirs
        model = trainer.model
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is not None:
            model = accelerator.unwrap_model(model)
        self.model = model
        processing = trainer.processing_class
        self.tokenizer = getattr(processing, "tokenizer", processing)  # a processor holds one
        # Render chat prompts with the trainer's template settings, as it does before generating.
        self.chat_template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        template = getattr(trainer, "chat_template", None)
        if template is not None:
            self.chat_template_kwargs["chat_template"] = template
        tools = getattr(trainer, "tools", None)
        if tools:
            self.chat_template_kwargs["tools"] = tools
        for name, count in counts.items():
            setattr(self, name, count)
        handler = getattr(trainer, "callback_handler", None)
        if handler is not None and not any(
            isinstance(callback, MEDSCheckpointCallback) and callback.reward_function is self
            for callback in handler.callbacks
        ):
            handler.add_callback(MEDSCheckpointCallback(self))
        return self

    # -- the TRL reward-function protocol -----------------------------------------------------

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Score this process's completions; the shaping uses the batch of all processes.

        Args:
            prompts: (b,) this process's prompts (text or chat messages).
            completions: (b,) completions (text or chat messages).
            completion_ids: (b,) generated token ids (needed by the default fingerprint).
            **kwargs: Dataset columns (must include the answer and problem-id columns) and TRL's
                extras (``log_metric``, ``log_extra``, ``trainer_state``), used when present.

        Returns:
            (b,) shaped rewards of this process's completions.
        """
        texts = [completion_text(c) for c in completions]
        size = len(texts)
        golds = self._column(kwargs, self.answer_column, size)
        ids = self._problem_ids(self._column(kwargs, self.problem_id_column, size))
        correct = [
            self._verdict(i, t, g) for i, (t, g) in enumerate(zip(texts, golds, strict=True))
        ]
        by_answer = reads_answers(self.shaper)
        features = (
            np.full((size, 1), np.nan, dtype=np.float32)  # the answer-string memory: no logits
            if by_answer
            else self._features(prompts, texts, completion_ids)
        )
        local = (ids, texts, correct, features)
        parts = gather_across_processes(local)
        rank = process_rank() if len(parts) > 1 else 0
        offset = sum(len(part[0]) for part in parts[:rank])
        all_ids = [pid for part in parts for pid in part[0]]
        all_texts = [t for part in parts for t in part[1]]
        all_correct = np.array([c for part in parts for c in part[2]], dtype=bool)
        widths = {part[3].shape[1] for part in parts if part[3].shape[0]}
        if len(widths) > 1:
            raise InvalidArgumentError(
                "features", "fingerprints of one dimension on every process", sorted(widths)
            )
        blocks = [part[3] for part in parts if part[3].shape[0]]
        all_features = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, 1), np.float32)
        rewards = np.where(all_correct, self.correct_reward, self.incorrect_reward)
        training = self.shaper.training
        frozen = self.model is not None and not self.model.training  # TRL's evaluation loop
        if frozen:
            self.shaper.training = False
        kept = None
        if self.skip_uniform_groups:
            kept = shaped_groups(
                all_ids,
                all_correct,
                self._group_ids(all_ids, frozen),
                self.shaper.config.shape_groups,
            )
        try:
            answers = [self.answer_anchor.extract(t) for t in all_texts] if by_answer else None
            result = shape_rollouts(
                self.shaper, all_ids, all_correct, rewards, all_features, answers, kept=kept
            )
        finally:
            self.shaper.training = training
        local_rows = slice(offset, offset + size)
        step = MEDSStep(
            problem_ids=tuple(all_ids),
            completions=tuple(all_texts),
            correct=all_correct,
            rewards=rewards,
            features=all_features,
            result=result,
            kept=np.ones(len(all_ids), dtype=bool) if kept is None else kept,
            local=local_rows,
            training=training and not frozen,
        )
        self.last_step = step
        if self.record_history:
            self.history.append(step)
        self._log(kwargs, step)
        return [float(r) for r in result.shaped_rewards[local_rows]]

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the shared memory (atomically, no pickle) from the main process only.

        Every process holds the same memory, so one copy suffices; call it on all processes.
        :meth:`load` (inherited) reads it back; call that on every process, so that all of them
        hold the same memory again.

        Args:
            path: Destination ``.npz`` file.
        """
        if process_rank() == 0:
            self.shaper.save(path)

    # -- internals ---------------------------------------------------------------------------

    def _group_ids(self, all_ids: list[str], evaluating: bool) -> list[int] | None:
        """The sampled group of each completion of the global batch (None: group by problem)."""
        name = "num_generations"
        if evaluating and self.num_generations_eval is not None:
            name = "num_generations_eval"
        size: int | None = getattr(self, name)
        if size is None:
            return None
        if len(all_ids) % size:
            raise InvalidArgumentError(
                name,
                f"a divisor of the global batch of {len(all_ids)} completions",
                size,
                "Pass the GRPOConfig's value, or None to group completions by problem id.",
            )
        for start in range(0, len(all_ids), size):
            block = set(all_ids[start : start + size])
            if len(block) > 1:
                raise InvalidArgumentError(
                    name,
                    "the number of consecutive completions TRL samples per prompt (every block "
                    "of that many completions holds one problem)",
                    size,
                    f"Completions {start}..{start + size - 1} hold problems {sorted(block)}; "
                    "pass the GRPOConfig's value, or None to group completions by problem id.",
                )
        return [i // size for i in range(len(all_ids))]

    def _problem_ids(self, values: list[Any]) -> list[str]:
        """Problem ids as str; a missing one (None, NaN) is refused (it would share one bucket)."""
        ids = []
        for i, pid in enumerate(values):
            if pid is None or (isinstance(pid, float) and not math.isfinite(pid)):
                raise InvalidArgumentError(
                    f"{self.problem_id_column}[{i}]",
                    "a problem id (str or int) for every completion",
                    pid,
                    "Give every dataset row an id; rows without one would share one memory bucket.",
                )
            ids.append(str(pid))
        return ids

    def _verdict(self, i: int, text: str, gold: Any) -> bool:
        """The correctness function's verdict; a missing gold scores wrong, never right."""
        if gold is None or (isinstance(gold, float) and not math.isfinite(gold)):
            logger.warning(
                "completion %d has no gold answer (%s is %r): scored wrong",
                i,
                self.answer_column,
                gold,
            )
            return False
        verdict = self.correctness_fn(text, str(gold))
        if isinstance(verdict, (bool, np.bool_)):
            return bool(verdict)
        if isinstance(verdict, (int, np.integer)) and verdict in (0, 1):
            return bool(verdict)
        raise InvalidArgumentError(
            "correctness_fn(completion, gold)",
            "a bool (or 0 / 1)",
            verdict,
            'A string such as "false" is truthy; return a bool.',
        )

    @staticmethod
    def _column(kwargs: dict[str, Any], name: str, size: int) -> list[Any]:
        if name not in kwargs:
            known = sorted(
                k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric")
            )
            raise InvalidArgumentError(
                name,
                "a dataset column passed to the reward function",
                f"columns {known}",
                f"Add a `{name}` column to the dataset, or set the column name in "
                "MEDSRewardFunction(answer_column=..., problem_id_column=...).",
            )
        values = list(kwargs[name])
        if len(values) != size:
            raise InvalidArgumentError(name, f"{size} values (one per completion)", len(values))
        return values

    def _features(
        self,
        prompts: Sequence[Any],
        texts: list[str],
        completion_ids: Sequence[Sequence[int]] | None,
    ) -> npt.NDArray[np.float32]:
        if self.features_fn is not None:
            features = np.asarray(
                self.features_fn(prompts, texts, completion_ids or []), dtype=np.float32
            )
            if features.ndim != 2 or features.shape[0] != len(texts):
                raise InvalidArgumentError(
                    "features_fn", f"a function returning a ({len(texts)}, L) array", features.shape
                )
            return features
        if self.model is None or self.tokenizer is None:
            raise InvalidArgumentError(
                "model",
                "the policy model and tokenizer for the fingerprint",
                None,
                "Call `meds.bind(trainer)` after building the GRPOTrainer, or pass `model=` and "
                "`tokenizer=`, or pass `features_fn=`.",
            )
        if completion_ids is None:
            raise InvalidArgumentError(
                "completion_ids", "the generated token ids (TRL passes them)", None
            )
        prompt_ids = self._prompt_ids(prompts)
        sequences: list[list[int] | None] = []
        targets: list[int | None] = []
        for prompt, completion, text in zip(prompt_ids, completion_ids, texts, strict=True):
            ids = [int(t) for t in completion]
            position = None
            if answer_has_token(text, self.answer_anchor):  # else no token to search for
                position = anchor_token(self.tokenizer, ids, None, self.answer_anchor)
            if position is None or position + 1 >= len(ids):
                sequences.append(None)  # no anchor, or the text ends on it: no answer token
                targets.append(None)
                continue
            sequences.append(list(prompt) + ids[: position + 1])
            targets.append(ids[position + 1])
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id or 0
        return answer_fingerprints(
            self.model,
            sequences,
            targets,
            pad_token_id=int(pad),
            batch_size=self.fingerprint_batch_size,
            selection=self.fingerprint_layers,
        )

    def _prompt_ids(self, prompts: Sequence[Any]) -> list[list[int]]:
        """Tokenise prompts exactly as ``GRPOTrainer`` does before generating."""
        if not prompts:
            return []
        if isinstance(prompts[0], str):
            return [list(ids) for ids in self.tokenizer(text=list(prompts))["input_ids"]]
        encoded = self.tokenizer.apply_chat_template(
            conversation=list(prompts),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **self.chat_template_kwargs,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    @staticmethod
    def _log(kwargs: dict[str, Any], step: MEDSStep) -> None:
        result = step.result
        wrong = ~step.correct
        has_features = ~np.isnan(step.features).all(axis=1) if step.features.size else wrong & False
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            count = max(1, int(wrong.sum()))
            log_metric("meds/penalty_mean_wrong", float(result.penalties[wrong].sum()) / count)
            log_metric("meds/penalised_fraction", float((result.penalties > 0).mean()))
            log_metric("meds/fingerprint_fraction", float(has_features.mean()))
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra("meds_penalty", [float(p) for p in result.penalties[step.local]])
            log_extra("meds_cluster_size", [int(n) for n in result.cluster_sizes[step.local]])
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "MEDS step: %d completions, %d wrong, mean penalty %.4f",
                len(step.problem_ids),
                int(wrong.sum()),
                float(result.penalties.mean()) if len(result) else math.nan,
            )


# --------------------------------------------------------------------------------------------
# Checkpoints: the memory travels with the trainer's checkpoints.
# --------------------------------------------------------------------------------------------

MEMORY_FILE = "meds_memory.npz"
"""The MEDS memory's file in each checkpoint folder (written by :class:`MEDSCheckpointCallback`)."""


class MEDSCheckpointCallback(TrainerCallback):
    """Saves the MEDS memory with each checkpoint of the trainer and restores it on resume.

    :meth:`MEDSRewardFunction.bind` adds one to the trainer; add it yourself
    (``trainer.add_callback(MEDSCheckpointCallback(meds))``) when the model and tokenizer go to
    the reward function's constructor instead of :meth:`~MEDSRewardFunction.bind`.

    * **Saving.** Once the trainer has written ``output_dir/checkpoint-<step>``, the processes
      that write checkpoints (``args.should_save``: the main process, or each node's with
      ``save_on_each_node``) write the memory into it as :data:`MEMORY_FILE`, atomically.
    * **Resuming.** ``trainer.train(resume_from_checkpoint=...)`` restores the trainer's step.
      When training begins at step N > 0, every process loads
      ``output_dir/checkpoint-N/meds_memory.npz`` (with its :class:`~meds_gym.meds.MEDSConfig`;
      a configuration that differs from the reward function's is replaced, with a warning)
      before the first reward call. All processes read the same file, so they hold the same
      memory, as the reward function requires. A checkpoint without the file raises
      ``FileNotFoundError``: a run never resumes silently with an empty memory.

    Resume from a checkpoint of the trainer's own ``output_dir``: that is where the memory is
    read, whatever ``resume_from_checkpoint`` names.

    Args:
        reward_function: The reward function whose memory is saved and restored.

    Raises:
        InvalidArgumentError: If ``reward_function`` is not a :class:`MEDSRewardFunction`.
    """

    def __init__(self, reward_function: MEDSRewardFunction) -> None:
        if not isinstance(reward_function, MEDSRewardFunction):
            raise InvalidArgumentError("reward_function", "a MEDSRewardFunction", reward_function)
        self.reward_function = reward_function

    @staticmethod
    def memory_path(args: TrainingArguments, state: TrainerState) -> str:
        """The memory file in the checkpoint folder of ``state.global_step``."""
        folder = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        return os.path.join(str(args.output_dir), folder, MEMORY_FILE)

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Write the memory into the checkpoint just saved (checkpoint-writing processes only)."""
        if args.should_save:
            self.reward_function.shaper.save(self.memory_path(args, state))

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """On a resumed run, load the checkpoint's memory on this process.

        Raises:
            FileNotFoundError: If the checkpoint of the resumed step has no memory file.
        """
        if state.global_step == 0:
            return  # a fresh run keeps the memory the reward function was given
        path = self.memory_path(args, state)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Resuming at step {state.global_step}, but process {process_rank()} finds no "
                f"MEDS memory at {path!r}. MEDSCheckpointCallback (added by "
                "MEDSRewardFunction.bind) writes it into each checkpoint of output_dir; resume "
                "from a checkpoint of this output_dir saved with it, on storage every process "
                "reads (or with save_on_each_node=True)."
            )
        before = self.reward_function.config.to_dict()
        self.reward_function.load(path)
        after = self.reward_function.config.to_dict()
        changed = [
            f"{name} {before[name]!r} -> {value!r}"
            for name, value in after.items()
            if before[name] != value
        ]
        if changed:
            logger.warning(
                "resuming with the MEDS configuration saved in %s: %s", path, ", ".join(changed)
            )


__all__ = [
    "MEMORY_FILE",
    "MEDSCheckpointCallback",
    "MEDSRewardFunction",
    "MEDSStep",
    "answer_fingerprints",
    "anchored_correctness",
    "completion_text",
    "gather_across_processes",
]
