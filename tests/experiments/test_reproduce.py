"""experiments/reproduce.py: its metrics against hand-computed values and scikit-learn, and a quick
end-to-end run whose outputs are checked for structure and range."""

import json
import math

import numpy as np
import pytest

from agents.evaluation import UNKNOWN_MODE, error_mode_label
from experiments.metrics import (
    cluster_agreement_scores,
    error_summary,
    finite_or_none,
    pairwise_agreement,
)
from meds_gym.errors import InvalidArgumentError
from meds_gym.tasks.base import Problem

PROBLEM = Problem(
    problem_id="demo/0",
    question="What is 2+3*4?",
    answer="14",
    error_modes={"precedence_ignored": "20", "sign_flip": "20", "carry_dropped": "4"},
)


def test_error_mode_label_joins_every_mode_that_gives_the_answer():
    assert error_mode_label(PROBLEM, "20") == "precedence_ignored+sign_flip"
    assert error_mode_label(PROBLEM, " 04") == "carry_dropped"
    assert error_mode_label(PROBLEM, "99") == UNKNOWN_MODE
    assert error_mode_label(PROBLEM, "x") == UNKNOWN_MODE
    assert error_mode_label(PROBLEM, None) == UNKNOWN_MODE


def test_pairwise_agreement_by_hand():
    # pairs of (true a a b b, pred 0 0 0 1): (0,1) same/same agree, (0,2) diff/same no,
    # (0,3) diff/diff agree, (1,2) diff/same no, (1,3) diff/diff agree, (2,3) same/diff no.
    assert pairwise_agreement(["a", "a", "b", "b"], [0, 0, 0, 1]) == pytest.approx(3 / 6)
    assert pairwise_agreement(["a", "b", "c"], [5, 6, 7]) == 1.0
    assert pairwise_agreement(["a", "a", "a"], [0, 0, 0]) == 1.0
    # one cluster: agreement is the share of same-mode pairs (the paper's single-cluster control)
    assert pairwise_agreement(["a", "a", "b"], [0, 0, 0]) == pytest.approx(1 / 3)
    assert math.isnan(pairwise_agreement(["a"], [0]))
    with pytest.raises(InvalidArgumentError, match="labels_pred"):
        pairwise_agreement(["a", "b"], [0])


def test_pairwise_agreement_is_the_rand_index_of_scikit_learn():
    from sklearn.metrics import rand_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        true, pred = rng.integers(0, 3, n), rng.integers(-1, 4, n)
        assert pairwise_agreement(true, pred) == pytest.approx(rand_score(true, pred))


def test_cluster_agreement_scores_by_hand_and_against_scikit_learn():
    from sklearn.metrics import adjusted_rand_score

    ids = ["p", "p", "p", "p", "q", "q", "q"]
    modes = ["carry", "carry", "sign", "sign", "carry", "carry", "other"]
    clusters = [0, 0, 0, 1, 0, 0, -2]  # the last rollout was never assigned: left out
    scores = cluster_agreement_scores(ids, modes, clusters)
    true = [f"{p}:{m}" for p, m in zip(ids[:6], modes[:6], strict=True)]
    pred = [f"{p}:{c}" for p, c in zip(ids[:6], clusters[:6], strict=True)]
    assert scores["ari"] == pytest.approx(adjusted_rand_score(true, pred))
    # p:0 holds carry, carry, sign (majority 2), p:1 holds sign (1), q:0 holds carry, carry (2)
    assert scores["purity"] == pytest.approx(5 / 6)
    # problem p: 3 of 6 pairs agree (hand example above); problem q: its 1 pair agrees
    assert scores["pairs"] == 7
    assert scores["pairwise"] == pytest.approx((3 + 1) / 7)


def test_cluster_agreement_scores_edge_cases():
    nan = cluster_agreement_scores(["p", "p"], ["a", "a"], [-2, 0])
    assert math.isnan(nan["ari"]) and math.isnan(nan["pairwise"]) and nan["pairs"] == 0
    # two problems, one rollout each: ARI and purity exist, no same-problem pair does
    lone = cluster_agreement_scores(["p", "q"], ["a", "a"], [0, 0])
    assert lone["purity"] == 1.0 and math.isnan(lone["pairwise"])
    with pytest.raises(InvalidArgumentError, match="clusters"):
        cluster_agreement_scores(["p"], ["a", "b"], [0, 0])


