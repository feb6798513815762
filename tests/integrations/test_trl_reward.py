"""MEDSRewardFunction and its fingerprint, driven directly (no trainer), in one process."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("accelerate")

import meds_gym.integrations.trl as trl_module  # noqa: E402
from meds_gym.errors import InvalidArgumentError, MissingExtraError  # noqa: E402
from meds_gym.integrations.hf import anchor_token, selected_layers  # noqa: E402
from meds_gym.integrations.trl import (  # noqa: E402
    MEMORY_FILE,
    MEDSCheckpointCallback,
    MEDSRewardFunction,
    answer_fingerprints,
    completion_text,
)
from meds_gym.meds import MEDSConfig, MEDSShaper  # noqa: E402
from meds_gym.verifiers import parse_anchor  # noqa: E402
from tests.partitioned import partitioned_lm_head  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    sys.path.insert(0, str(REPO))
    from agents.tiny_model import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return AutoModelForCausalLM.from_config(config).eval()


class PieceTokenizer:
    """A tokenizer over fixed string pieces, where ``{`` is merged with neighbouring text."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.pieces[i] for i in ids)


def test_boxed_brace_token_finds_a_merged_brace() -> None:
    pieces = ["So ", "\\box", "ed{1", "9}", " or ", "\\boxed", "{2", "0}", "<eos>"]
    tok = PieceTokenizer(pieces)
    assert anchor_token(tok, [0, 1, 2, 3]) == 2
    assert anchor_token(tok, [0, 1, 2, 3, 4, 5, 6, 7]) == 6  # the last \boxed{ counts
    assert anchor_token(tok, [0, 3, 4]) is None


def test_boxed_brace_token_is_the_character_offset_for_a_character_tokenizer(
    tokenizer: Any,
) -> None:
    text = "1+1 is \\boxed{2}, not \\boxed{3}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert anchor_token(tokenizer, ids) == text.rfind("\\boxed{") + len("\\boxed")


class SpacedTokenizer(PieceTokenizer):
    """Decodes a sequence with spaces between tokens: the pieces do not lay end to end."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(self.pieces[i] for i in ids)


def test_anchor_token_falls_back_to_bisection_when_pieces_do_not_concatenate() -> None:
    tok = SpacedTokenizer(["So", "<answer>", "19", "</answer>"])
    anchor = parse_anchor("answer_tag")
    assert anchor_token(tok, [0, 1, 2, 3], anchor=anchor) == 1  # "So <answer> 19 </answer>"
    assert anchor_token(tok, [0, 2], anchor=anchor) is None


def test_anchor_token_at_answer_tags_and_regex() -> None:
    tok = PieceTokenizer(["x=", "<ans", "wer>4", "2</answer>", "Final: ", "7"])
    assert anchor_token(tok, [0, 1, 2, 3], anchor=parse_anchor("answer_tag")) == 2
    regex = parse_anchor(r"Final: (\d+)")
    assert anchor_token(tok, [0, 4, 5], anchor=regex) == 1  # the space before the group


def test_last_half_layers() -> None:
    assert selected_layers(28) == list(range(15, 29))
    assert selected_layers(4) == [3, 4]
    assert selected_layers(1) == [1]
    with pytest.raises(InvalidArgumentError, match="num_layers"):
        selected_layers(0)


def _oracle_fingerprint(model: Any, sequence: list[int], target: int) -> np.ndarray:
    """lm_head(hidden_states[n])[P, target] from a full pass with output_hidden_states."""
    values = []
    with torch.no_grad():
        out = model(torch.tensor([sequence]), output_hidden_states=True)
        for n in selected_layers(model.config.num_hidden_layers):
            if n == model.config.num_hidden_layers:  # HF applies the final norm: output logits
                values.append(float(out.logits[0, -1, target]))
            else:
                values.append(float(model.lm_head(out.hidden_states[n][0, -1])[target]))
    return np.array(values, dtype=np.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_answer_fingerprints_match_the_full_hidden_states_pass(model: Any, batch_size: int) -> None:
    rng = np.random.default_rng(0)
    sequences: list[list[int] | None] = [
        rng.integers(10, 90, size=int(n)).tolist() for n in (7, 12, 3, 20)
    ]
    sequences.insert(2, None)  # a completion without a fingerprint
    targets: list[int | None] = [11, 22, None, 33, 44]
    got = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=batch_size)
    assert got.shape == (5, 2) and got.dtype == np.float32
    assert np.isnan(got[2]).all()
    for i in (0, 1, 3, 4):
        np.testing.assert_allclose(
            got[i], _oracle_fingerprint(model, sequences[i], targets[i]), rtol=1e-5, atol=1e-5
        )


def test_answer_fingerprints_with_batch_size_one_do_not_depend_on_the_neighbours(
    model: Any,
) -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(10, 90, size=int(n)).tolist() for n in (9, 4, 15, 6)]
    targets = [12, 13, 14, 15]
    whole = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=1)
    halves = np.concatenate(
        [
            answer_fingerprints(model, sequences[:2], targets[:2], pad_token_id=0, batch_size=1),
            answer_fingerprints(model, sequences[2:], targets[2:], pad_token_id=0, batch_size=1),
        ]
    )
    np.testing.assert_array_equal(whole, halves)


def test_answer_fingerprints_restore_the_training_mode(model: Any) -> None:
    model.train()
    answer_fingerprints(model, [[5, 6, 7]], [8], pad_token_id=0)
    assert model.training
    model.eval()


def test_answer_fingerprints_reject_bad_arguments(model: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="targets"):
        answer_fingerprints(model, [[1, 2]], [], pad_token_id=0)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        answer_fingerprints(model, [[1, 2]], [3], pad_token_id=0, batch_size=0)
    with pytest.raises(InvalidArgumentError, match="decoder layers"):
        answer_fingerprints(torch.nn.Linear(2, 2), [[1, 2]], [3], pad_token_id=0)


def _random_rows(seed: int) -> tuple[list[list[int] | None], list[int | None]]:
    rng = np.random.default_rng(seed)
    sequences: list[list[int] | None] = [
        rng.integers(10, 90, size=int(n)).tolist() for n in (7, 12, 3, 20)
    ]
    sequences.insert(2, None)  # a completion without a fingerprint
    return sequences, [11, 22, None, 33, 44]


def _without_logits_to_keep(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``model`` an architecture whose forward does not take ``logits_to_keep``."""
    forward = model.forward

    def strict(*args: Any, **kwargs: Any) -> Any:
        if "logits_to_keep" in kwargs:
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", strict)


@pytest.mark.parametrize("keeps_last_logits", [True, False])
def test_answer_fingerprints_under_a_zero3_partitioned_lm_head(
    model: Any, keeps_last_logits: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ZeRO-3 holds the head's weight only inside the head's forward: the fingerprint must be
    # computed there, and give what the plain model gives.
    model = copy.deepcopy(model)
    if not keeps_last_logits:
        _without_logits_to_keep(model, monkeypatch)
    sequences, targets = _random_rows(2)
    plain = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=2)
    with partitioned_lm_head(model) as weight:
        sharded = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=2)
        assert weight.numel() == 0  # the emulation: nothing outside the head's forward
    np.testing.assert_allclose(sharded, plain, rtol=1e-6, atol=1e-6)
    assert np.isnan(sharded[2]).all() and not np.isnan(sharded[[0, 1, 3, 4]]).any()


@pytest.mark.parametrize(("rows", "theirs", "expected"), [(5, 4, 4), (5, 2, 3), (0, 2, 2)])
def test_every_process_runs_as_many_fingerprint_forwards_as_the_busiest(
    model: Any, monkeypatch: pytest.MonkeyPatch, rows: int, theirs: int, expected: int
) -> None:
    # Two processes: the other one has `theirs` chunks of 2 to run. ZeRO-3's gathers are
    # collectives, so both must run max(ours, theirs) forwards; ours pads with dummies.
    sequences, targets = _random_rows(3)
    sequences, targets = sequences[:rows], targets[:rows]
    alone = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=2)
    monkeypatch.setattr(trl_module, "gather_across_processes", lambda value: [value, theirs])
    forwards = []
    handle = model.model.layers[0].register_forward_hook(lambda *_: forwards.append(1))
    try:
        got = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=2)
    finally:
        handle.remove()
    assert len(forwards) == expected
    assert got.shape == (rows, 2)
    np.testing.assert_array_equal(got, alone)


