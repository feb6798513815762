"""The agent's offline default model: a character tokenizer and a small Qwen2 model, warmed up.

Nothing is downloaded. The tokenizer is built in code over a fixed character set (printable ASCII
and newline) with pad/bos/eos and role tokens and a plain chat template. The model is a small
Qwen2-architecture ``AutoModelForCausalLM`` built from a config. The warm-up is supervised training
on worked solutions of a toy task, drawn from a *mixture* of procedures (docs/design.md section 6):
on each problem a share of the solutions is correct and the rest follow buggy procedures, one of
which dominates, so that RL starts from a policy with recurrent, structured error modes and a pass@1
between the extremes. The result is cached on disk under a directory keyed by what determines the
weights (architecture, optimisation, seed, a digest of the warm-up texts and of the tokenizer, and
the torch / transformers versions), so every run that needs the same model reuses one entry,
whatever its RL arguments; it is reproducible from the seed. The warm-up shows a progress bar.

Run ``python -m agents.tiny_model --help`` to build it from the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meds_gym.errors import InvalidArgumentError

from .cli import above, at_least, between, check_numbers, validator

logger = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHARSET = tuple(chr(c) for c in range(0x20, 0x7F)) + ("\n",)
"""Characters with their own token; anything else becomes ``<|unk|>``."""
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""``<|role|>content`` + newline per message, then ``<|assistant|>`` to prompt a reply."""
CACHE_FORMAT = 2
"""Bumped when the warm-up procedure changes in a way the key does not capture (the texts, the
tokenizer and the library versions are in the key already)."""
WEIGHT_FIELDS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "max_positions",
    "steps",
    "batch_size",
    "learning_rate",
    "seed",
)
"""Fields that shape the weights directly; the task and mixture fields act through the texts."""