def test_error_summary_by_hand():
    ids = ["p", "p", "p", "p", "q", "q"]
    answers = ["14", "20", "20", "4", "7", None]
    correct = [True, False, False, False, True, False]
    modes = [None, "prec", "prec", "carry", None, UNKNOWN_MODE]
    summary = error_summary(ids, answers, correct, modes)
    assert summary["wrong_share"] == pytest.approx(4 / 6)
    # p: wrong answers {20, 4}; q: none parsed (no answer is not an answer)
    assert summary["distinct_wrong_answers"] == pytest.approx((2 + 0) / 2)
    # p: 2 of its 3 wrong in "prec"; q: its 1 wrong is "other", which is not a mode
    assert summary["dominant_error_share"] == pytest.approx(2 / 3)
    # exp of the entropy of p's mode shares (2/3, 1/3) = 1.5 ** (2/3) * 3 ** (1/3)
    assert summary["effective_error_modes"] == pytest.approx(1.5 ** (2 / 3) * 3 ** (1 / 3))
    never_wrong = error_summary(["p"], ["14"], [True], [None])
    assert never_wrong["distinct_wrong_answers"] == 0 and math.isnan(
        never_wrong["dominant_error_share"]
    )
    with pytest.raises(InvalidArgumentError, match="answers"):
        error_summary(["p"], [], [True], [None])


def test_finite_or_none_makes_json_safe_values():
    value = {"a": float("nan"), "b": [1.0, float("inf")], "c": (2, "x")}
    assert finite_or_none(value) == {"a": None, "b": [1.0, None], "c": [2, "x"]}


def test_random_fingerprint_recorder_replaces_only_present_fingerprints():
    pytest.importorskip("torch")
    from experiments.reproduce import RunRecorder

    fingerprints = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]], dtype=np.float32)
    noisy = RunRecorder(noise_seed=0).fingerprints(fingerprints)
    assert np.isnan(noisy[1]).all() and np.isfinite(noisy[[0, 2]]).all()
    assert not np.allclose(noisy[[0, 2]], fingerprints[[0, 2]])
    assert np.array_equal(fingerprints[1], [np.nan, np.nan], equal_nan=True)  # input untouched
    plain = RunRecorder(noise_seed=None)
    assert plain.fingerprints(fingerprints) is fingerprints
    info = {"cluster": np.array([0, -2, 1]), "penalty": np.zeros(3)}
    plain.meds_shaped(["p", "p", "p"], ["20", None, "4"], [False, True, False], info)
    assert plain.batches == [
        {
            "problem_ids": ["p", "p", "p"],
            "answers": ["20", None, "4"],
            "correct": [False, True, False],
            "clusters": [0, -2, 1],
        }
    ]


def test_evaluation_and_reproduction_agree_on_the_dominant_error_share():
    # The same samples summarised by agents.evaluate, by the training log's rollout_metrics and by
    # the reproduction: one labeller, one share. " 04" is the mode whose answer is "4" (the toy
    # tasks compare answers as integers); an exact string match called it "other", which lumped
    # it with the unexplained "99" and reported a share of 1.0 on problem demo/0.
    pytest.importorskip("torch")
    from agents.evaluate import summarise_samples
    from agents.evaluation import rollout_metrics
    from agents.run_setup import ProblemSamples
    from experiments.reproduce import split_metrics

    other = Problem(problem_id="demo/1", question="?", answer="7", error_modes={"carry": "8"})
    samples = ProblemSamples(
        n=3,
        problems=[PROBLEM, other],
        problem_ids=["demo/0"] * 3 + ["demo/1"] * 3,
        answers=[" 04", "99", "14", "8", "8", "7"],
        correct=[False, False, True, False, False, True],
    )
    evaluated = summarise_samples(samples)
    reproduced = split_metrics(samples)
    logged = rollout_metrics(
        samples.problem_ids,
        samples.answers,
        samples.correct,
        np.asarray(samples.correct, dtype=float),
        samples.response_problems,
    )
    # demo/0: carry_dropped once ("other" is not a mode); demo/1: carry twice -> (1 + 2) / 3
    assert evaluated["dominant_error_share"] == pytest.approx(1.0)
    assert reproduced["dominant_error_share"] == evaluated["dominant_error_share"]
    assert logged["charts/dominant_error_share"] == evaluated["dominant_error_share"]
    assert evaluated["error_modes"] == {"carry": 2, "carry_dropped": 1, UNKNOWN_MODE: 1}
    assert {k: v for k, v in reproduced.items() if k.startswith("pass@")} == {
        k: v for k, v in evaluated.items() if k.startswith("pass@")
    }