def test_answer_fingerprints_of_a_lora_model_include_its_adapters(model: Any) -> None:
    # A LoRA run hands the reward function a PeftModel: the layers are found through it and the
    # adapters count, as in the merged model.
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    torch.manual_seed(1)
    lora = peft.get_peft_model(copy.deepcopy(model), config).eval()
    sequences, targets = _random_rows(4)
    got = answer_fingerprints(lora, sequences, targets, pad_token_id=0, batch_size=2)
    merged = copy.deepcopy(lora).merge_and_unload()
    want = answer_fingerprints(merged, sequences, targets, pad_token_id=0, batch_size=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    base = answer_fingerprints(model, sequences, targets, pad_token_id=0, batch_size=2)
    rows = [0, 1, 3, 4]
    assert np.abs(got[rows] - base[rows]).max() > 1e-2  # the adapters change the fingerprint


def test_answer_fingerprints_are_float32_dot_products_of_a_bf16_model(model: Any) -> None:
    # Every column, the last one included, is dot(hidden at P, head row) in float32; the last was
    # the model's bf16 logit before.
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    sequence, target = [5, 17, 29, 41, 53, 65, 77], 88
    got = answer_fingerprints(bf16, [sequence], [target], pad_token_id=0, batch_size=1)[0]
    with torch.no_grad():
        hidden = bf16(torch.tensor([sequence]), output_hidden_states=True).hidden_states
        row = bf16.lm_head.weight[target].float()
        want = [float((hidden[n][0, -1].float() * row).sum()) for n in selected_layers(4)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _fixed_features(table: dict[str, list[float]]) -> Any:
    def features_fn(prompts: Any, texts: Any, ids: Any) -> np.ndarray:
        return np.array([table[t] for t in texts], dtype=np.float32)

    return features_fn


WRONG_A, WRONG_B, RIGHT = "so \\boxed{20}", "so \\boxed{54}", "so \\boxed{19}"
TABLE = {WRONG_A: [1.0, 0.0, 0.1], WRONG_B: [0.0, 1.0, 0.0], RIGHT: [0.5, 0.5, 0.5]}


def _call(meds: MEDSRewardFunction, texts: list[str], pid: str = "p0") -> list[float]:
    n = len(texts)
    return meds(prompts=["Compute 7 + 3 * 6 - 6."] * n, completions=texts,
                answer=["19"] * n, problem_id=[pid] * n)  # fmt: skip


def test_reward_function_matches_the_shaper_oracle() -> None:
    meds = MEDSRewardFunction(MEDSConfig(), features_fn=_fixed_features(TABLE))
    oracle = MEDSShaper(MEDSConfig())
    group = [RIGHT, WRONG_A, WRONG_A, WRONG_A, WRONG_B]
    penalised = 0
    for step in range(4):
        rewards = _call(meds, group)
        correct = np.array([t == RIGHT for t in group])
        features = np.array([TABLE[t] for t in group])
        expected = oracle.shape(["p0"] * 5, correct, np.where(correct, 1.0, -1.0), features)
        assert rewards == expected.shaped_rewards.tolist()
        assert rewards[0] == 1.0  # a right answer is never penalised
        if step == 0:
            assert rewards == [1.0, -1.0, -1.0, -1.0, -1.0]  # first visit: empty memory
        penalised += int((expected.penalties > 0).sum())
    assert penalised > 0
    # The dominant wrong mode (three per step) is pushed down harder than the rare one.
    assert rewards[1] < rewards[4] <= -1.0


def test_uniform_groups_are_skipped_by_default_as_the_reference_does() -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), record_history=True)
    oracle = MEDSShaper(MEDSConfig())
    texts = [WRONG_A, WRONG_A, WRONG_B, WRONG_A, RIGHT, WRONG_A]
    pids = ["all-wrong"] * 3 + ["mixed"] * 3
    for _ in range(3):
        rewards = meds(prompts=["q"] * 6, completions=texts, answer=["19"] * 6, problem_id=pids)
        correct = np.array([t == RIGHT for t in texts])
        kept = np.array([False] * 3 + [True] * 3)
        want = oracle.shape(pids, correct, np.where(correct, 1.0, -1.0),
                            np.array([TABLE[t] for t in texts]), kept=kept)  # fmt: skip
        assert rewards == want.shaped_rewards.tolist()
        assert rewards[:3] == [-1.0, -1.0, -1.0]  # the all-wrong group keeps its raw rewards
        assert meds.last_step is not None and meds.last_step.kept.tolist() == kept.tolist()
    assert ("all-wrong", False) not in meds.shaper.memory  # never stored
    assert len(meds.shaper.memory.bucket("mixed", False)) == 6
    every = MEDSRewardFunction(features_fn=_fixed_features(TABLE), skip_uniform_groups=False)
    for _ in range(2):
        every(prompts=["q"] * 6, completions=texts, answer=["19"] * 6, problem_id=pids)
    assert len(every.shaper.memory.bucket("all-wrong", False)) == 6


