"""Verdict reuse in ReasoningEnv.step: each distinct answer of a problem is verified once."""

import copy
import pickle
import threading
from importlib.util import find_spec

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meds_gym  # noqa: F401  (registers the ids)
from meds_gym.envs import ReasoningEnv, VerdictCache
from meds_gym.envs.reasoning_env import MAX_CACHED_ANSWER_CHARS
from meds_gym.errors import InvalidArgumentError
from meds_gym.tasks import ArithmeticTask, DatasetSource
from meds_gym.tasks.base import Problem
from meds_gym.verifiers import AnswerAnchor, scoring
from tests.conftest import FUZZ_EXAMPLES


class CountingEquivalence:
    """Stands in for ``is_equivalent`` where ``verify_response`` calls it, counting calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.real = scoring.is_equivalent

    def __call__(self, predicted, gold, *, timeout_seconds=5.0):
        self.calls.append((predicted, gold))
        return self.real(predicted, gold, timeout_seconds=timeout_seconds)


@pytest.fixture
def spy(monkeypatch):
    counter = CountingEquivalence()
    monkeypatch.setattr(scoring, "is_equivalent", counter)
    return counter


def source_of(*answers, name="qa", ids=None):
    ids = ids or [f"{name}/{i}" for i in range(len(answers))]
    problems = [
        Problem(problem_id=pid, question=f"Question {pid}?", answer=answer)
        for pid, answer in zip(ids, answers, strict=True)
    ]
    return DatasetSource(name, problems)


class ScoredSource(DatasetSource):
    """A source with the ``score_answer`` and ``problem_info`` hooks, counting scorer calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scored: list[str | None] = []

    def score_answer(self, problem, answer):
        self.scored.append(answer)
        if answer is None:
            return 0.0
        if answer == "bad score":
            return 2.0
        if answer.strip() == problem.answer:
            return 1.0
        return 0.5 if answer.strip().startswith(problem.answer[:1]) else 0.0

    def problem_info(self, problem):
        return {"extra": {"id": problem.problem_id, "tags": ["a", "b"]}}


def scored_source(*answers):
    return ScoredSource(
        "scored",
        [
            Problem(problem_id=f"scored/{i}", question=f"Q{i}?", answer=a)
            for i, a in enumerate(answers)
        ],
    )


def step(env, response, index=0):
    env.reset(options={"index": index})
    return env.step(response)


# -- reuse ------------------------------------------------------------------------------------


def test_repeated_answers_to_one_problem_verify_once(spy):
    env = ReasoningEnv(source_of("12", "7"))
    responses = [
        "So \\boxed{12}.",
        "Thinking hard... the answer is \\boxed{ 12 }",
        "\\boxed{3} no wait \\boxed{12}",
        "\\fbox{12}",
    ]
    infos = [step(env, r)[4] for r in responses]
    assert all(info["correct"] and info["parsed_answer"] == "12" for info in infos)
    assert spy.calls == [("12", "12")]
    assert (env.verdict_cache.misses, env.verdict_cache.hits) == (1, 3)
    # A second distinct answer is verified once more, then reused too.
    for _ in range(3):
        assert step(env, "\\boxed{13}")[1] == 0.0
    assert spy.calls == [("12", "12"), ("13", "12")]
    assert len(env.verdict_cache) == 2


def test_response_without_an_answer_is_never_verified_nor_cached(spy):
    env = ReasoningEnv(source_of("12"))
    for response in ("no box", "\\boxed{12", "\\boxed"):
        _, reward, _, _, info = step(env, response)
        assert (reward, info["correct"], info["parsed_answer"]) == (0.0, False, None)
    tagged = ReasoningEnv(source_of("12"), answer_anchor="answer_tag")
    assert step(tagged, "\\boxed{12}")[4]["parsed_answer"] is None
    assert spy.calls == []
    for cache in (env.verdict_cache, tagged.verdict_cache):
        assert (len(cache), cache.hits, cache.misses) == (0, 0, 0)