def build_char_tokenizer() -> Any:
    """A character-level ``PreTrainedTokenizerFast`` with pad/bos/eos, role tokens, chat template.

    Every character of :data:`CHARSET` is one token, so offsets map one-to-one onto characters and
    decoding then re-encoding a response gives back the same ids.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK, *ROLE_TOKENS]
    vocab = {token: index for index, token in enumerate([*specials, *CHARSET])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join characters without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"  # generation pads on the left
    return tokenizer


@dataclass(frozen=True)
class TinyModelConfig:
    """Architecture and warm-up of the tiny model; its hash names the cache directory."""

    task: str = "arithmetic"
    """Toy task family the warm-up trains on (a key of ``meds_gym.tasks.TOY_TASKS``)."""
    num_problems: int = 32
    """Problems of the task the warm-up covers (problem indices 0..num_problems-1)."""
    difficulty: int = 1
    """Difficulty of the task."""
    task_seed: int = 0
    """Seed of the task's problem set."""
    exclude_seed: int | None = None
    """Never warm up on a question of the task at this seed: its first ``exclude_problems``
    problems of the train split and of the test split (the RL and evaluation problems) are
    skipped, and more problems are drawn in their place. None: no exclusion."""
    exclude_problems: int = 0
    """How many problems per split of ``exclude_seed`` are excluded."""
    fresh_problems: int = 0
    """How :meth:`agents.run_setup.EnvSpec.tiny_config` fills the task fields for a run's env.
    0: the warm-up covers the run's own problems (its count and task seed), so the model can
    memorise their answers. N > 0: it covers N freshly generated problems (task seed: the run's
    + 1) and skips every question of the run's training and test splits, so the model has to
    learn the procedures, and a held-out evaluation of RL measures what RL taught."""
    correct_share_low: float = 0.2
    """Each problem's share of correct warm-up solutions is drawn uniformly in [low, high]."""
    correct_share_high: float = 0.6
    """Upper end of the correct share."""
    dominant_share: float = 0.75
    """Share of a problem's wrong solutions that follow its dominant buggy procedure."""
    solutions_per_problem: int = 20
    """Warm-up texts drawn per problem from its mixture."""
    hidden_size: int = 128
    """Model width."""
    num_layers: int = 6
    """Decoder layers (the MEDS fingerprint keeps the last half)."""
    num_heads: int = 4
    """Attention heads."""
    max_positions: int = 384
    """Maximum sequence length (prompt + response) in tokens."""
    steps: int = 300
    """Warm-up optimiser steps."""
    batch_size: int = 32
    """Warm-up batch size."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate (cosine decay, short linear warm-up)."""
    seed: int = 0
    """Seed of the weights, the mixture draw and the batch order."""
    prompt_format: str = "chat"
    """The prompts of the warm-up texts (``agents.policy.PROMPT_FORMATS``): ``chat`` (system
    instruction and question) or ``compact`` (the question alone). Train and evaluate the model in
    the format it was warmed up on; the texts, hence the cache entry, depend on it."""

    @validator
    def __post_init__(self) -> None:
        check_numbers(
            self,
            {"correct_share_low": between(0, 1), "correct_share_high": between(0, 1),
             "dominant_share": between(0, 1), "num_problems": at_least(1),
             "difficulty": at_least(1), "solutions_per_problem": at_least(1),
             "exclude_problems": at_least(0), "fresh_problems": at_least(0),
             "hidden_size": at_least(1), "num_layers": at_least(1), "num_heads": at_least(1),
             "max_positions": at_least(8), "steps": at_least(1), "batch_size": at_least(1),
             "learning_rate": above(0)},
            "tiny.",
        )  # fmt: skip
        if not 0.0 <= self.correct_share_low <= self.correct_share_high <= 1.0:
            raise InvalidArgumentError(
                "correct_share_low/high",
                "0 <= correct_share_low <= correct_share_high <= 1",
                (self.correct_share_low, self.correct_share_high),
            )
        if self.prompt_format not in ("chat", "compact"):
            raise InvalidArgumentError(
                "prompt_format", "one of ('chat', 'compact')", self.prompt_format
            )
        if self.hidden_size % self.num_heads:
            raise InvalidArgumentError(
                "hidden_size", f"a multiple of num_heads={self.num_heads}", self.hidden_size
            )

    @property
    def cache_key(self) -> str:
        """The cache directory's name: a digest of what determines the weights.

        That is the architecture and optimisation fields (:data:`WEIGHT_FIELDS`), the warm-up
        texts themselves (so the task, problem set and mixture fields count only through what
        they produce, and a change to the toy tasks' generation gives a new entry on its own),
        the tokenizer, the cache format and the torch / transformers versions (``major.minor``).
        """
        tokenizer = build_char_tokenizer()
        prompts, responses = warmup_texts(self, tokenizer)
        texts = hashlib.sha256()
        for prompt, response in zip(prompts, responses, strict=True):
            texts.update(f"{len(prompt)}:{prompt}{len(response)}:{response}".encode())
        payload = {
            "format": CACHE_FORMAT,
            "weights": {name: getattr(self, name) for name in WEIGHT_FIELDS},
            "texts": texts.hexdigest(),
            "vocab": tokenizer.get_vocab(),
            "chat_template": tokenizer.chat_template,
            "versions": library_versions(),
        }
        encoded = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """``major.minor`` of torch and transformers: another release may train other weights."""
    import transformers

    return {
        name: ".".join(version.split("+")[0].split(".")[:2])
        for name, version in (
            ("torch", torch.__version__),
            ("transformers", transformers.__version__),
        )
    }


def build_model(config: TinyModelConfig, tokenizer: Any) -> Any:
    """A randomly initialised Qwen2-architecture causal LM for ``tokenizer`` (seeded)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.hidden_size * 3,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(config.seed)
    return AutoModelForCausalLM.from_config(model_config)


def make_task(config: TinyModelConfig, num_problems: int | None = None) -> Any:
    """The toy task the warm-up and the default RL run use (``num_problems`` overrides)."""
    from meds_gym.tasks.toy import TOY_TASKS

    if config.task not in TOY_TASKS:
        raise InvalidArgumentError("task", f"one of {sorted(TOY_TASKS)}", config.task)
    return TOY_TASKS[config.task](
        num_problems=config.num_problems if num_problems is None else num_problems,
        difficulty=config.difficulty,
        seed=config.task_seed,
    )


def excluded_questions(config: TinyModelConfig) -> set[str]:
    """The questions the warm-up must not see: ``exclude_seed``'s first problems of each split."""
    from meds_gym.tasks.toy import TOY_TASKS

    if config.exclude_seed is None or config.exclude_problems == 0:
        return set()
    out: set[str] = set()
    for split in ("train", "test"):
        task = TOY_TASKS[config.task](
            num_problems=config.exclude_problems,
            difficulty=config.difficulty,
            seed=config.exclude_seed,
            split=split,
        )
        out.update(problem.question for problem in task)
    return out


