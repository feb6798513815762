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
from agents.ppo import Args, RunObserver, main, tiny_config_for  # noqa: E402
from agents.tiny_model import TinyModelConfig, build_char_tokenizer, build_model  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402
from tests.tiny import cpu_run, learnable_tiny  # noqa: E402

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


def test_load_policy_keeps_float32_weights_on_a_bf16_gpu(tmp_path, monkeypatch):
    # The weights of a model that trains are the optimiser's master copy: float32 on any device,
    # also where bfloat16 is supported (emulated here: CUDA with bfloat16, the move a no-op).
    tokenizer = build_char_tokenizer()
    build_model(TinyModelConfig(hidden_size=32, num_layers=1), tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tiny_model.json").write_text("{}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)
    model, _ = load_policy(tmp_path, "cuda")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_precision_defaults_to_bf16_mixed_on_a_bf16_gpu_and_is_checked(monkeypatch):
    assert Args(device="cpu").precision == "fp32"
    assert Args(device="cpu", precision="bf16-mixed").precision == "bf16-mixed"
    with pytest.raises(InvalidArgumentError, match="`precision` must be one of"):
        Args(device="cpu", precision="bf16")  # type: ignore[arg-type]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert Args(device="cuda").precision == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert Args(device="cuda:0").precision == "fp32"
    with pytest.raises(InvalidArgumentError, match="without bfloat16 support"):
        Args(device="cuda", precision="bf16-mixed")


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
@pytest.mark.parametrize("algorithm,meds", [("meds", False), ("grpo", False), ("ppo", True)])
def test_short_run_on_one_problem_raises_reward(tmp_path, algorithm, meds):
    # PPO starts from a zero critic and whitens token advantages over the whole batch: it climbs
    # more slowly than the group-relative algorithms, so it gets a few more (cheap) iterations.
    iterations, margin = (12, 0.15) if algorithm == "ppo" else (8, 0.2)
    args = cpu_run(
        tmp_path,
        algorithm=algorithm,
        meds=meds,
        num_problems=1,
        tiny=learnable_tiny(),
        iterations=iterations,
        prompts_per_iteration=4,
        group_size=16,
        max_new_tokens=64,
        learning_rate=5e-4,
        update_epochs=2,
        tensorboard=True,
    )
    history = main(args)
    rewards = [row["charts/reward_mean"] for row in history]
    assert len(rewards) == iterations
    # Iteration 0 is scored before any update: the warm-up policy's pass@1 (64 samples).
    assert 0.1 < rewards[0] < 0.75, f"the warm-up should leave room to learn: {rewards}"
    assert np.mean(rewards[-3:]) > rewards[0] + margin, rewards
    lines = (tmp_path / "runs" / args.run_name / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows[0]["charts/reward_mean"] == rewards[0]
    assert any(k.startswith("losses/") for k in rows[0])
    assert list((tmp_path / "runs" / args.run_name).glob("events.out.tfevents.*"))
    if args.use_meds:
        assert "meds/memory_rows" in rows[-1] and rows[-1]["meds/memory_rows"] > 0
    if algorithm == "ppo":  # the critic learns: its loss is logged, the KL is in the reward
        assert all("losses/value_loss" in row for row in rows)
        assert rows[-1]["losses/kl"] != 0.0
    elif algorithm == "grpo":
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


# -- MEDS as a flag, PPO, dynamic sampling, held-out evaluation (issue 9) -------------------------


def test_meds_is_a_flag_on_every_algorithm_and_meds_an_alias_of_dapo():
    alias = Args(algorithm="meds")
    assert alias.base_algorithm.value == "dapo" and alias.use_meds and alias.is_dapo_like
    assert alias.label == "dapo+meds" == Args(algorithm="dapo", meds=True).label
    for algorithm in ("grpo", "dapo", "ppo", "grpo_entropy"):
        assert Args(algorithm=algorithm, meds=True).label == f"{algorithm}+meds"
        assert not Args(algorithm=algorithm).use_meds
    assert Args(algorithm="ppo", meds=True).run_name == "Arithmetic-v0__ppo+meds__0"
    # PPO has a critic: a group of one is fine; the group-relative algorithms refuse it.
    assert Args(algorithm="ppo", group_size=1).group_size == 1
    with pytest.raises(InvalidArgumentError, match="max_generation_rounds"):
        Args(max_generation_rounds=0)


def test_cli_flags_of_the_second_edition():
    import tyro

    args = tyro.cli(
        Args,
        args=[
            "--algorithm", "ppo", "--meds", "--critic.gae-lambda", "0.95",
            "--meds-cluster", "single", "--fingerprint-layers", "all", "--track",
            "--wandb.mode", "offline", "--eval-split", "train",
        ],
    )  # fmt: skip
    assert args.label == "ppo+meds" and args.critic.gae_lambda == 0.95
    assert (args.meds_cluster, args.fingerprint_layers, args.track) == ("single", "all", True)
    assert args.wandb.mode == "offline" and args.eval_split == "train"


def test_help_runs_as_a_module():
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", "agents.ppo", "--help"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--meds", "--critic.gae-lambda", "--meds-cluster", "--track", "--eval-split"):
        assert flag in result.stdout