def test_different_problems_or_golds_never_share_a_verdict(spy):
    # Same gold, two problems: verified once each.
    env = ReasoningEnv(source_of("5", "5"))
    for index in (0, 1, 0, 1):
        assert step(env, "\\boxed{5}", index)[1] == 1.0
    assert len(spy.calls) == 2
    # Same problem id in two sources with different golds, one shared cache.
    cache = VerdictCache()
    first = ReasoningEnv(source_of("5", ids=["p/0"]), verdict_cache=cache)
    second = ReasoningEnv(source_of("6", ids=["p/0"]), verdict_cache=cache)
    assert step(first, "\\boxed{5}")[4]["correct"] is True
    assert step(second, "\\boxed{5}")[4]["correct"] is False
    assert step(second, "\\boxed{6}")[4]["correct"] is True
    assert step(first, "\\boxed{6}")[4]["correct"] is False
    assert (cache.misses, cache.hits, len(cache)) == (4, 0, 4)


def test_verifier_timeout_and_extractor_are_part_of_the_key(spy):
    cache = VerdictCache()
    source = source_of("5")
    envs = [
        ReasoningEnv(source, verdict_cache=cache),
        ReasoningEnv(source, verdict_cache=cache, verifier_timeout=2.0),
        ReasoningEnv(source, verdict_cache=cache, answer_anchor="answer_tag"),
    ]
    responses = ["\\boxed{5}", "\\boxed{5}", "<answer>5</answer>"]
    for env, response in zip(envs, responses, strict=True):
        assert step(env, response)[1] == 1.0
    assert len(spy.calls) == 3
    assert len(cache) == 3


def test_shared_cache_between_two_envs_verifies_once(spy):
    cache = VerdictCache()
    source = ArithmeticTask(num_problems=5, seed=3)
    envs = [ReasoningEnv(source, verdict_cache=cache) for _ in range(2)]
    gold = source[2].answer
    for env in envs * 2:
        _, reward, _, _, info = step(env, f"It is \\boxed{{{gold}}}.", index=2)
        assert reward == 1.0 and info["correct"]
    assert spy.calls == [(gold, gold)]
    assert all(env.verdict_cache is cache for env in envs)
    assert (cache.misses, cache.hits) == (1, 3)


def test_shared_cache_passes_through_gym_make_and_vector_envs(spy):
    cache = VerdictCache()
    scoring_env = gym.make("meds_gym/Arithmetic-v0", num_problems=5, verdict_cache=cache)
    vector = gym.make_vec(
        "meds_gym/Arithmetic-v0",
        num_envs=2,
        vectorization_mode="sync",
        num_problems=5,
        verdict_cache=cache,
    )
    assert scoring_env.unwrapped.verdict_cache is cache
    for sub_env in vector.envs:
        assert sub_env.unwrapped.verdict_cache is cache
    gold = scoring_env.unwrapped.source[0].answer
    for env in [scoring_env, *vector.envs]:
        env.reset(options={"index": 0})
        assert env.step(f"\\boxed{{{gold}}}")[1] == 1.0
    assert len(spy.calls) == 1
    vector.close()


def test_default_is_a_cache_per_env():
    first, second = (gym.make("meds_gym/Modular-v0").unwrapped for _ in range(2))
    assert isinstance(first.verdict_cache, VerdictCache)
    assert isinstance(second.verdict_cache, VerdictCache)
    assert first.verdict_cache is not second.verdict_cache
    assert first.verdict_cache.maxsize == 65536


@pytest.mark.parametrize("disabled", [False, None])
def test_disabled_cache_verifies_every_time(spy, disabled):
    env = ReasoningEnv(source_of("12"), verdict_cache=disabled)
    assert env.verdict_cache is None
    for _ in range(3):
        assert step(env, "\\boxed{12}")[1] == 1.0
    assert len(spy.calls) == 3
    made = gym.make("meds_gym/AddSub-v0", verdict_cache=disabled)
    assert made.unwrapped.verdict_cache is None