# One problem drawn twice in one global batch: group 0 all wrong, group 1 mixed (TRL's layout:
# consecutive blocks of num_generations completions per prompt).
TWO_GROUPS = [WRONG_A, WRONG_A, WRONG_B, WRONG_A, RIGHT, WRONG_A]


def test_a_problem_sampled_in_two_groups_is_judged_per_group() -> None:
    meds = MEDSRewardFunction(
        features_fn=_fixed_features(TABLE), record_history=True, num_generations=3
    )
    oracle = MEDSShaper(MEDSConfig())
    correct = np.array([t == RIGHT for t in TWO_GROUPS])
    kept = np.array([False] * 3 + [True] * 3)
    features = np.array([TABLE[t] for t in TWO_GROUPS])
    penalised = 0
    for _ in range(3):
        rewards = _call(meds, TWO_GROUPS)
        want = oracle.shape(["p0"] * 6, correct, np.where(correct, 1.0, -1.0), features, kept=kept)
        assert rewards == want.shaped_rewards.tolist()
        assert rewards[:3] == [-1.0, -1.0, -1.0]  # the all-wrong group keeps its raw rewards
        assert meds.last_step is not None and meds.last_step.kept.tolist() == kept.tolist()
        penalised += int((want.penalties > 0).sum())
    assert penalised > 0
    assert len(meds.shaper.memory.bucket("p0", False)) == 2 * 3  # the mixed group's wrong ones


