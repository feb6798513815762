"""The training script: argument errors, model loading, and a short run in which reward rises."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tyro")
pytest.importorskip("tqdm")

from agents.policy import forward_logprobs, load_policy  # noqa: E402
from agents.ppo import Args, main, tiny_config_for  # noqa: E402
from agents.tiny_model import TinyModelConfig, build_char_tokenizer, build_model  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402

torch.set_num_threads(1)


def test_group_size_below_two_is_rejected():
    for algorithm in ("grpo", "dapo", "grpo_entropy", "meds"):
        with pytest.raises(InvalidArgumentError, match="`group_size` must be an int >= 2"):
            Args(algorithm=algorithm, group_size=1)


def test_other_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="temperature"):
        Args(temperature=0.0)
    with pytest.raises(InvalidArgumentError, match="iterations"):
        Args(iterations=0)


def test_unknown_model_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(InvalidArgumentError, match="`model_path` must be a local directory"):
        load_policy(missing)


def test_tiny_model_needs_a_toy_env():
    with pytest.raises(InvalidArgumentError, match="model_path"):
        tiny_config_for(Args(env_id="meds_gym/MATH500-v0"))
    tiny = tiny_config_for(Args(env_id="meds_gym/AddSub-v0", num_problems=5, difficulty=2))
    assert (tiny.task, tiny.num_problems, tiny.difficulty) == ("addsub", 5, 2)


def test_tokenizer_without_pad_falls_back_to_eos(tmp_path, caplog):
    tokenizer = build_char_tokenizer()
    model = build_model(TinyModelConfig(hidden_size=32, num_layers=1), tokenizer)
    tokenizer.pad_token = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tiny_model.json").write_text("{}")  # load with the character tokenizer class
    with caplog.at_level(logging.WARNING, logger="agents.ppo"):
        _, loaded = load_policy(tmp_path)
    assert loaded.pad_token == loaded.eos_token == "<|eos|>"
    assert "no pad token" in caplog.text


def test_forward_logprobs_left_padding_matches_unpadded_forward():
    # Prompts of different lengths are left-padded; every sequence's response log-probs must
    # equal those of its own unpadded forward pass (position ids follow the attention mask).
    tokenizer = build_char_tokenizer()
    model = build_model(TinyModelConfig(hidden_size=32, num_layers=2), tokenizer).eval()
    prompts, responses = (
        ["<|user|>1+2?\n<|assistant|>", "<|user|>11*12-3?\n<|assistant|>"],
        ["3", "129"],
    )
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    width = max(len(r) for r in responses)
    resp = torch.full((2, width), tokenizer.pad_token_id)
    resp_mask = torch.zeros((2, width), dtype=torch.long)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = torch.tensor(tokenizer(r, add_special_tokens=False).input_ids)
        resp_mask[i, : len(r)] = 1
    sequences = torch.cat([enc["input_ids"], resp], dim=1)
    attention = torch.cat([enc["attention_mask"], resp_mask], dim=1)
    with torch.no_grad():
        logprobs, logits, features = forward_logprobs(
            model, sequences, attention, enc["input_ids"].shape[1]
        )
    assert features is None and logits.shape[:2] == resp.shape
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids = torch.tensor([tokenizer(p + r, add_special_tokens=False).input_ids])
        with torch.no_grad():
            ref = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        expected = ref[torch.arange(len(targets)), targets][-len(r) :]
        torch.testing.assert_close(logprobs[i, : len(r)], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["meds", "grpo"])
def test_short_run_on_one_problem_raises_reward(tmp_path, algorithm):
    tiny = TinyModelConfig(
        hidden_size=64,
        num_layers=2,
        steps=400,
        batch_size=16,
        learning_rate=3e-3,
        solutions_per_problem=40,
    )
    args = Args(
        algorithm=algorithm,
        num_problems=1,
        tiny=tiny,
        cache_dir=str(tmp_path / "cache"),
        iterations=8,
        prompts_per_iteration=4,
        group_size=16,
        max_new_tokens=64,
        learning_rate=5e-4,
        update_epochs=2,
        output_dir=str(tmp_path / "runs"),
        device="cpu",
        threads=1,
    )
    history = main(args)
    rewards = [row["charts/reward_mean"] for row in history]
    assert len(rewards) == 8
    # Iteration 0 is scored before any update: the warm-up policy's pass@1 (64 samples).
    assert 0.1 < rewards[0] < 0.75, f"the warm-up should leave room to learn: {rewards}"
    assert np.mean(rewards[-3:]) > rewards[0] + 0.2, rewards
    lines = (tmp_path / "runs" / args.run_name / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows[0]["charts/reward_mean"] == rewards[0]
    assert any(k.startswith("losses/") for k in rows[0])
    assert list((tmp_path / "runs" / args.run_name).glob("events.out.tfevents.*"))
    if algorithm == "meds":
        assert "meds/memory_rows" in rows[-1] and rows[-1]["meds/memory_rows"] > 0
    else:
        # KL to the initial policy: zero before the first step, positive once the policy moved.
        assert all(row["losses/kl"] >= 0.0 for row in rows) and rows[-1]["losses/kl"] > 0.0


def test_cli_parses_into_args(capsys):
    import tyro

    args = tyro.cli(
        Args, args=["--algorithm", "grpo_entropy", "--group-size", "4", "--tiny.steps", "7"]
    )
    assert args.algorithm == "grpo_entropy" and args.group_size == 4 and args.tiny.steps == 7
    assert not args.is_dapo_like and Args(algorithm="dapo").is_dapo_like
    # tyro turns the validation error into a usage error that shows our message.
    with pytest.raises(SystemExit):
        tyro.cli(Args, args=["--group-size", "1"])
    assert "`group_size` must be an int >= 2" in capsys.readouterr().err