def test_long_answers_are_verified_without_the_cache(spy):
    env = ReasoningEnv(source_of("1"))
    long_answer = "1" + "+0" * MAX_CACHED_ANSWER_CHARS
    for _ in range(2):
        assert step(env, f"\\boxed{{{long_answer}}}")[1] == 0.0  # over the verifier's limit
    assert len(spy.calls) == 2
    assert len(env.verdict_cache) == 0


def test_bad_verdict_cache_argument_raises():
    for bad in ("yes", 1, 0, {}):
        with pytest.raises(TypeError, match="verdict_cache"):
            ReasoningEnv(source_of("1"), verdict_cache=bad)


# -- sources that score answers themselves ----------------------------------------------------


def test_score_answer_hook_is_called_once_per_distinct_answer():
    source = scored_source("42", "17")
    env = ReasoningEnv(source, answer_anchor="answer_tag")
    rewards = [
        step(env, r)[1]
        for r in ("<answer>42</answer>", "x <answer> 42 </answer>", "<answer>4</answer>")
    ]
    assert rewards == [1.0, 1.0, 0.5]
    assert source.scored == ["42", "4"]
    # No answer: the hook decides (it is called each time, nothing is cached).
    for _ in range(2):
        assert step(env, "no tags")[4]["score"] == 0.0
    assert source.scored == ["42", "4", None, None]
    # Another problem with the same answer is scored on its own.
    assert step(env, "<answer>42</answer>", index=1)[1] == 0.0
    assert source.scored[-1] == "42" and len(source.scored) == 5


def test_out_of_range_score_raises_every_time_and_is_never_cached():
    source = scored_source("42")
    env = ReasoningEnv(source, answer_anchor="answer_tag")
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"must lie in \[0, 1\]"):
            step(env, "<answer>bad score</answer>")
    assert len(source.scored) == 2
    assert len(env.verdict_cache) == 0


class ResponseScoredSource(DatasetSource):
    """A source that scores whole responses (``score_response``), correct from 0.5 up."""

    correct_threshold = 0.5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scored: list[str] = []

    def score_response(self, problem, response):
        self.scored.append(response)
        return 1.0 if response == f"step by step: <answer>{problem.answer}</answer>" else 0.5


def test_score_response_sees_the_whole_response_and_the_threshold_reads_correctness():
    source = ResponseScoredSource("whole", [Problem("whole/0", "Q?", "42")])
    env = ReasoningEnv(source, answer_anchor="answer_tag", incorrect_reward=-1.0)
    _, reward, _, _, info = step(env, "step by step: <answer>42</answer>")
    assert (reward, info["score"], info["correct"], info["parsed_answer"]) == (1.0, 1.0, True, "42")
    _, reward, _, _, info = step(env, "<answer>42</answer>")  # same answer, another response
    assert (reward, info["score"], info["correct"], info["parsed_answer"]) == (0.0, 0.5, True, "42")
    assert source.scored == ["step by step: <answer>42</answer>", "<answer>42</answer>"]
    assert len(env.verdict_cache) == 0  # a score of the whole response is never cached
    source.correct_threshold = 0.0
    with pytest.raises(InvalidArgumentError, match=r"whole.correct_threshold.*\(0, 1\]"):
        ReasoningEnv(source)


def test_scorers_of_different_sources_never_share_a_verdict():
    cache = VerdictCache()
    first, second = scored_source("42"), scored_source("42")
    envs = [
        ReasoningEnv(s, answer_anchor="answer_tag", verdict_cache=cache) for s in (first, second)
    ]
    for env in envs * 2:
        assert step(env, "<answer>42</answer>")[1] == 1.0
    assert first.scored == ["42"] and second.scored == ["42"]
    assert (cache.misses, cache.hits) == (2, 2)