def test_without_num_generations_groups_are_problem_ids_as_before() -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE))
    assert meds.num_generations is None and meds.num_generations_eval is None
    _call(meds, TWO_GROUPS)
    assert meds.last_step is not None and meds.last_step.kept.all()  # one mixed group: p0
    assert len(meds.shaper.memory.bucket("p0", False)) == 5


class _FakeTrainer:
    def __init__(self, model: Any, tokenizer: Any, generations: int, eval_generations: int):
        self.model = model
        self.processing_class = tokenizer
        self.num_generations = generations
        self.num_generations_eval = eval_generations


def test_bind_takes_the_group_size_from_the_trainer(model: Any, tokenizer: Any) -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), record_history=True)
    assert meds.bind(_FakeTrainer(model, tokenizer, 3, 2)) is meds
    assert (meds.num_generations, meds.num_generations_eval) == (3, 2)
    try:
        model.train()  # a training step: blocks of num_generations=3
        _call(meds, TWO_GROUPS)
        assert meds.last_step is not None
        assert meds.last_step.kept.tolist() == [False] * 3 + [True] * 3
        model.eval()  # TRL's evaluation loop: blocks of num_generations_eval=2
        _call(meds, [WRONG_A, WRONG_B, RIGHT, WRONG_A])
        assert meds.last_step.kept.tolist() == [False, False, True, True]
    finally:
        model.eval()
    # A count given to the constructor must match the trainer's; a rebind takes the new trainer's.
    given = MEDSRewardFunction(features_fn=_fixed_features(TABLE), num_generations=4)
    with pytest.raises(InvalidArgumentError, match=r"`num_generations` must be the trainer's"):
        given.bind(_FakeTrainer(model, tokenizer, 3, 3))
    assert given.model is None  # nothing was bound
    given.bind(_FakeTrainer(model, tokenizer, 4, 2))
    assert (given.num_generations, given.num_generations_eval) == (4, 2)
    meds.bind(_FakeTrainer(model, tokenizer, 6, 6))
    assert (meds.num_generations, meds.num_generations_eval) == (6, 6)


