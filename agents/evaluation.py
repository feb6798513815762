"""Evaluation metrics: unbiased pass@k, answer diversity, error modes, cluster agreement.

All functions are pure numpy. :func:`error_mode_label` is the one labeller of wrong answers that
the training log, ``agents.evaluate`` and ``experiments/reproduce.py`` share. Cluster labels follow
the HDBSCAN convention: non-negative ints are clusters, -1 is noise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError
from meds_gym.tasks.base import Problem
from meds_gym.tasks.procedural import label_error_modes


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from n samples of which c are correct (Chen et al. 2021).

    ``1 - C(n - c, k) / C(n, k)``, computed as ``1 - prod_{i = n-c+1}^{n} (1 - k / i)`` so that
    no binomial coefficient is ever formed (they overflow for n in the hundreds).

    Args:
        n: Number of samples drawn for the problem (n >= 1).
        c: Number of them that are correct (0 <= c <= n).
        k: The k of pass@k (1 <= k <= n).

    Returns:
        The probability that at least one of k samples drawn without replacement is correct.
    """
    if n < 1:
        raise InvalidArgumentError("n", "an int >= 1", n)
    if not 0 <= c <= n:
        raise InvalidArgumentError("c", f"an int in [0, n={n}]", c)
    if not 1 <= k <= n:
        raise InvalidArgumentError("k", f"an int in [1, n={n}]", k, "Draw at least k samples.")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """Mean unbiased pass@k over problems, each sampled n times.

    Args:
        correct_counts: Number of correct samples per problem.
        n: Samples per problem.
        k: The k of pass@k.

    Returns:
        The average of :func:`pass_at_k` over problems.
    """
    if len(correct_counts) == 0:
        raise InvalidArgumentError("correct_counts", "a non-empty sequence", correct_counts)
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct_counts]))


def distinct_answers(problem_ids: Sequence[str], answers: Sequence[str | None]) -> dict[str, int]:
    """Number of distinct final answers per problem (a diversity measure).

    Args:
        problem_ids: (B,) problem id of each rollout.
        answers: (B,) parsed final answer of each rollout; None (no answer) is not counted.

    Returns:
        problem id -> number of distinct non-None answers.
    """
    if len(problem_ids) != len(answers):
        raise InvalidArgumentError(
            "answers", f"a sequence of length len(problem_ids)={len(problem_ids)}", len(answers)
        )
    seen: dict[str, set[str]] = defaultdict(set)
    for pid, answer in zip(problem_ids, answers, strict=True):
        seen[pid]  # register problems with no parsed answer at all
        if answer is not None:
            seen[pid].add(answer)
    return {pid: len(values) for pid, values in seen.items()}