MICRO_TINY = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, steps=3, batch_size=4)
"""A barely trained model: fast, and (almost) never right, so dynamic sampling keeps nothing."""


def _micro_run(tmp_path, observer=None, **kwargs):
    settings = {
        "num_problems": 4,
        "tiny": MICRO_TINY,
        "cache_dir": str(tmp_path / "cache"),
        "iterations": 2,
        "prompts_per_iteration": 2,
        "group_size": 4,
        "max_new_tokens": 24,
        "output_dir": str(tmp_path / "runs"),
        "device": "cpu",
        "threads": 1,
        "eval_n": 2,
        "tensorboard": False,
    }
    args = Args(**{**settings, **kwargs})
    return args, main(args, observer)


class _WeightsAsLoaded(RunObserver):
    """Keeps the policy and a copy of its weights as loaded, first cast to ``dtype`` if given."""

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype

    def policy_loaded(self, model, tokenizer):
        if self.dtype is not None:
            model.to(self.dtype)
        self.model = model
        self.before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def moved_share(self) -> float:
        """Share of the weights that changed, the input embedding aside (only the rows of the
        batch's tokens get a gradient)."""
        moved = total = 0
        for name, p in self.model.named_parameters():
            if p is not self.model.get_input_embeddings().weight:
                moved += int((p.detach() != self.before[name]).sum())
                total += p.numel()
        return moved / total


def test_one_update_at_the_papers_learning_rate_moves_the_weights_in_the_gpu_configuration(
    tmp_path,
):
    # The GPU configuration (bf16-mixed) on the CPU's bfloat16 autocast, at the paper's 1e-6. The
    # overlong penalty makes rewards differ within a group, so the untrained policy gets a
    # gradient. AdamW's first step moves every weight with a gradient by about the rate.
    settings = {"algorithm": "grpo", "overlong_buffer": 20, "iterations": 1, "eval_n": 0,
                "learning_rate": 1e-6, "update_epochs": 1}  # fmt: skip
    mixed = _WeightsAsLoaded()
    _micro_run(tmp_path / "mixed", mixed, precision="bf16-mixed", **settings)
    assert {p.dtype for p in mixed.model.parameters()} == {torch.float32}
    assert mixed.moved_share() > 0.99
    # bfloat16 weights under plain AdamW, as the policy was loaded on CUDA before: a step of 1e-6
    # is far below bfloat16's spacing near the weights (about 1e-4 at 0.02), so it rounds away.
    bf16_weights = _WeightsAsLoaded(torch.bfloat16)
    _micro_run(tmp_path / "bf16", bf16_weights, precision="fp32", **settings)
    assert bf16_weights.moved_share() < 0.1