def test_group_size_that_does_not_fit_the_batch_is_rejected() -> None:
    for bad in (0, True, 2.5):
        with pytest.raises(InvalidArgumentError, match="`num_generations` must be an int >= 1"):
            MEDSRewardFunction(num_generations=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="`num_generations_eval` must be an int"):
        MEDSRewardFunction(num_generations_eval=0)
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), num_generations=4)
    with pytest.raises(InvalidArgumentError, match="divisor of the global batch of 6"):
        _call(meds, TWO_GROUPS)
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), num_generations=2)
    with pytest.raises(
        InvalidArgumentError, match=r"Completions 2\.\.3 hold problems \['a', 'b'\]"
    ):
        meds(prompts=["q"] * 4, completions=[RIGHT, WRONG_A] * 2, answer=["19"] * 4,
             problem_id=["a", "a", "a", "b"])  # fmt: skip
    assert meds.shaper.stats().rows == 0  # rejected before anything was stored
    # Without the filter the group size is not used.
    off = MEDSRewardFunction(
        features_fn=_fixed_features(TABLE), num_generations=4, skip_uniform_groups=False
    )
    assert _call(off, TWO_GROUPS) == [-1.0, -1.0, -1.0, -1.0, 1.0, -1.0]


def test_conversational_completions_and_dataset_columns() -> None:
    meds = MEDSRewardFunction(
        features_fn=_fixed_features(TABLE), answer_column="gold", problem_id_column="pid"
    )
    completions = [
        [{"role": "assistant", "content": RIGHT}],
        [{"role": "assistant", "content": WRONG_A}],
    ]
    rewards = meds(prompts=[[{"role": "user", "content": "q"}]] * 2, completions=completions,
                   gold=["19", "19"], pid=["a", "a"])  # fmt: skip
    assert rewards == [1.0, -1.0]
    assert (
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]) == "x"
    )


def test_eval_mode_freezes_the_memory(model: Any) -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), model=model)
    model.eval()  # TRL's evaluation loop
    _call(meds, [RIGHT, WRONG_A])
    assert meds.shaper.stats().rows == 0
    assert meds.last_step is not None and not meds.last_step.training
    assert meds.shaper.training  # the switch is restored after the call
    model.train()
    _call(meds, [RIGHT, WRONG_A])
    assert meds.last_step.training
    assert meds.shaper.stats().rows == 2
    model.eval()


