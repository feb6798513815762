"""The character tokenizer, the warm-up mixture and the on-disk cache of the tiny model."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents import tiny_model  # noqa: E402
from agents.tiny_model import (  # noqa: E402
    TinyModelConfig,
    build_char_tokenizer,
    load_tokenizer,
    mixture_weights,
    tiny_model_path,
    warmup_texts,
)
from meds_gym.errors import InvalidArgumentError  # noqa: E402
from meds_gym.tasks.procedural import label_error_modes  # noqa: E402
from meds_gym.tasks.toy import TOY_TASKS  # noqa: E402

torch.set_num_threads(1)

TINY = dict(
    num_problems=3, solutions_per_problem=4, hidden_size=32, num_layers=2, steps=3, batch_size=4
)


def test_tokenizer_round_trip_and_offsets():
    tok = build_char_tokenizer()
    text = "3*6=18, 7+18=25.\nAnswer: \\boxed{19}"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert len(enc.input_ids) == len(text)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    assert tok.decode(enc.input_ids) == text
    assert tok.decode(tok("é").input_ids) == "<|unk|>"
    for token in ("pad", "eos", "bos"):
        assert getattr(tok, f"{token}_token_id") is not None
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}) == 3


def test_chat_template():
    tok = build_char_tokenizer()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|system|>Be brief.\n<|user|>1+1?\n<|assistant|>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids[0] == tok.convert_tokens_to_ids("<|system|>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")


@pytest.mark.parametrize("seed", range(5))
def test_mixture_weights(seed):
    config = TinyModelConfig(dominant_share=0.75)
    modes = ["a", "b", "c", "d"]
    weights = mixture_weights(modes, np.random.default_rng(seed), config)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert config.correct_share_low <= weights[None] <= config.correct_share_high
    wrong = 1 - weights[None]
    dominant = max(modes, key=lambda m: weights[m])
    assert weights[dominant] == pytest.approx(0.75 * wrong)
    assert all(weights[m] == pytest.approx(0.25 * wrong / 3) for m in modes if m != dominant)
    assert mixture_weights(["x"], np.random.default_rng(seed), config)["x"] == pytest.approx(wrong)
    assert mixture_weights([], np.random.default_rng(seed), config) == {None: 1.0}


def test_warmup_texts_follow_the_mixture():
    config = TinyModelConfig(num_problems=6, solutions_per_problem=400)
    tok = build_char_tokenizer()
    prompts, responses = warmup_texts(config, tok)
    assert len(prompts) == len(responses) == 6 * 400
    task = TOY_TASKS["arithmetic"](num_problems=6, difficulty=1, seed=0)
    rng = np.random.default_rng([config.seed, 1])  # replay the draw of the weights
    for i, problem in enumerate(task):
        weights = mixture_weights(sorted(problem.error_modes), rng, config)
        rng.choice(
            len(weights), size=400, p=np.array(list(weights.values())) / sum(weights.values())
        )
        block = responses[i * 400 : (i + 1) * 400]
        assert all(problem.question in p for p in prompts[i * 400 : (i + 1) * 400])
        counts: collections.Counter = collections.Counter()
        for text in block:
            answer = text.rsplit("\\boxed{", 1)[1].rstrip("}")
            if answer == problem.answer:
                counts[None] += 1
            else:
                labels = label_error_modes(problem, answer)
                assert labels, f"warm-up answer {answer} follows no known procedure"
                counts[labels[0] if len(labels) == 1 else labels] += 1
        # Observed shares within 4 standard errors of the mixture weights.
        share = counts[None] / 400
        assert abs(share - weights[None]) < 4 * np.sqrt(0.25 / 400)
        dominant = max((m for m in weights if m is not None), key=weights.__getitem__)
        if len(problem.error_modes) > 1 and len(set(problem.error_modes.values())) == len(
            problem.error_modes
        ):
            assert counts[dominant] == max(v for k, v in counts.items() if k is not None)


def test_config_validation():
    with pytest.raises(InvalidArgumentError, match="correct_share"):
        TinyModelConfig(correct_share_low=0.7, correct_share_high=0.5)
    with pytest.raises(InvalidArgumentError, match="hidden_size"):
        TinyModelConfig(hidden_size=30, num_heads=4)
    with pytest.raises(InvalidArgumentError, match="steps"):
        TinyModelConfig(steps=0)
    assert TinyModelConfig().cache_key != TinyModelConfig(seed=1).cache_key
    assert TinyModelConfig().cache_key == TinyModelConfig().cache_key


def test_cache_builds_once_and_is_reproducible(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    config = TinyModelConfig(**TINY)
    first = tiny_model_path(config, tmp_path / "a")
    assert first.name == config.cache_key
    meta = json.loads((first / "tiny_model.json").read_text())
    assert len(meta["warmup_losses"]) == 3 and meta["config"]["hidden_size"] == 32
    # A second call finds the entry and does not train again.
    monkeypatch.setattr(tiny_model, "warm_up", lambda *a, **k: pytest.fail("rebuilt the cache"))
    assert tiny_model_path(config, tmp_path / "a") == first
    monkeypatch.undo()
    # Same seed, another cache: identical weights.
    second = tiny_model_path(config, tmp_path / "b")
    m1 = transformers.AutoModelForCausalLM.from_pretrained(first)
    m2 = transformers.AutoModelForCausalLM.from_pretrained(second)
    for (n1, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), n1
    assert m1.config.num_hidden_layers == 2
    # No staging directories are left behind.
    assert [p.name for p in (tmp_path / "a").iterdir()] == [config.cache_key]
    tok = load_tokenizer(first)
    assert tok.padding_side == "left"
    assert tok.decode(tok("ab  c").input_ids) == "ab  c"  # the character tokenizer, not Qwen2's


def test_warm_up_lowers_the_loss(tmp_path):
    config = TinyModelConfig(**{**TINY, "steps": 40, "learning_rate": 3e-3})
    path = tiny_model_path(config, tmp_path)
    losses = json.loads((path / "tiny_model.json").read_text())["warmup_losses"]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_warm_up_shows_a_progress_bar(tmp_path, capsys):
    tiny_model_path(TinyModelConfig(**TINY), tmp_path / "a")
    err = capsys.readouterr().err
    assert "tiny-model warm-up" in err and "3/3" in err and "loss=" in err
    tiny_model_path(TinyModelConfig(**TINY), tmp_path / "b", progress=False)
    assert "tiny-model warm-up" not in capsys.readouterr().err


def test_one_cache_entry_per_model_whatever_the_rl_arguments(tmp_path, monkeypatch):
    pytest.importorskip("tyro")
    from agents.ppo import Args, tiny_config_for

    built = []
    real_warm_up = tiny_model.warm_up
    monkeypatch.setattr(
        tiny_model, "warm_up", lambda *a, **k: built.append(1) or real_warm_up(*a, **k)
    )
    first = Args(algorithm="meds", num_problems=3, tiny=TinyModelConfig(**TINY), iterations=3)
    second = Args(
        algorithm="grpo",
        num_problems=3,
        # The task fields of --tiny follow the env: a stale one must not make another entry.
        tiny=TinyModelConfig(**{**TINY, "task": "addsub", "num_problems": 9}),
        seed=7,
        learning_rate=1e-3,
        iterations=50,
        group_size=4,
        temperature=0.7,
        checkpoint_every=2,
        output_dir=str(tmp_path / "elsewhere"),
    )
    cache = tmp_path / "cache"
    path = tiny_model_path(tiny_config_for(first), cache, progress=False)
    assert tiny_model_path(tiny_config_for(second), cache, progress=False) == path
    assert built == [1] and [p.name for p in cache.iterdir()] == [path.name]


def test_cache_key_depends_only_on_what_determines_the_weights(monkeypatch):
    config = TinyModelConfig(**TINY)
    key = config.cache_key
    assert TinyModelConfig(**TINY).cache_key == key
    for change in ({"seed": 1}, {"hidden_size": 64}, {"steps": 4}, {"solutions_per_problem": 5}):
        assert TinyModelConfig(**{**TINY, **change}).cache_key != key, change
    # Every solution correct: the error-mode mixture fields cannot change the texts or the weights.
    all_right = {**TINY, "correct_share_low": 1.0, "correct_share_high": 1.0}
    assert (
        TinyModelConfig(**all_right, dominant_share=0.1).cache_key
        == TinyModelConfig(**all_right, dominant_share=0.9).cache_key
    )
    # New warm-up texts (a toy task changed how it renders) or another torch: another entry.
    real_texts = tiny_model.warmup_texts

    def edited(config, tokenizer):
        prompts, responses = real_texts(config, tokenizer)
        return prompts, [responses[0] + " "] + responses[1:]

    monkeypatch.setattr(tiny_model, "warmup_texts", edited)
    assert config.cache_key != key
    monkeypatch.undo()
    monkeypatch.setattr(tiny_model, "library_versions", lambda: {"torch": "9.9"})
    assert config.cache_key != key


def test_compact_prompt_format_rewarms_and_matches_the_agents_prompts():
    # The compact format drops the system instruction; the warm-up trains on exactly the prompts
    # the agent then builds (agents.policy.prompt_text), and a changed format is a new cache entry.
    import gymnasium as gym

    import meds_gym  # noqa: F401
    from agents.policy import prompt_text

    chat, compact = TinyModelConfig(**TINY), TinyModelConfig(**TINY, prompt_format="compact")
    assert chat.cache_key != compact.cache_key
    tokenizer = build_char_tokenizer()
    chat_prompts, _ = warmup_texts(chat, tokenizer)
    compact_prompts, _ = warmup_texts(compact, tokenizer)
    assert all("<|system|>" in p for p in chat_prompts)
    assert not any("<|system|>" in p or "boxed" in p for p in compact_prompts)
    env = gym.make("meds_gym/Arithmetic-v0", num_problems=TINY["num_problems"])
    for index in range(TINY["num_problems"]):
        obs, info = env.reset(options={"index": index})
        rows = slice(index * TINY["solutions_per_problem"], None)
        assert prompt_text(tokenizer, obs, info, "compact") == compact_prompts[rows][0]
        assert prompt_text(tokenizer, obs, info) == chat_prompts[rows][0]
        compact_ids = tokenizer(compact_prompts[rows][0]).input_ids
        assert len(compact_ids) < len(tokenizer(chat_prompts[rows][0]).input_ids) / 2
    with pytest.raises(InvalidArgumentError, match="prompt_format"):
        TinyModelConfig(prompt_format="terse")
    with pytest.raises(InvalidArgumentError, match="prompt_format"):
        prompt_text(tokenizer, obs, info, "terse")


def test_warm_up_on_fresh_problems_never_sees_the_rl_or_evaluation_questions():
    import dataclasses

    from agents.tiny_model import excluded_questions, make_task, warmup_problems

    config = TinyModelConfig(task="arithmetic", num_problems=300, task_seed=1, exclude_seed=0,
                             exclude_problems=64)  # fmt: skip
    excluded = excluded_questions(config)
    rl = {p.question for p in TOY_TASKS["arithmetic"](num_problems=64, seed=0, split="train")}
    held_out = {p.question for p in TOY_TASKS["arithmetic"](num_problems=64, seed=0, split="test")}
    assert excluded == rl | held_out
    chosen = warmup_problems(config)
    assert len(chosen) == 300 and not {p.question for p in chosen} & excluded
    plain = dataclasses.replace(config, exclude_seed=None)
    assert not {p.question for p in warmup_problems(plain)} - {p.question for p in make_task(plain)}
