"""agents/run_setup.py: the env, model path and evaluation samples every entry point shares."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tyro")

from agents.evaluate import EvalArgs  # noqa: E402
from agents.ppo import Args  # noqa: E402
from agents.run_setup import EnvSpec, ProblemSamples, resolve_model_path  # noqa: E402
from agents.tiny_model import TinyModelConfig  # noqa: E402
from meds_gym.envs import VerdictCache  # noqa: E402
from meds_gym.errors import InvalidArgumentError  # noqa: E402
from meds_gym.tasks.base import Problem  # noqa: E402


def test_toy_kwargs_pick_the_problems_and_the_split():
    spec = EnvSpec("meds_gym/AddSub-v0", num_problems=5, difficulty=2, task_seed=3)
    assert spec.is_toy
    assert spec.kwargs() == {
        "num_problems": 5,
        "difficulty": 2,
        "seed": 3,
        "answer_anchor": "boxed",
    }
    cache = VerdictCache()
    kwargs = spec.kwargs(split="test", verdict_cache=cache)
    assert kwargs["split"] == "test" and kwargs["verdict_cache"] is cache
    env = spec.make(split="test")
    try:
        source = env.unwrapped.source
        assert (len(source), source.difficulty, source.seed) == (5, 2, 3)
        assert source.split == "test"
    finally:
        env.close()


def test_benchmark_kwargs_take_the_data_file_and_no_split():
    spec = EnvSpec("meds_gym/GSM8K-v0", data_path="gsm8k.jsonl", answer_anchor="answer_tag")
    assert not spec.is_toy
    assert spec.kwargs(split="test") == {"data_path": "gsm8k.jsonl", "answer_anchor": "answer_tag"}


def test_spec_of_reads_whatever_fields_the_arguments_have():
    train = Args(env_id="meds_gym/AddSub-v0", num_problems=5, answer_anchor="answer_tag")
    want = EnvSpec("meds_gym/AddSub-v0", 5, answer_anchor="answer_tag", incorrect_reward=-1.0)
    assert EnvSpec.of(train) == want  # the agent scores +1 / -1, as the reference does
    evaluation = EvalArgs(env_id="meds_gym/AddSub-v0", task_seed=4)  # no answer_anchor field
    assert EnvSpec.of(evaluation) == EnvSpec("meds_gym/AddSub-v0", task_seed=4)


def test_tiny_config_follows_the_task_and_the_prompt_format():
    spec = EnvSpec("meds_gym/AddSub-v0", num_problems=5, difficulty=2, task_seed=1)
    tiny = spec.tiny_config(TinyModelConfig(hidden_size=32), "compact")
    assert (tiny.task, tiny.num_problems, tiny.difficulty, tiny.task_seed) == ("addsub", 5, 2, 1)
    assert tiny.hidden_size == 32 and tiny.prompt_format == "compact"
    assert spec.tiny_config(TinyModelConfig(prompt_format="compact")).prompt_format == "compact"
    # The training script records the same config in args.json.
    assert Args(env_id="meds_gym/AddSub-v0", num_problems=5, difficulty=2, task_seed=1).tiny == (
        spec.tiny_config(TinyModelConfig(), "chat")
    )


def test_a_fresh_warm_up_never_sees_a_training_or_test_question_of_the_run():
    from agents.tiny_model import warmup_problems
    from meds_gym.tasks.toy import TOY_TASKS

    spec = EnvSpec("meds_gym/AddSub-v0", num_problems=40, task_seed=2)
    tiny = spec.tiny_config(TinyModelConfig(fresh_problems=300))
    assert (tiny.num_problems, tiny.task_seed) == (300, 3)
    assert (tiny.exclude_seed, tiny.exclude_problems) == (2, 40)
    assert spec.tiny_config(tiny) == tiny  # the training script resolves the config twice
    run_questions = {
        problem.question
        for split in ("train", "test")
        for problem in TOY_TASKS["addsub"](num_problems=40, seed=2, split=split)
    }
    warm = [problem.question for problem in warmup_problems(tiny)]
    assert len(warm) == 300 and not run_questions & set(warm)
    # Without the exclusion the fresh seed's problems do share questions with the run's.
    same_seed = spec.tiny_config(TinyModelConfig(fresh_problems=300), None)
    unexcluded = dataclasses.replace(same_seed, exclude_seed=None)
    assert run_questions & {p.question for p in warmup_problems(unexcluded)}
    with pytest.raises(InvalidArgumentError, match="fresh_problems"):
        TinyModelConfig(fresh_problems=-1)


def test_model_path_is_given_or_the_tiny_model_of_a_toy_task():
    benchmark = EnvSpec("meds_gym/GSM8K-v0", data_path="x.jsonl")
    assert resolve_model_path(benchmark, "some/model", TinyModelConfig()) == "some/model"
    with pytest.raises(InvalidArgumentError, match="`model_path` must be a model directory"):
        resolve_model_path(benchmark, None, TinyModelConfig())


def test_problem_samples_count_per_problem():
    problems = [Problem("a", "?", "1"), Problem("b", "?", "2")]
    samples = ProblemSamples(2, problems, ["a", "a", "b", "b"], ["1", "3", None, "2"],
                             [True, False, False, True])  # fmt: skip
    assert samples.correct_counts == [1, 1]
    assert [p.problem_id for p in samples.response_problems] == ["a", "a", "b", "b"]


def test_sampling_rejects_n_below_one():
    from agents.run_setup import sample_every_problem

    with pytest.raises(InvalidArgumentError, match="`n`"):
        sample_every_problem(None, None, None, 0)


@pytest.mark.parametrize("per_batch", [1, 3, 16])
def test_batched_sampling_keeps_each_response_with_its_problem(monkeypatch, per_batch):
    import gymnasium as gym

    import agents.run_setup as run_setup
    from agents.policy import SampledBatch

    env = gym.make("meds_gym/Arithmetic-v0", num_problems=7, seed=2)
    source = env.unwrapped.source
    gold = {problem.question: problem.answer for problem in source}
    calls = []

    def answering(model, tokenizer, prompts, n, max_new_tokens, temperature):
        calls.append(len(prompts))
        # Each response gives its own prompt's gold answer, so any row given to the wrong
        # problem is scored wrong.
        texts = [f"\\boxed{{{gold[prompt.strip()]}}}" for prompt in prompts for _ in range(n)]
        empty = torch.zeros(len(texts), 1, dtype=torch.long)
        return SampledBatch(empty, empty, empty, empty.float(), texts, group_size=n)

    monkeypatch.setattr(run_setup, "sample_responses", answering)
    model = torch.nn.Linear(1, 1)  # put in eval mode, never called
    samples = run_setup.sample_every_problem(
        model, None, env, 2, prompt_format="compact", problems_per_batch=per_batch
    )
    assert calls == [min(per_batch, 7 - start) for start in range(0, 7, per_batch)]
    assert [p.problem_id for p in samples.problems] == [p.problem_id for p in source]
    assert samples.problem_ids == [p.problem_id for p in source for _ in range(2)]
    assert all(samples.correct) and samples.correct_counts == [2] * 7
    with pytest.raises(InvalidArgumentError, match="problems_per_batch"):
        run_setup.sample_every_problem(model, None, env, 2, problems_per_batch=0)