def test_reward_function_with_the_policy_fingerprint(model: Any, tokenizer: Any) -> None:
    meds = MEDSRewardFunction(model=model, tokenizer=tokenizer, record_history=True)
    texts = ["3*6=18, 7+18=25. \\boxed{25}", "no box at all", "ends on the brace \\boxed{"]
    ids = [
        tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for t in texts
    ]
    prompt = "Compute 7 + 3 * 6 - 6."
    meds(prompts=[prompt] * 3, completions=texts, completion_ids=ids, answer=["19"] * 3,
         problem_id=["p"] * 3)  # fmt: skip
    features = meds.history[-1].features
    assert not np.isnan(features[0]).any()
    assert np.isnan(features[1]).all() and np.isnan(features[2]).all()
    # Oracle: the full pass over the tokenised prompt + completion up to the brace.
    p = ids[0].index(tokenizer.convert_tokens_to_ids("{"))
    sequence = tokenizer(text=prompt)["input_ids"] + ids[0][: p + 1]
    np.testing.assert_allclose(
        features[0], _oracle_fingerprint(model, sequence, ids[0][p + 1]), rtol=1e-5, atol=1e-5
    )


def test_reward_function_fingerprints_at_the_answer_tag_anchor(model: Any, tokenizer: Any) -> None:
    meds = MEDSRewardFunction(
        model=model, tokenizer=tokenizer, record_history=True, answer_anchor="answer_tag"
    )
    texts = ["3*6=18, 7+18=25. <answer>19</answer>", "boxed only \\boxed{19}", "<answer>25"]
    ids = [
        tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for t in texts
    ]
    prompt = "Compute 7 + 3 * 6 - 6."
    rewards = meds(prompts=[prompt] * 3, completions=texts, completion_ids=ids,
                   answer=["19"] * 3, problem_id=["p"] * 3)  # fmt: skip
    assert rewards[0] == 1.0 and rewards[1] == -1.0  # graded at the same anchor
    features = meds.history[-1].features
    assert not np.isnan(features[0]).any() and not np.isnan(features[2]).any()
    assert np.isnan(features[1]).all()  # no <answer> tag: no fingerprint
    p = texts[0].index("<answer>") + len("<answer>") - 1  # one token per character
    sequence = tokenizer(text=prompt)["input_ids"] + ids[0][: p + 1]
    np.testing.assert_allclose(
        features[0], _oracle_fingerprint(model, sequence, ids[0][p + 1]), rtol=1e-5, atol=1e-5
    )


def test_save_writes_the_shared_memory(tmp_path: Path) -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE))
    for _ in range(2):
        _call(meds, [WRONG_A, WRONG_A, WRONG_B])
    meds.save(tmp_path / "memory.npz")
    resumed = MEDSRewardFunction(
        shaper=MEDSShaper.load(tmp_path / "memory.npz"), features_fn=_fixed_features(TABLE)
    )
    assert _call(resumed, [WRONG_A, WRONG_B]) == _call(meds, [WRONG_A, WRONG_B])


def test_checkpoint_callback_saves_the_memory_and_restores_it_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE))
    for _ in range(2):
        _call(meds, [RIGHT, WRONG_A, WRONG_A, WRONG_B])
    (tmp_path / "checkpoint-3").mkdir()  # the trainer writes the folder, then calls on_save
    with monkeypatch.context() as other_rank:  # a process that writes no checkpoint files
        other_rank.setattr(TrainingArguments, "should_save", property(lambda self: False))
        MEDSCheckpointCallback(meds).on_save(args, TrainerState(global_step=3), TrainerControl())
    assert not (tmp_path / "checkpoint-3" / MEMORY_FILE).exists()
    MEDSCheckpointCallback(meds).on_save(args, TrainerState(global_step=3), TrainerControl())
    assert (tmp_path / "checkpoint-3" / MEMORY_FILE).is_file()

    resumed = MEDSRewardFunction(MEDSConfig(beta=0.5), features_fn=_fixed_features(TABLE))
    callback = MEDSCheckpointCallback(resumed)
    callback.on_train_begin(args, TrainerState(global_step=0), TrainerControl())
    assert resumed.shaper.stats().rows == 0  # a fresh run keeps the memory it was given
    callback.on_train_begin(args, TrainerState(global_step=3), TrainerControl())
    assert resumed.shaper.stats().rows == meds.shaper.stats().rows > 0
    assert resumed.config == meds.config  # the checkpoint's configuration, with a warning
    assert "beta 0.5 -> 0.2" in caplog.text
    assert _call(resumed, [WRONG_A, WRONG_B]) == _call(meds, [WRONG_A, WRONG_B])
    missing = tmp_path / "checkpoint-5" / MEMORY_FILE
    with pytest.raises(FileNotFoundError, match=f"no MEDS memory at '{missing}'"):
        callback.on_train_begin(args, TrainerState(global_step=5), TrainerControl())