def top1_eigen_ratio(features: np.ndarray) -> float:
    """Largest eigenvalue over trace of the covariance of fingerprints.

    Near 1: the fingerprints vary along one direction only (collapsed reasoning); lower: more
    spread. Rows with any NaN (rollouts without a fingerprint) are dropped.

    Args:
        features: (N, L) fingerprints.

    Returns:
        The ratio in [0, 1]; NaN if fewer than 2 usable rows or zero total variance.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidArgumentError("features", "a 2-D array of shape (N, L)", x.shape)
    x = x[~np.isnan(x).any(axis=1)]  # (N', L)
    if x.shape[0] < 2:
        return float("nan")
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])  # (L, L)
    trace = float(np.trace(cov))
    if trace <= 0.0:
        return float("nan")
    return float(np.linalg.eigvalsh(cov)[-1] / trace)


def _contingency(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)  # (classes, clusters)
    np.add.at(table, (t, p), 1)
    return table


def _check_labels(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> tuple:
    t = np.asarray(labels_true)
    p = np.asarray(labels_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise InvalidArgumentError(
            "labels_pred", f"a 1-D sequence of the same length as labels_true ({t.shape})", p.shape
        )
    return t, p


def adjusted_rand_index(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Adjusted Rand index between true error modes and predicted clusters (Hubert & Arabie 1985).

    Every label, -1 included, is treated as one group; pass noise points with unique labels if they
    should count as singletons.

    Args:
        labels_true: (N,) true labels (any hashable values, e.g. error-mode names).
        labels_pred: (N,) predicted cluster labels.

    Returns:
        ARI in [-1, 1]: 1 for identical partitions, about 0 for random ones. 1.0 when both
        partitions are trivial in the same way (under 2 points, or both all-one / all-distinct).
    """
    t, p = _check_labels(labels_true, labels_pred)
    n = t.shape[0]
    if n < 2:
        return 1.0
    table = _contingency(t, p)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    index = pairs(table)
    rows = pairs(table.sum(axis=1))
    cols = pairs(table.sum(axis=0))
    total = n * (n - 1) / 2
    expected = rows * cols / total
    maximum = (rows + cols) / 2
    if maximum == expected:  # both partitions trivial (all one cluster, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def cluster_purity(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Purity: share of points whose predicted cluster's majority true label is their own.

    Args:
        labels_true: (N,) true labels.
        labels_pred: (N,) predicted cluster labels.

    Returns:
        Purity in (0, 1]; NaN for empty input.
    """
    t, p = _check_labels(labels_true, labels_pred)
    if t.shape[0] == 0:
        return float("nan")
    table = _contingency(t, p)
    return float(table.max(axis=0).sum() / t.shape[0])


UNKNOWN_MODE = "other"
"""The label of a wrong answer that no known error mode of its problem produces (or no answer)."""


def error_mode_label(problem: Problem, answer: str | None) -> str:
    """The true error mode of one wrong answer, as one label: the project's one error labeller.

    The toy tasks define the truth (:func:`meds_gym.tasks.procedural.label_error_modes`): answers
    are compared as integers (``" 04"`` is the mode whose answer is ``"4"``), and every mode that
    gives the answer counts; they are joined with ``+`` so that two rollouts with the same wrong
    answer always share a label.

    Args:
        problem: The rollout's problem (its ``answer`` and ``error_modes`` are read; a benchmark
            problem has none, so its wrong answers are all :data:`UNKNOWN_MODE`).
        answer: The parsed final answer; None (no answer) and unexplained answers are
            :data:`UNKNOWN_MODE`.

    Returns:
        ``"carry"``, ``"carry+precedence"``, ... or :data:`UNKNOWN_MODE`.
    """
    if answer is None:
        return UNKNOWN_MODE
    return "+".join(label_error_modes(problem, answer)) or UNKNOWN_MODE


def error_mode_labels(answers: Sequence[str | None], problems: Sequence[Problem]) -> list[str]:
    """:func:`error_mode_label` of each wrong answer.

    Args:
        answers: (B,) parsed final answers of wrong rollouts (None: no answer).
        problems: (B,) each rollout's problem.

    Returns:
        (B,) the labels.
    """
    if len(answers) != len(problems):
        raise InvalidArgumentError(
            "problems", f"a sequence of length len(answers)={len(answers)}", len(problems)
        )
    return [error_mode_label(p, a) for a, p in zip(answers, problems, strict=True)]


def pass_at_k_curve(correct_counts: Sequence[int], n: int) -> dict[str, float]:
    """``pass@k`` (:func:`mean_pass_at_k`) for k = 1, 2, 4, ... <= n.

    Args:
        correct_counts: Number of correct samples per problem.
        n: Samples per problem.

    Returns:
        ``{"pass@1": ..., "pass@2": ..., ...}`` in increasing k.
    """
    curve = {}
    k = 1
    while k <= n:
        curve[f"pass@{k}"] = mean_pass_at_k(correct_counts, n, k)
        k *= 2
    return curve


def _mode_counts(problem_ids: Sequence[str], labels: Sequence[str]) -> list[Counter[str]]:
    """Per problem, how many rollouts each error mode holds (unexplained answers left out)."""
    if len(problem_ids) != len(labels):
        raise InvalidArgumentError(
            "labels", f"a sequence of length len(problem_ids)={len(problem_ids)}", len(labels)
        )
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for pid, label in zip(problem_ids, labels, strict=True):
        if label != UNKNOWN_MODE:
            counts[pid][label] += 1
    return list(counts.values())


def dominant_mode_share(problem_ids: Sequence[str], labels: Sequence[str]) -> float:
    """Share of mode-labelled rollouts whose mode is the *currently* most frequent of their problem.

    Applied to the error-mode labels of wrong rollouts, it measures how much a policy's mistakes
    concentrate on one mode per problem (1.0: every problem's wrong answers share one mode). The
    largest mode is whichever is largest in these rollouts, so one mode taking another's place
    does not count as diversity. Unexplained answers (:data:`UNKNOWN_MODE`: slips, no answer) are
    not a mode and are left out.

    Args:
        problem_ids: (B,) problem of each rollout.
        labels: (B,) label of each rollout.

    Returns:
        The share in (0, 1]; NaN when no rollout has a mode.
    """
    counts = _mode_counts(problem_ids, labels)
    total = sum(sum(c.values()) for c in counts)
    if not total:
        return float("nan")
    return sum(c.most_common(1)[0][1] for c in counts) / total


def effective_mode_count(problem_ids: Sequence[str], labels: Sequence[str]) -> float:
    """Effective number of error modes per problem: ``exp`` of the entropy of its mode shares.

    1 when one mode holds all of a problem's mode-labelled rollouts, M when M modes hold equal
    shares; averaged over the problems that have a mode-labelled rollout. Unexplained answers
    (:data:`UNKNOWN_MODE`) are left out, as in :func:`dominant_mode_share`.

    Args:
        problem_ids: (B,) problem of each rollout.
        labels: (B,) label of each rollout.

    Returns:
        The mean effective number, >= 1; NaN when no rollout has a mode.
    """
    counts = _mode_counts(problem_ids, labels)
    if not counts:
        return float("nan")
    values = []
    for c in counts:
        shares = np.array(list(c.values()), dtype=np.float64) / sum(c.values())
        values.append(float(np.exp(-(shares * np.log(shares)).sum())))
    return float(np.mean(values))


def rollout_metrics(
    problem_ids: Sequence[str],
    answers: Sequence[str | None],
    correct: Sequence[bool],
    rewards: npt.ArrayLike,
    problems: Sequence[Problem],
) -> dict[str, float]:
    """The training log's ``charts/`` metrics of one iteration's sampled rollouts.

    Args:
        problem_ids: (B,) problem of each rollout.
        answers: (B,) parsed final answers (None: no answer).
        correct: (B,) the env's verdicts.
        rewards: (B,) the env's rewards.
        problems: (B,) each rollout's problem (a benchmark problem knows no error modes).

    Returns:
        ``charts/accuracy`` (share of right rollouts), ``charts/reward_mean`` (on the env's
        reward scale), ``charts/distinct_answers`` (per problem, averaged) and, when some
        rollout is wrong, ``charts/dominant_error_share`` (:func:`dominant_mode_share` of the
        wrong rollouts' :func:`error_mode_label`: how much the mistakes concentrate on one mode)
        and ``charts/effective_error_modes`` (:func:`effective_mode_count`); both left out when
        no wrong answer has a known mode.
    """
    metrics = {
        "charts/accuracy": float(np.mean(np.asarray(correct, dtype=np.float64))),
        "charts/reward_mean": float(np.mean(np.asarray(rewards, dtype=np.float64))),
        "charts/distinct_answers": float(
            np.mean(list(distinct_answers(problem_ids, answers).values()))
        ),
    }
    wrong = [i for i, ok in enumerate(correct) if not ok]
    if wrong:
        modes = error_mode_labels([answers[i] for i in wrong], [problems[i] for i in wrong])
        wrong_ids = [problem_ids[i] for i in wrong]
        share = dominant_mode_share(wrong_ids, modes)
        if np.isfinite(share):  # no NaN in the log: a batch without a known mode has no key
            metrics["charts/dominant_error_share"] = share
            metrics["charts/effective_error_modes"] = effective_mode_count(wrong_ids, modes)
    return metrics


def cluster_agreement(
    problem_ids: Sequence[str],
    answers: Sequence[str | None],
    problems: Sequence[Problem],
    clusters: npt.ArrayLike,
) -> float:
    """Adjusted Rand index between MEDS clusters and true error modes of wrong rollouts.

    Labels are taken per problem (``"<problem id>:<label>"``), since MEDS clusters each problem's
    errors separately. Rollouts MEDS did not assign (cluster -2: a problem's first visit, or no
    fingerprint) are left out.

    Args:
        problem_ids: (B,) problem of each wrong rollout.
        answers: (B,) their parsed answers.
        problems: (B,) their problems.
        clusters: (B,) the MEDS cluster each was voted into (-1 noise, -2 not assigned).

    Returns:
        The ARI, or NaN when fewer than 2 rollouts were assigned.
    """
    labels = np.asarray(clusters)
    voted = labels >= -1
    if voted.sum() < 2:
        return float("nan")
    modes = error_mode_labels(answers, problems)
    true = [f"{pid}:{m}" for pid, m in zip(problem_ids, modes, strict=True)]
    pred = [f"{pid}:{c}" for pid, c in zip(problem_ids, labels, strict=True)]
    return adjusted_rand_index(np.asarray(true)[voted], np.asarray(pred)[voted])


def meds_metrics(
    problem_ids: Sequence[str],
    answers: Sequence[str | None],
    correct: Sequence[bool],
    problems: Sequence[Problem],
    clusters: npt.ArrayLike,
    penalties: npt.ArrayLike,
) -> dict[str, float]:
    """The training log's ``meds/`` metrics of one batch that MEDS shaped.

    Args:
        problem_ids: (B,) problem of each rollout.
        answers: (B,) parsed final answers.
        correct: (B,) the env's verdicts.
        problems: (B,) each rollout's problem.
        clusters: (B,) MEDS clusters (-2: not shaped).
        penalties: (B,) MEDS penalties.

    Returns:
        ``meds/penalty_mean_wrong``, ``meds/penalised_share`` and ``meds/cluster_ari`` (the
        :func:`cluster_agreement` of the wrong rollouts; NaN when undefined).
    """
    wrong = [i for i, ok in enumerate(correct) if not ok]
    penalty = np.asarray(penalties, dtype=np.float64)
    return {
        "meds/penalty_mean_wrong": float(penalty[wrong].mean()) if wrong else 0.0,
        "meds/penalised_share": float((penalty > 0).mean()),
        "meds/cluster_ari": cluster_agreement(
            [problem_ids[i] for i in wrong],
            [answers[i] for i in wrong],
            [problems[i] for i in wrong],
            np.asarray(clusters)[wrong],
        ),
    }