def test_the_warm_up_covers_fresh_problems_and_never_a_run_problem():
    from experiments.reproduce import Args, tiny_config

    args = Args()
    tiny = tiny_config(args, "meds_gym/Arithmetic-v0")
    assert (tiny.num_layers, tiny.steps, tiny.prompt_format) == (8, 800, "compact")
    assert (tiny.num_problems, tiny.task_seed) == (args.warmup_problems, 1)
    # every training (task seed 0, train split) and held-out (test split) problem is excluded
    assert (tiny.exclude_seed, tiny.exclude_problems) == (0, args.test_problems)


@pytest.mark.slow
def test_quick_reproduction_writes_finite_results(tmp_path):
    from experiments.reproduce import Args, reproduce

    # The quick configuration: a 2-layer model warmed up briefly on fresh problems, one seed of
    # the primary methods. It checks the pipeline, not the model.
    args = Args(output_dir=str(tmp_path), quick=True, workers=2)  # runs in 2 worker processes
    report = reproduce(args)
    results = json.loads((tmp_path / "results.json").read_text())
    assert report == tmp_path / "report.md"
    text = report.read_text()
    assert "**Primary (pre-registered)**" in text and "held-out problems" in text
    for name in ("pass_at_k_Arithmetic_test", "pass_at_k_Arithmetic_train"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert (tmp_path / "dominant_error_share.png").is_file()
    assert (tmp_path / "cluster_agreement.png").is_file()
    protocol = results["protocol"]
    assert protocol["primary"]["method"] == "dapo_meds_all_wrong"
    assert protocol["fingerprint_layers"] == [2] and protocol["num_layers"] == 2
    assert protocol["train_problems_per_family"] == 8 and protocol["iterations"] == 2
    assert protocol["min_visits_per_problem"] >= 1  # 2 iterations x 4 prompts over 8 problems
    assert 0.0 <= protocol["heldout_initial_pass_at_1"]["Arithmetic"] <= 1.0
    runs = results["runs"]
    assert {(r["method"], r["seed"]) for r in runs} == {
        ("initial", 0),
        ("dapo", 0),
        ("dapo_meds", 0),
        ("dapo_meds_all_wrong", 0),
    }
    for run in runs:
        for split in ("test", "train"):
            metrics = run["eval"][split]
            curve = [metrics[f"pass@{k}"] for k in (1, 2, 4)]
            assert all(0.0 <= v <= 1.0 for v in curve)
            assert curve == sorted(curve)  # pass@k never falls as k grows
            assert metrics["distinct_wrong_answers"] >= 0.0
            share = metrics["dominant_error_share"]
            assert share is None or 0.0 < share <= 1.0
        if run["method"] != "initial":
            assert len(run["dominant_error_share_training"]) == args.iterations
    meds = next(r for r in runs if r["method"] == "dapo_meds")
    assert 0.0 <= meds["top1_eigen_ratio"] <= 1.0
    for metric in ("purity", "pairwise"):
        value = meds["cluster_agreement"][metric]
        assert value is None or 0.0 <= value <= 1.0
    summary = results["summary"]["Arithmetic"]["eval"]["test"]["dapo_meds"]["pass@1"]
    assert summary[0] == pytest.approx(meds["eval"]["test"]["pass@1"])
    # a rerun resumes: every run is found on disk and none is trained again
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    reproduce(args)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == before


@pytest.mark.slow
def test_runs_in_worker_processes_give_the_same_results_as_in_process(tmp_path):
    from experiments.reproduce import Args, reproduce

    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        reproduce(Args(output_dir=str(out), quick=True, workers=workers))
        runs = json.loads((out / "results.json").read_text())["runs"]
        outputs[workers] = {
            (r["method"], r["seed"]): {k: v for k, v in r.items() if k != "seconds"} for r in runs
        }
        assert (out / "logs").is_dir() == (workers > 1)
    assert outputs[1] == outputs[2]