def warmup_problems(config: TinyModelConfig) -> list[Any]:
    """The ``num_problems`` problems of the warm-up, none of them an excluded question."""
    excluded = excluded_questions(config)
    if not excluded:
        return list(make_task(config))
    pool = make_task(config, num_problems=2 * (config.num_problems + len(excluded)))
    chosen = [problem for problem in pool if problem.question not in excluded]
    if len(chosen) < config.num_problems:
        raise InvalidArgumentError(
            "num_problems",
            f"at most {len(chosen)} problems of this task that avoid the excluded questions",
            config.num_problems,
        )
    return chosen[: config.num_problems]


def mixture_weights(
    error_modes: list[str], rng: np.random.Generator, config: TinyModelConfig
) -> dict[str | None, float]:
    """One problem's mixture over procedures: None (correct) and its error modes.

    The correct share is drawn in [correct_share_low, correct_share_high]; one error mode, drawn at
    random, gets ``dominant_share`` of the rest and the other modes split what remains.
    """
    correct = float(rng.uniform(config.correct_share_low, config.correct_share_high))
    if not error_modes:
        return {None: 1.0}
    weights: dict[str | None, float] = {None: correct}
    dominant = error_modes[int(rng.integers(len(error_modes)))]
    others = [mode for mode in error_modes if mode != dominant]
    wrong = 1.0 - correct
    weights[dominant] = wrong * (config.dominant_share if others else 1.0)
    for mode in others:
        weights[mode] = wrong * (1.0 - config.dominant_share) / len(others)
    return weights


def warmup_texts(config: TinyModelConfig, tokenizer: Any) -> tuple[list[str], list[str]]:
    """Prompts (in ``config.prompt_format``) and responses of the warm-up set, from the mixture.

    Returns:
        ``(prompts, responses)`` of equal length ``num_problems * solutions_per_problem``.
    """
    from meds_gym.envs.reasoning_env import SYSTEM_INSTRUCTION

    task = make_task(config)
    rng = np.random.default_rng([config.seed, 1])
    prompts, responses = [], []
    for problem in warmup_problems(config):
        weights = mixture_weights(sorted(problem.error_modes), rng, config)
        modes = list(weights)
        probs = np.array([weights[m] for m in modes])
        messages = [
            {"role": "system", "content": SYSTEM_INSTRUCTION},
            {"role": "user", "content": problem.question},
        ]
        if config.prompt_format == "compact":  # what agents.policy.prompt_text gives
            messages = messages[1:]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for draw in rng.choice(
            len(modes), size=config.solutions_per_problem, p=probs / probs.sum()
        ):
            prompts.append(prompt)
            responses.append(task.render_solution(problem, error_mode=modes[int(draw)]))
    return prompts, responses


