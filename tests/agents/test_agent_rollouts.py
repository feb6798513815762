"""Rollout collection: dynamic sampling refills the batch; batches join and re-pad exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import agents.policy as policy  # noqa: E402
import meds_gym  # noqa: E402, F401
from agents.policy import (  # noqa: E402
    MEDSScorer,
    SampledBatch,
    collect_rollouts,
    concat_batches,
    select_rows,
)
from agents.tiny_model import build_char_tokenizer  # noqa: E402
from meds_gym.meds import MEDSConfig, MEDSShaper, mixed_groups  # noqa: E402

torch.set_num_threads(1)
PAD = 0


def _batch(texts: list[str], prompt_width: int, response_width: int) -> SampledBatch:
    b = len(texts)
    return SampledBatch(
        prompt_ids=torch.arange(b * prompt_width).view(b, prompt_width) + 10,
        prompt_mask=torch.ones(b, prompt_width, dtype=torch.long),
        responses=torch.arange(b * response_width).view(b, response_width) + 100,
        response_mask=torch.ones(b, response_width),
        texts=texts,
    )


class ScriptedSampler:
    """Stands in for the policy: round r answers group g right on the rollouts ``plan[r][g]``."""

    def __init__(self, env, plan: list[list[int]]) -> None:
        self.env, self.plan, self.round = env, plan, 0

    def __call__(self, model, tokenizer, prompts, group_size, max_new_tokens, temperature=1.0):
        texts = []
        source = self.env.unwrapped.source
        by_prompt = {p.question: p for p in source}
        for g, prompt in enumerate(prompts):
            problem = next(p for q, p in by_prompt.items() if q in prompt)
            right = self.plan[self.round][g]
            wrong = str(int(problem.answer) + 1)
            texts += [
                f"\\boxed{{{problem.answer if i < right else wrong}}}" for i in range(group_size)
            ]
        self.round += 1
        # Rounds of different widths, so that joining them must re-pad.
        return _batch(texts, prompt_width=3 + self.round, response_width=5 + 2 * self.round)


@pytest.fixture
def env():
    environment = gym.make("meds_gym/Arithmetic-v0", num_problems=20, seed=3)
    yield environment
    environment.close()


def _collect(env, monkeypatch, plan, dynamic=True, max_rounds=5):
    sampler = ScriptedSampler(env, plan)
    monkeypatch.setattr(policy, "sample_responses", sampler)
    rollouts = collect_rollouts(
        model=None,
        tokenizer=build_char_tokenizer(),
        env=env,
        rng=np.random.default_rng(0),
        groups=3,
        group_size=4,
        max_new_tokens=8,
        dynamic_sampling=dynamic,
        max_rounds=max_rounds,
    )
    return rollouts, sampler


def test_dynamic_sampling_samples_more_prompts_until_the_batch_is_full(env, monkeypatch):
    # Round 1 keeps 1 group (mixed: 2 of 4 right), round 2 keeps 1, round 3 keeps 2 of which
    # only the first is needed: 3 groups in 3 rounds, the batch never shrinks.
    plan = [[0, 2, 4], [4, 0, 1], [3, 1, 0], [2, 2, 2]]
    rollouts, sampler = _collect(env, monkeypatch, plan)
    assert rollouts.rounds == 3 == sampler.round
    assert len(rollouts.sampled_ids) == 3 * 3 * 4
    assert rollouts.batch is not None and len(rollouts.batch.texts) == 3 * 4
    rewards = rollouts.rewards.reshape(3, 4)
    assert (rewards.max(axis=1) > rewards.min(axis=1)).all()  # every kept group is mixed
    assert rewards.sum(axis=1).tolist() == [2.0, 1.0, 3.0]  # in the order they were sampled
    # The kept rows are the sampled rows they came from.
    assert rollouts.kept == [4, 5, 6, 7, 20, 21, 22, 23, 24, 25, 26, 27]
    assert rollouts.problem_ids == [rollouts.sampled_ids[i] for i in rollouts.kept]
    assert rollouts.sampled_rewards.mean() == pytest.approx(np.sum(plan[:3]) / 36)


def test_dynamic_sampling_stops_at_the_round_cap(env, monkeypatch):
    plan = [[0, 4, 0], [1, 0, 0], [4, 4, 4]]
    rollouts, _ = _collect(env, monkeypatch, plan, max_rounds=3)
    assert rollouts.rounds == 3
    assert len(rollouts.kept) == 4  # one group, kept in round 2: the batch is short, not padded
    none, _ = _collect(env, monkeypatch, [[0, 0, 0], [4, 4, 4]], max_rounds=2)
    assert none.batch is None and none.kept == [] and none.rounds == 2
    assert len(none.sampled_ids) == 24


def test_without_dynamic_sampling_one_round_keeps_every_group(env, monkeypatch):
    rollouts, _ = _collect(env, monkeypatch, [[0, 4, 2], [1, 1, 1]], dynamic=False)
    assert rollouts.rounds == 1 and rollouts.kept == list(range(12))


def test_concat_batches_re_pads_left_prompts_and_right_responses():
    a = _batch(["a", "b"], prompt_width=2, response_width=3)
    b = _batch(["c"], prompt_width=4, response_width=1)
    b.response_mask[0, 0] = 1.0
    joined = concat_batches([a, b], PAD)
    assert joined.prompt_ids.shape == (3, 4) and joined.responses.shape == (3, 3)
    assert joined.texts == ["a", "b", "c"]
    # Prompts: padding on the left, masked; the real ids end at the right edge.
    assert joined.prompt_ids[0].tolist() == [PAD, PAD, *a.prompt_ids[0].tolist()]
    assert joined.prompt_mask[0].tolist() == [0, 0, 1, 1]
    assert joined.prompt_ids[2].tolist() == b.prompt_ids[0].tolist()
    # Responses: padding on the right, masked.
    assert joined.responses[2].tolist() == [b.responses[0, 0].item(), PAD, PAD]
    assert joined.response_mask[2].tolist() == [1.0, 0.0, 0.0]
    assert select_rows(joined, [2, 0]).texts == ["c", "a"]


def test_the_wrapper_path_gives_the_shapers_penalties_on_the_kept_groups(env):
    # The agent scores and shapes by stepping the env in MEDSVectorRewardWrapper; the oracle is
    # the shaper called directly on the same rollouts with DAPO's kept mask (mixed groups only),
    # groups being the sampled groups: a problem drawn twice in a batch is two groups.
    source = env.unwrapped.source
    rng = np.random.default_rng(1)
    config = MEDSConfig()
    group_size, seen_penalty, seen_repeat = 4, False, False
    scorer = MEDSScorer(
        lambda: gym.make("meds_gym/Arithmetic-v0", num_problems=20, seed=3),
        MEDSShaper(config),
        group_size,
    )
    direct = MEDSShaper(config)
    for step in range(6):
        problems = [source[int(i)] for i in rng.choice(4, size=3, replace=step % 2 == 1)]
        ids, texts, correct = [], [], []
        for g, problem in enumerate(problems):
            right = [0, 2, 4][(g + step) % 3]  # one all-wrong, one mixed, one all-right group
            for r in range(group_size):
                ok = r < right
                answer = problem.answer if ok else str(int(problem.answer) + 1 + r % 2)
                ids.append(problem.problem_id)
                texts.append(f"x \\boxed{{{answer}}}")
                correct.append(ok)
        features = rng.normal(size=(len(texts), 3)).astype(np.float32)
        features[rng.random(len(texts)) < 0.2] = np.nan  # some rollouts have no fingerprint
        shaped, verdicts, info = scorer.step(ids, texts, features)
        assert verdicts == correct
        rewards = np.asarray(correct, dtype=np.float64)
        rows = [None if np.isnan(f).any() else f for f in features]
        kept = mixed_groups(ids, correct, group_ids=[i // group_size for i in range(len(ids))])
        seen_repeat |= bool((kept != mixed_groups(ids, correct)).any())
        expected = direct.shape(ids, correct, rewards, rows, kept=kept)
        np.testing.assert_allclose(info["penalty"][kept], expected.penalties[kept])
        np.testing.assert_array_equal(info["cluster"][kept], expected.clusters[kept])
        np.testing.assert_allclose(shaped[kept], expected.shaped_rewards[kept])
        assert (info["cluster"][~kept] == -2).all() and (shaped[~kept] == rewards[~kept]).all()
        seen_penalty |= bool((info["penalty"] > 0).any())
    assert seen_penalty  # the memory acted, so the parity is not between two zero vectors
    assert seen_repeat  # some batch drew a problem twice, with a mixed and a uniform group
    assert scorer.shaper.stats().rows == direct.stats().rows > 0


def test_epoch_schedule_meets_every_problem_equally_and_resumes_where_it_stopped():
    from agents.policy import EpochSchedule

    schedule = EpochSchedule(7, seed=3)
    draws = schedule(5) + schedule(16) + schedule(7)  # 4 epochs of 7, in uneven rounds
    assert sorted(draws) == sorted(list(range(7)) * 4)
    for epoch in range(4):
        assert sorted(draws[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert draws[:7] != draws[7:14]  # reshuffled each epoch
    resumed = EpochSchedule(7, seed=3, draws=12)
    assert resumed(9) == draws[12:21]
    assert EpochSchedule(7, seed=4)(7) != draws[:7]