def test_bind_adds_one_checkpoint_callback(model: Any, tokenizer: Any) -> None:
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    trainer = _FakeTrainer(model, tokenizer, 2, 2)
    handler = CallbackHandler([DefaultFlowCallback()], model, tokenizer, None, None)
    trainer.callback_handler = handler  # type: ignore[attr-defined]
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE))
    meds.bind(trainer).bind(trainer)
    ours = [c for c in handler.callbacks if isinstance(c, MEDSCheckpointCallback)]
    assert [c.reward_function for c in ours] == [meds]
    with pytest.raises(InvalidArgumentError, match="reward_function"):
        MEDSCheckpointCallback(meds.shaper)  # type: ignore[arg-type]


def test_rejected_inputs_name_the_parameter() -> None:
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE))
    with pytest.raises(InvalidArgumentError, match="problem_id.*dataset column"):
        meds(prompts=["q"], completions=[RIGHT], answer=["19"])
    with pytest.raises(InvalidArgumentError, match="answer.*1 values"):
        meds(prompts=["q"], completions=[RIGHT], answer=["19", "1"], problem_id=["p"])
    with pytest.raises(InvalidArgumentError, match="fingerprint_batch_size"):
        MEDSRewardFunction(fingerprint_batch_size=0)
    with pytest.raises(InvalidArgumentError, match="config"):
        MEDSRewardFunction(config={"alpha": 0.1})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="features_fn"):
        MEDSRewardFunction(features_fn=lambda p, t, i: np.ones(len(t)))(
            prompts=["q"], completions=[RIGHT], answer=["19"], problem_id=["p"]
        )
    with pytest.raises(InvalidArgumentError, match="bind"):
        MEDSRewardFunction()(prompts=["q"], completions=[RIGHT], completion_ids=[[1]],
                             answer=["19"], problem_id=["p"])  # fmt: skip
    with pytest.raises(TypeError, match="completions"):
        completion_text(42)