def test_unhashable_scorer_is_keyed_by_identity():
    class Scorer:
        __hash__ = None  # unhashable

        def __init__(self):
            self.calls = 0

        def __call__(self, problem, answer):
            self.calls += 1
            return float(answer == problem.answer)

    source = source_of("3")
    source.score_answer = Scorer()
    env = ReasoningEnv(source)
    for _ in range(3):
        assert step(env, "\\boxed{3}")[1] == 1.0
    assert source.score_answer.calls == 1


@pytest.mark.skipif(find_spec("reasoning_gym") is None, reason="reasoning-gym is not installed")
def test_reasoning_gym_env_reuses_and_shares_verdicts():
    cache = VerdictCache()
    kwargs = {"task": "basic_arithmetic", "size": 4, "seed": 0, "verdict_cache": cache}
    env = gym.make("meds_gym/ReasoningGym-v0", answer_anchor="answer_tag", **kwargs)
    other = gym.make("meds_gym/ReasoningGym-v0", **kwargs)
    assert env.unwrapped.verdict_cache is cache is other.unwrapped.verdict_cache
    source = env.unwrapped.source
    calls = []
    real = source.score_answer
    source.score_answer = lambda problem, answer: calls.append(answer) or real(problem, answer)
    gold = source[1].answer
    infos = [step(env, f"<answer>{gold}</answer>", index=1)[4] for _ in range(3)]
    assert [info["score"] for info in infos] == [1.0] * 3
    assert calls == [gold]
    assert infos[0] == infos[2] and infos[0] is not infos[2]
    infos[0]["metadata"]["mutated"] = True
    assert "mutated" not in step(env, f"<answer>{gold}</answer>", index=1)[4]["metadata"]
    # The other env has its own source object: its verdicts are its own, and still right.
    assert step(other, f"\\boxed{{{gold}}}", index=1)[4]["correct"] is True
    assert step(other, "\\boxed{nonsense}", index=1)[4]["correct"] is False


# -- same rewards and info with and without the cache -----------------------------------------

GOLDS = ["12", "-3", "\\frac{1}{2}", "x^2"]
ANSWERS = ["12", " 12 ", "12.0", "-3", "3", "0.5", "1/2", "\\frac{1}{2}", "x^2", "x**2", "", "{}"]
FILLER = st.text(alphabet="ab {}\\$.\n", max_size=30)


@st.composite
def responses(draw):
    """A response: filler, then maybe an answer in one of several formats, then filler."""
    answer = draw(st.sampled_from(ANSWERS))
    form = draw(
        st.sampled_from(
            ["\\boxed{%s}", "\\fbox{%s}", "<answer>%s</answer>", "Final: %s", "\\boxed{%s", "%s"]
        )
    )
    return draw(FILLER) + (form % answer) + draw(FILLER)


ANCHORS = {
    "boxed": "boxed",
    "answer_tag": "answer_tag",
    "regex": AnswerAnchor.from_regex(r"Final: (\S*)"),
}
SOURCES = {"math": lambda: source_of(*GOLDS), "scored": lambda: scored_source(*GOLDS)}
CACHED = {
    (anchor, kind): ReasoningEnv(
        SOURCES[kind](), answer_anchor=ANCHORS[anchor], max_response_length=40
    )
    for anchor in ANCHORS
    for kind in SOURCES
}


@pytest.mark.parametrize(("anchor", "kind"), sorted(CACHED))
@settings(max_examples=FUZZ_EXAMPLES)
@given(steps=st.lists(st.tuples(st.integers(0, len(GOLDS) - 1), responses()), max_size=6))
def test_info_is_identical_with_and_without_the_cache(anchor, kind, steps):
    cached = CACHED[(anchor, kind)]  # kept across examples: later examples hit the cache
    uncached = ReasoningEnv(
        cached.source,
        answer_anchor=ANCHORS[anchor],
        max_response_length=40,
        verdict_cache=False,
    )
    hits, answered_again = cached.verdict_cache.hits, 0
    for number, (index, response) in enumerate(steps + steps):
        outcome = step(cached, response, index)
        assert outcome == step(uncached, response, index)
        if number >= len(steps) and outcome[4]["parsed_answer"] is not None:
            answered_again += 1
    # Every answered response of the second pass was verified in the first: all are hits.
    assert cached.verdict_cache.hits - hits >= answered_again


