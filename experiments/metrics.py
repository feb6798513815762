"""Metrics of the experiments: error diversity and cluster agreement.

Intervals over seeds are in ``agents.report`` (the comparison command reports them too).

All functions are pure. Wrong answers are labelled by ``agents.evaluation.error_mode_label``, the
labeller that the training log and ``agents.evaluate`` use too. Cluster labels follow the HDBSCAN
convention of the MEDS memory: non-negative ints are clusters, -1 is noise, and -2 marks a rollout
MEDS did not assign (a problem's first visit, a group left out by the dynamic-sampling filter, or
a response without a fingerprint).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.evaluation import (
    adjusted_rand_index,
    cluster_purity,
    dominant_mode_share,
    effective_mode_count,
)
from meds_gym.errors import InvalidArgumentError


def pairwise_agreement(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> float:
    """Share of pairs on which "same predicted cluster" and "same true label" agree (Rand index).

    This is the MEDS paper's agreement between clusters and a judge's error categories: over all
    pairs of wrong rollouts, how often both say "same" or both say "different".

    Args:
        labels_true: (N,) true labels.
        labels_pred: (N,) predicted cluster labels.

    Returns:
        The share in [0, 1]; NaN when there are fewer than 2 points (no pair).
    """
    t, p = np.asarray(labels_true), np.asarray(labels_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise InvalidArgumentError(
            "labels_pred", f"a 1-D sequence of the same length as labels_true ({t.shape})", p.shape
        )
    n = t.shape[0]
    if n < 2:
        return float("nan")
    same_true = t[:, None] == t[None, :]  # (N, N)
    same_pred = p[:, None] == p[None, :]  # (N, N)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)  # each unordered pair once
    return float((same_true == same_pred)[upper].mean())


def cluster_agreement_scores(
    problem_ids: Sequence[str], mode_labels: Sequence[str], clusters: npt.ArrayLike
) -> dict[str, float]:
    """Agreement of MEDS clusters with the true error modes of wrong rollouts.

    MEDS clusters each problem's errors separately, so labels are taken per problem. ARI and purity
    are computed on the pooled rollouts with ``"<problem>:<label>"`` labels (as
    ``agents.evaluation.cluster_agreement`` does); the pairwise agreement counts only pairs of the
    same problem (a pair of two problems is "different" on both sides by construction and would
    inflate it). Unassigned rollouts (cluster -2) are left out; noise (-1) is one label per problem.

    Args:
        problem_ids: (B,) problem of each wrong rollout.
        mode_labels: (B,) its true error mode (``agents.evaluation.error_mode_label``).
        clusters: (B,) the MEDS cluster it was voted into.

    Returns:
        ``ari``, ``purity``, ``pairwise`` and ``pairs`` (how many same-problem pairs were counted);
        the scores are NaN when undefined (fewer than 2 assigned rollouts, or no pair).
    """
    labels = np.asarray(clusters)
    if not len(problem_ids) == len(mode_labels) == labels.shape[0]:
        raise InvalidArgumentError(
            "clusters",
            f"problem_ids, mode_labels and clusters of one length ({len(problem_ids)})",
            (len(problem_ids), len(mode_labels), labels.shape[0]),
        )
    keep = [int(i) for i in np.flatnonzero(labels >= -1)]
    nan = float("nan")
    if len(keep) < 2:
        return {"ari": nan, "purity": nan, "pairwise": nan, "pairs": 0.0}
    true = np.asarray([f"{problem_ids[i]}:{mode_labels[i]}" for i in keep])
    pred = np.asarray([f"{problem_ids[i]}:{labels[i]}" for i in keep])
    by_problem: dict[str, list[int]] = defaultdict(list)
    for position, i in enumerate(keep):
        by_problem[problem_ids[i]].append(position)
    agree, pairs = 0.0, 0
    for rows in by_problem.values():
        m = len(rows)
        if m >= 2:
            count = m * (m - 1) // 2
            agree += pairwise_agreement(true[rows], pred[rows]) * count
            pairs += count
    return {
        "ari": adjusted_rand_index(true, pred),
        "purity": cluster_purity(true, pred),
        "pairwise": agree / pairs if pairs else nan,
        "pairs": float(pairs),
    }


def error_summary(
    problem_ids: Sequence[str],
    answers: Sequence[str | None],
    correct: Sequence[bool],
    mode_labels: Sequence[str | None],
) -> dict[str, float]:
    """Diversity of a policy's mistakes on a set of sampled responses.

    Args:
        problem_ids: (B,) problem of each response.
        answers: (B,) parsed final answers (None: no answer).
        correct: (B,) verdicts.
        mode_labels: (B,) true error mode of each wrong response
            (``agents.evaluation.error_mode_label``; ignored where correct).

    Returns:
        ``wrong_share``; ``distinct_wrong_answers`` (distinct parsed wrong answers per problem,
        averaged over every problem, 0 for a problem never answered wrongly; no answer is not an
        answer); ``dominant_error_share`` (share of mode-labelled wrong responses in their
        problem's currently most frequent error mode) and ``effective_error_modes`` (exp of the
        entropy of each problem's mode shares, averaged); unexplained answers are not a mode, and
        both are NaN when no wrong response has a mode.
    """
    if not len(problem_ids) == len(answers) == len(correct) == len(mode_labels):
        raise InvalidArgumentError(
            "answers",
            f"problem_ids, answers, correct and mode_labels of one length ({len(problem_ids)})",
            (len(problem_ids), len(answers), len(correct), len(mode_labels)),
        )
    if not problem_ids:
        raise InvalidArgumentError("problem_ids", "a non-empty sequence", problem_ids)
    wrong_answers: dict[str, set[str]] = {pid: set() for pid in problem_ids}
    wrong_ids, wrong_modes = [], []
    for pid, answer, ok, mode in zip(problem_ids, answers, correct, mode_labels, strict=True):
        if ok:
            continue
        wrong_ids.append(pid)
        wrong_modes.append(str(mode))
        if answer is not None:
            wrong_answers[pid].add(answer)
    return {
        "wrong_share": len(wrong_ids) / len(problem_ids),
        "distinct_wrong_answers": float(np.mean([len(s) for s in wrong_answers.values()])),
        "dominant_error_share": dominant_mode_share(wrong_ids, wrong_modes),
        "effective_error_modes": effective_mode_count(wrong_ids, wrong_modes),
    }


def finite_or_none(value: Any) -> Any:
    """A JSON-safe value: NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value