@pytest.mark.parametrize("missing", ["trl", "accelerate"])
def test_missing_extra_names_the_trl_extra(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    monkeypatch.delitem(sys.modules, "meds_gym.integrations.trl")
    with pytest.raises(MissingExtraError, match=r"meds-gym\[trl\]") as info:
        importlib.import_module("meds_gym.integrations.trl")
    assert missing in str(info.value)
    monkeypatch.undo()
    importlib.import_module("meds_gym.integrations.trl")


def test_integrations_package_imports_trl_names_lazily() -> None:
    import meds_gym.integrations as integrations

    module = importlib.import_module("meds_gym.integrations.trl")
    assert integrations.MEDSRewardFunction is module.MEDSRewardFunction
    code = (
        "import sys, meds_gym, meds_gym.integrations; "
        "heavy = [m for m in ('torch', 'trl', 'accelerate', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_chat_prompts_are_rendered_like_the_trainer_renders_them(
    model: Any, tokenizer: Any
) -> None:
    meds = MEDSRewardFunction(model=model, tokenizer=tokenizer, record_history=True)
    prompts = [[{"role": "system", "content": "Box it."}, {"role": "user", "content": "2+2?"}],
               [{"role": "user", "content": "Compute 3 * 3."}]]  # fmt: skip
    texts = ["4, so \\boxed{4}", "\\boxed{9}"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    meds(prompts=prompts, completions=completions, completion_ids=ids, answer=["4", "9"],
         problem_id=["a", "b"])  # fmt: skip
    features = meds.history[-1].features
    for i in range(2):
        rendered = tokenizer.apply_chat_template(
            prompts[i], add_generation_prompt=True, tokenize=False
        )
        p = ids[i].index(tokenizer.convert_tokens_to_ids("{"))
        sequence = tokenizer(rendered, add_special_tokens=False)["input_ids"] + ids[i][: p + 1]
        np.testing.assert_allclose(
            features[i], _oracle_fingerprint(model, sequence, ids[i][p + 1]), rtol=1e-5, atol=1e-5
        )


def test_all_wrong_groups_are_shaped_under_the_variant_rule():
    from meds_gym.meds import GroupRule

    cfg = MEDSConfig(shape_groups=GroupRule.MIXED_AND_ALL_WRONG)
    meds = MEDSRewardFunction(cfg, features_fn=_fixed_features(TABLE), num_generations=3)
    oracle = MEDSShaper(cfg)
    for _ in range(3):
        rewards = _call(meds, TWO_GROUPS)
        step = meds.last_step
        want = oracle.shape(list(step.problem_ids), step.correct, step.rewards, step.features)
        assert step.kept.all()
        assert rewards == want.shaped_rewards.tolist()
    assert any(r < -1.0 for r in rewards[:3])  # the all-wrong group carries penalties


def test_reward_scale_is_configurable_and_checked():
    features = _fixed_features(TABLE)
    meds = MEDSRewardFunction(features_fn=features, correct_reward=1.0, incorrect_reward=0.0)
    assert _call(meds, TWO_GROUPS) == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    for bad in ({"incorrect_reward": 1.0}, {"correct_reward": float("nan")},
                {"correct_reward": True}):  # fmt: skip
        with pytest.raises(InvalidArgumentError):
            MEDSRewardFunction(features_fn=features, **bad)


def test_answer_string_memory_needs_no_model_and_clusters_by_the_answer():
    from meds_gym.meds import ClusterMethod

    config = MEDSConfig(cluster_method=ClusterMethod.ANSWER)
    meds = MEDSRewardFunction(config, num_generations=3)  # no model, no features_fn
    first = _call(meds, TWO_GROUPS)
    assert first == [-1.0, -1.0, -1.0, -1.0, 1.0, -1.0]  # empty memory
    second = _call(meds, TWO_GROUPS)
    # Only the mixed group (last three) is shaped and stored: WRONG_A once, then penalised.
    assert second[:3] == [-1.0, -1.0, -1.0] and second[4] == 1.0
    assert second[3] == second[5] < -1.0


def test_missing_golds_score_wrong_and_missing_ids_are_refused(caplog):
    meds = MEDSRewardFunction(features_fn=_fixed_features(TABLE), skip_uniform_groups=False)
    with caplog.at_level("WARNING"):
        rewards = meds(prompts=["q"] * 2, completions=[WRONG_A, RIGHT],
                       answer=[None, float("nan")], problem_id=["p", "p"])  # fmt: skip
    assert rewards == [-1.0, -1.0] and "no gold answer" in caplog.text
    for bad in ([None, None], ["p", float("nan")]):
        with pytest.raises(InvalidArgumentError, match="problem_id"):
            meds(prompts=["q"] * 2, completions=[RIGHT] * 2, answer=["19"] * 2, problem_id=bad)
    assert meds.shaper.memory.n_rows == 2  # only the first (valid) call stored anything


@pytest.mark.parametrize("verdict", ["false", "true", 2, None, 0.5])
def test_a_correctness_function_must_return_a_bool(verdict):
    meds = MEDSRewardFunction(
        features_fn=_fixed_features(TABLE), correctness_fn=lambda t, g: verdict
    )
    with pytest.raises(InvalidArgumentError, match="correctness_fn"):
        meds(prompts=["q"], completions=[RIGHT], answer=["19"], problem_id=["p"])
    numeric = MEDSRewardFunction(features_fn=_fixed_features(TABLE), correctness_fn=lambda t, g: 1)
    assert numeric(prompts=["q"], completions=[RIGHT], answer=["19"], problem_id=["p"]) == [1.0]