def test_cached_info_is_a_fresh_dict():
    env = ReasoningEnv(scored_source("7"))
    first = step(env, "\\boxed{7}")[4]
    first["correct"] = "tampered"
    first["extra"]["tags"].append("tampered")
    second = step(env, "\\boxed{7}")[4]
    assert second["correct"] is True
    assert second["extra"] == {"id": "scored/0", "tags": ["a", "b"]}


def test_response_overlong_depends_on_the_whole_action():
    env = ReasoningEnv(source_of("12"), max_response_length=20)
    short = step(env, "\\boxed{12}")[4]
    long = step(env, "x" * 30 + "\\boxed{12}")[4]
    assert (short["response_overlong"], long["response_overlong"]) == (False, True)
    assert short["correct"] and long["correct"]
    assert env.verdict_cache.hits == 1


# -- the cache itself --------------------------------------------------------------------------


def test_lru_bound_is_respected():
    cache = VerdictCache(maxsize=2)
    computed = []

    def value(key):
        return lambda: computed.append(key) or key.upper()

    assert cache.get_or_compute("a", value("a")) == "A"
    assert cache.get_or_compute("b", value("b")) == "B"
    assert cache.get_or_compute("a", value("a")) == "A"  # hit: "a" is now the most recent
    assert cache.get_or_compute("c", value("c")) == "C"  # evicts "b", the least recent
    assert len(cache) == 2
    assert cache.get_or_compute("a", value("a")) == "A"
    assert cache.get_or_compute("b", value("b")) == "B"  # recomputed
    assert computed == ["a", "b", "c", "b"]
    assert (cache.hits, cache.misses, len(cache)) == (2, 4, 2)
    cache.clear()
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_lru_bound_through_an_env(spy):
    env = ReasoningEnv(source_of("1"), verdict_cache=VerdictCache(maxsize=2))
    for answer in ("1", "2", "3", "1"):
        step(env, f"\\boxed{{{answer}}}")
    assert len(env.verdict_cache) == 2
    assert [predicted for predicted, _ in spy.calls] == ["1", "2", "3", "1"]


def test_failed_computation_is_not_cached():
    cache = VerdictCache()

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cache.get_or_compute("k", fail)
    assert len(cache) == 0 and cache.misses == 1
    assert cache.get_or_compute("k", lambda: 1) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_bad_maxsize_raises(bad):
    with pytest.raises(InvalidArgumentError, match="maxsize"):
        VerdictCache(maxsize=bad)


def test_pickle_and_deepcopy_give_independent_copies():
    cache = VerdictCache(maxsize=8)
    cache.get_or_compute("k", lambda: 1)
    for clone in (pickle.loads(pickle.dumps(cache)), copy.deepcopy(cache)):
        assert (len(clone), clone.misses, clone.maxsize) == (1, 1, 8)
        assert clone.get_or_compute("k", lambda: 2) == 1
        clone.get_or_compute("other", lambda: 3)
        assert len(cache) == 1
    assert "maxsize=8" in repr(cache)


def test_threads_share_one_cache_consistently():
    cache = VerdictCache(maxsize=50)
    errors = []

    def work(offset):
        try:
            for i in range(2000):
                key = (i + offset) % 80
                assert cache.get_or_compute(key, lambda key=key: key * 2) == key * 2
        except AssertionError as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.hits + cache.misses == 8000
    assert len(cache) == 50