@pytest.mark.parametrize(
    "algorithm,meds",
    [("ppo", True), ("ppo", False), ("grpo", True), ("grpo_entropy", True), ("dapo", False)],
)
def test_every_algorithm_runs_with_and_without_meds(tmp_path, algorithm, meds):
    args, history = _micro_run(tmp_path, algorithm=algorithm, meds=meds, temperature=0.7)
    run_dir = tmp_path / "runs" / args.run_name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows == history
    assert all(np.isfinite(v) for row in rows for v in row.values())
    if algorithm == "ppo":
        assert all("losses/value_loss" in row for row in rows)
    if meds:
        assert all("meds/memory_rows" in row for row in rows)
    # The final evaluation is on held-out problems, and the report says so.
    final = json.loads((run_dir / "eval.json").read_text())
    assert final["evaluated_on"] == "test split (held-out problems)"
    assert "test split (held-out problems)" in (run_dir / "report.md").read_text()


def test_observer_sees_the_policy_and_every_meds_batch_and_can_replace_fingerprints(
    tmp_path, monkeypatch
):
    from agents.policy import MEDSScorer
    from agents.ppo import RunObserver

    scored = []  # the fingerprints MEDS really received
    step = MEDSScorer.step

    def spy(self, problem_ids, texts, fingerprints):
        scored.append(fingerprints)
        return step(self, problem_ids, texts, fingerprints)

    monkeypatch.setattr(MEDSScorer, "step", spy)

    class Recorder(RunObserver):
        def __init__(self):
            self.policies, self.widths, self.batches = [], [], []

        def policy_loaded(self, model, tokenizer):
            self.policies.append((model, tokenizer))

        def fingerprints(self, fingerprints):
            self.widths.append(fingerprints.shape)
            return np.full_like(fingerprints, np.nan)  # "no fingerprint" rows

        def meds_shaped(self, problem_ids, answers, correct, meds_info):
            self.batches.append((problem_ids, answers, correct, meds_info["cluster"]))

    recorder = Recorder()
    args = Args(
        algorithm="grpo",
        meds=True,
        num_problems=4,
        tiny=MICRO_TINY,
        cache_dir=str(tmp_path / "cache"),
        iterations=2,
        prompts_per_iteration=2,
        group_size=4,
        max_new_tokens=24,
        output_dir=str(tmp_path / "runs"),
        device="cpu",
        threads=1,
        eval_n=0,
        tensorboard=False,
    )
    history = main(args, recorder)
    assert len(recorder.policies) == 1 and len(history) == 2
    assert len(recorder.widths) == len(recorder.batches) == 2  # GRPO keeps every group
    for problem_ids, answers, correct, clusters in recorder.batches:
        assert len(problem_ids) == len(answers) == len(correct) == 8
        assert len(clusters) == 8
    assert len(scored) == 2 and all(np.isnan(f).all() for f in scored)  # the replacements