def _encode_batch(
    tokenizer: Any, prompts: list[str], responses: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and loss mask (1 on response tokens and the final eos)."""
    rows, loss_rows = [], []
    for prompt, response in zip(prompts, responses, strict=True):
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        r = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        rows.append(p + r)
        loss_rows.append([0] * len(p) + [1] * len(r))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (row, lrow) in enumerate(zip(rows, loss_rows, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        loss_mask[i, : len(row)] = torch.tensor(lrow, dtype=torch.float32)
    return ids, attn, loss_mask


def warm_up(
    model: Any, tokenizer: Any, config: TinyModelConfig, progress: bool = True
) -> list[float]:
    """Supervised training on the mixture's responses (loss on response tokens only).

    Args:
        model: The causal LM to train in place.
        tokenizer: Its tokenizer.
        config: Data and optimisation of the warm-up.
        progress: Show a progress bar (steps, loss, time left) on stderr.

    Returns:
        The loss of every step.
    """
    prompts, responses = warmup_texts(config, tokenizer)
    ids, attn, loss_mask = _encode_batch(tokenizer, prompts, responses)
    if ids.shape[1] > config.max_positions:
        raise InvalidArgumentError(
            "max_positions",
            f"at least the longest warm-up sequence ({ids.shape[1]})",
            config.max_positions,
        )
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup_steps = max(1, config.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, config.steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    from tqdm import tqdm

    bar = tqdm(range(config.steps), desc="tiny-model warm-up", unit="step", disable=not progress)
    for step in bar:
        index = torch.randint(0, ids.shape[0], (config.batch_size,), generator=generator)
        width = int(attn[index].sum(dim=1).max())  # trim the padding this batch does not need
        batch_ids, batch_attn = ids[index, :width], attn[index, :width]
        logits = model(input_ids=batch_ids, attention_mask=batch_attn).logits[:, :-1]  # (B,T-1,V)
        targets = batch_ids[:, 1:]  # (B, T-1)
        mask = loss_mask[index, 1:width]  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view_as(targets)
        loss = (nll * mask).sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    return losses


SMALL_TINY = TinyModelConfig(num_layers=4, steps=200, learning_rate=3e-3)
"""The small tiny model of the quick commands (``examples/trl_meds.py``, the README's TRL
example): 4 layers (the fingerprint keeps 2) and 200 warm-up steps at a higher learning rate,
about 40% of the default model's warm-up cost. ``agents.compare`` and the reproduction start
from it and change the depth, the warm-up and the prompt format."""


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Load a tokenizer for generation: left padding, and the right class for the tiny model.

    ``AutoTokenizer`` picks the tokenizer class from the model type (Qwen2 here), which would
    replace the character tokenizer by a byte-level one; the tiny model's directory (marked by
    ``tiny_model.json``) is therefore loaded with the generic fast-tokenizer class.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(path) / "tiny_model.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    return tokenizer


def default_cache_dir() -> Path:
    """``$MEDS_GYM_CACHE`` or ``~/.cache/meds_gym``, plus ``tiny_model``."""
    root = os.environ.get("MEDS_GYM_CACHE") or Path.home() / ".cache" / "meds_gym"
    return Path(root) / "tiny_model"


def tiny_model_path(
    config: TinyModelConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Directory of the warmed-up tiny model, building and caching it on first use.

    The directory holds ``save_pretrained`` output of the model and tokenizer, loadable with
    ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``, plus
    ``tiny_model.json`` (the config and the warm-up losses). It is written to a temporary sibling
    and renamed into place, so an interrupted build never leaves a half-written cache entry.

    Args:
        config: Architecture and warm-up.
        cache_dir: Parent directory of the cache entries (default :func:`default_cache_dir`).
        progress: Show a progress bar during the warm-up.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = config.cache_key
    target = root / key
    if (target / "tiny_model.json").is_file():
        logger.info("Tiny model: reusing the cache entry %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info(
        "Building the tiny model %s (%d warm-up steps; cached for later runs)", target, config.steps
    )
    tokenizer = build_char_tokenizer()
    model = build_model(config, tokenizer)
    losses = warm_up(model, tokenizer, config, progress=progress)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        meta = {"config": dataclasses.asdict(config), "warmup_losses": losses}
        (staging / "tiny_model.json").write_text(json.dumps(meta))
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first; its entry is equivalent
            if not (target / "tiny_model.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_cli(config: TinyModelConfig, cache_dir: str | None = None) -> None:
    """Build (or find in the cache) the tiny model and print its directory.

    Args:
        config: Architecture and warm-up.
        cache_dir: Parent directory of the cache entries (default ``$MEDS_GYM_CACHE`` or
            ``~/.cache/meds_gym``).
    """
    print(tiny_model_path(config, cache_dir))


if __name__ == "__main__":
    import tyro

    logging.basicConfig(level=logging.INFO)
    tyro.cli(_build_cli)