def test_an_iteration_without_kept_groups_says_no_update_and_logs_no_nan(tmp_path, capsys):
    # The barely trained model is never right: every group is all wrong, dynamic sampling keeps
    # none within its rounds, and the iteration makes no update (issue 13, point 3).
    args, history = _micro_run(tmp_path, algorithm="meds", max_generation_rounds=2)
    assert [row["charts/kept_groups"] for row in history] == [0.0, 0.0]
    assert [row["charts/generation_rounds"] for row in history] == [2.0, 2.0]
    assert not any(key.startswith("losses/") for row in history for key in row)
    text = (tmp_path / "runs" / args.run_name / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    out = capsys.readouterr()
    printed = out.out + out.err
    assert printed.count("no update") == 2 and "nan" not in printed.split()


@pytest.mark.slow
def test_the_default_run_learns_and_logs_no_nan(tmp_path):
    # Issue 13, point 3: `python -m agents.ppo` with its defaults (DAPO+MEDS on Arithmetic-v0,
    # the default tiny model) went 0.562 -> 0.000 with `loss +nan` at the old learning rate 5e-4.
    # The tiny model comes from the usual cache ($MEDS_GYM_CACHE or ~/.cache/meds_gym): a cold
    # cache warms it up first (minutes), as a user's first run would.
    args = Args(
        iterations=12,
        eval_n=0,
        output_dir=str(tmp_path / "runs"),
        tensorboard=False,
        device="cpu",
        threads=1,
    )
    history = main(args)
    text = (tmp_path / "runs" / args.run_name / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rewards = [row["charts/accuracy"] for row in history]
    assert all("losses/policy_loss" in row for row in history), "every iteration updated"
    assert np.mean(rewards[-4:]) > np.mean(rewards[:2]), rewards  # rising
    assert min(rewards[3:]) > 0.3, rewards  # and no collapse


def test_the_variant_rule_keeps_and_shapes_all_wrong_groups(tmp_path):
    from agents.ppo import RunObserver

    class Fingerprints(RunObserver):
        """One error mode: every fingerprint near one direction, so revisits are penalised."""

        def __init__(self):
            self.rng, self.batches = np.random.default_rng(0), []

        def fingerprints(self, fingerprints):
            return 1.0 + 0.01 * self.rng.random(fingerprints.shape).astype(np.float32)

        def meds_shaped(self, problem_ids, answers, correct, meds_info):
            self.batches.append((np.asarray(correct), meds_info["penalty"]))

    observer = Fingerprints()
    # One problem that the barely trained model never solves: every group is all wrong. The
    # reference rule would keep none of them (the test above); the variant keeps and shapes them.
    _, history = _micro_run(
        tmp_path, observer, algorithm="meds", meds_groups="mixed_and_all_wrong", num_problems=1
    )
    assert [row["charts/kept_groups"] for row in history] == [2.0, 2.0]
    assert len(observer.batches) == 2
    first, second = observer.batches
    assert not first[0].any() and not second[0].any()  # all wrong
    assert (first[1] == 0).all()  # empty memory on the first visit
    assert (second[1] > 0).all()  # the revisit is penalised: its only signal
    assert history[-1]["meds/memory_rows"] == 16


def test_agent_scores_plus_minus_one_by_default(tmp_path):
    args, history = _micro_run(tmp_path, algorithm="grpo", eval_n=0)
    assert args.incorrect_reward == -1.0
    for row in history:  # reward_mean = accuracy * 1 + (1 - accuracy) * -1
        assert row["charts/reward_mean"] == pytest.approx(2 * row["charts/accuracy"] - 1)
    with pytest.raises(InvalidArgumentError, match="incorrect_reward"):
        Args(incorrect_reward=1.0)


def test_ablation_flags_reach_the_fingerprint_and_the_memory(tmp_path, monkeypatch):
    import agents.ppo as ppo
    from meds_gym.meds import MEDSShaper
    from meds_gym.meds.config import ClusterMethod

    shapers = []

    class RecordingShaper(MEDSShaper):
        def __init__(self, config=None):
            super().__init__(config)
            shapers.append(self)

    widths = []

    def recording_pass(*args, **kwargs):
        result = ppo_logprob_pass(*args, **kwargs)
        widths.append(result.fingerprints.shape[1])
        return result

    ppo_logprob_pass = ppo.logprob_pass
    monkeypatch.setattr(ppo, "MEDSShaper", RecordingShaper)
    monkeypatch.setattr(ppo, "logprob_pass", recording_pass)
    _micro_run(
        tmp_path, algorithm="grpo", meds=True, meds_cluster="single", fingerprint_layers="all"
    )
    assert shapers and shapers[0].config.cluster_method is ClusterMethod.SINGLE
    assert widths == [2, 2]  # all 2 decoder layers of the micro model, not the last half (1)


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_ppo_resumes_bit_exact_with_its_critic(tmp_path, precision):
    # The checkpoint holds the value head beside the policy: a resumed PPO run is the same run,
    # also in mixed precision (float32 weights and optimiser state, bfloat16 reference model).
    def rows(out, **kwargs):
        args, _ = _micro_run(
            tmp_path / out, algorithm="ppo", meds=True, eval_n=0, precision=precision, **kwargs
        )
        lines = (tmp_path / out / "runs" / args.run_name / "metrics.jsonl").read_text()
        return [
            {k: v for k, v in json.loads(line).items() if k != "charts/seconds"}
            for line in lines.splitlines()
        ]

    straight = rows("straight", iterations=3)
    assert len(rows("resumed", iterations=1, checkpoint_every=1)) == 1
    resumed = rows("resumed", iterations=3, checkpoint_every=1, resume=True)
    assert resumed == straight and all("losses/value_loss" in row for row in resumed)


def test_answer_string_memory_runs_in_the_agent(tmp_path, monkeypatch):
    from agents.policy import MEDSScorer

    configs = []
    step = MEDSScorer.step

    def spy(self, problem_ids, texts, fingerprints):
        configs.append(self.shaper.config.cluster_method)
        return step(self, problem_ids, texts, fingerprints)

    monkeypatch.setattr(MEDSScorer, "step", spy)
    _, history = _micro_run(tmp_path, algorithm="grpo", meds=True, meds_cluster="answer")
    assert len(history) == 2 and all("meds/memory_rows" in row for row in history)
    assert [c.value for c in configs] == ["answer", "answer"]


@pytest.mark.parametrize(("algorithm", "micro"), [("dapo", 64), ("ppo", 64), ("dapo", 4)])
def test_the_first_update_step_reuses_the_logprob_forward_and_changes_no_number(
    tmp_path, monkeypatch, algorithm, micro
):
    import agents.ppo as ppo

    update_forwards = []
    real_forward = ppo.forward_with_values  # the update's forwards (the log-prob pass has its own)

    def counting(*args, **kwargs):
        update_forwards.append(1)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(ppo, "forward_with_values", counting)
    runs = {}
    for reuse in (True, False):
        update_forwards.clear()
        observer = _WeightsAsLoaded()
        extra = {"dynamic_sampling": False} if algorithm == "dapo" else {}
        _, history = _micro_run(
            tmp_path / str(reuse),
            observer,
            algorithm=algorithm,
            meds=True,
            eval_n=0,
            reuse_logprob_forward=reuse,
            micro_batch_size=micro,  # a batch is 8 rollouts: one micro-batch or two
            **extra,
        )
        assert observer.moved_share() > 0.5  # the updates did move the weights
        weights = {name: p.detach().clone() for name, p in observer.model.named_parameters()}
        runs[reuse] = (history, weights, len(update_forwards))
    (kept_rows, kept_weights, kept_calls), (plain_rows, plain_weights, plain_calls) = (
        runs[True],
        runs[False],
    )
    # 2 iterations x 2 epochs x (1 or 2) micro-batches; the first micro-batch's first one reused
    per_iteration = 2 * (8 // min(micro, 8))
    assert (kept_calls, plain_calls) == (2 * (per_iteration - 1), 2 * per_iteration)
    for kept, plain in zip(kept_rows, plain_rows, strict=True):
        for key, value in plain.items():
            if key.startswith("losses/") or key.startswith("charts/reward"):
                assert kept[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for name, value in plain_weights.items():
        torch.testing.assert_close(kept_weights[name], value, rtol=1e-4, atol=1e-6)


def test_the_forward_is_kept_only_without_dropout():
    from agents.policy import train_matches_eval

    config = dict(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    assert not train_matches_eval(transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)))
    no_dropout = {**config, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    assert train_matches_eval(transformers.GPT2LMHeadModel(transformers.GPT2Config(**no_dropout)))
    qwen = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    qwen.update(num_attention_heads=2, num_key_value_heads=2)
    assert train_matches_eval(transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**qwen)))
    dropped = transformers.Qwen2Config(**qwen, attention_dropout=0.1)
    assert not train_matches_eval(transformers.Qwen2ForCausalLM(dropped))
