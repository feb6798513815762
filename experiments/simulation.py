"""A simulated policy with known error modes: where can MEDS's mechanism matter at all?

No language model. Each problem has a gold answer, ``num_modes`` structured error modes (a buggy
procedure each, with its own wrong answer) and unstructured slips (a fresh random wrong number
each time). The policy is a table of logits per problem over ``[gold, mode_1, ..., mode_M,
slip]``. A rollout's fingerprint is its answer's fixed latent vector plus Gaussian noise
(``fingerprint_noise``), standing in for the logit-lens fingerprint of a language model; a slip's
latent is drawn afresh, so slips do not cluster.

Every iteration samples a group of ``group_size`` rollouts per problem and scores them
(``+1`` right, ``incorrect_reward`` wrong). Then DAPO keeps the groups its filter keeps, MEDS
(if on) shapes them, advantages are normalised within each group, and each problem's logits take
one REINFORCE step. DAPO's dynamic sampling does not resample here: a dropped group simply gets
no update, so every arm sees the same number of rollouts.

Arms (:data:`ARMS`):

* ``dapo``: no shaping; only mixed groups carry signal.
* ``meds``: DAPO+MEDS with the reference rule (mixed groups shaped and stored).
* ``meds_all_wrong``: DAPO+MEDS shaping all-wrong groups too (``GroupRule.MIXED_AND_ALL_WRONG``).
* ``answer``: the answer-string memory (``ClusterMethod.ANSWER``) with the reference rule.

Metrics, read off the policy's exact probabilities (no sampling noise) at each checkpoint and
averaged over problems: ``pass@1``, ``pass@8`` (``1 - (1 - p)^8``), ``largest_mode_share`` (the
share of the wrong-mode mass held by the mode that is *currently* largest; slips are not a mode)
and ``effective_modes`` (``exp`` of the entropy of the wrong modes' distribution: 1 when one mode
holds all of it, M when all M are equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import ClusterMethod, GroupRule, MEDSConfig, MEDSShaper, shaped_groups

ARMS = ("dapo", "meds", "meds_all_wrong", "answer")
"""The arms a simulated run can take (see the module docstring)."""

METRICS = ("pass@1", "pass@8", "largest_mode_share", "effective_modes")
"""What :func:`simulate` reports at each checkpoint."""


@dataclass(frozen=True)
class Setting:
    """One cell of the regime map: the policy's start, the task's error modes and MEDS's knobs."""

    initial_accuracy: float = 0.1
    """Initial probability of the gold answer on every problem."""
    num_modes: int = 4
    """Structured error modes per problem."""
    mode_skew: float = 1.0
    """Zipf exponent of the modes' initial shares (0: all equal; larger: one mode dominates)."""
    slip_share: float = 0.1
    """Share of the initial wrong mass on unstructured slips."""
    num_problems: int = 16
    """Training problems (each is visited every iteration)."""
    group_size: int = 8
    """Rollouts per problem per iteration."""
    iterations: int = 80
    """Policy updates per run."""
    checkpoints: tuple[int, ...] = (10, 20, 40, 80)
    """Iterations after which the metrics are read (the training-length axis)."""
    lr: float = 0.5
    """Step size of the REINFORCE update on the logits."""
    alpha: float = 0.1
    """MEDS penalty slope."""
    beta: float = 0.2
    """MEDS penalty cap."""
    incorrect_reward: float = -1.0
    """Reward of a wrong answer (a right one scores 1); -1 is the reference's scale."""
    fingerprint_dim: int = 8
    """Length of the simulated fingerprint."""
    fingerprint_noise: float = 0.1
    """Standard deviation of the noise added to an answer's latent fingerprint."""

    def __post_init__(self) -> None:
        if not 0.0 < self.initial_accuracy < 1.0:
            raise InvalidArgumentError(
                "initial_accuracy", "a float in (0, 1)", self.initial_accuracy
            )
        if not 0.0 <= self.slip_share < 1.0:
            raise InvalidArgumentError("slip_share", "a float in [0, 1)", self.slip_share)
        for name in ("num_modes", "num_problems", "group_size", "iterations", "fingerprint_dim"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(name, "an int >= 1", getattr(self, name))
        if not self.checkpoints or any(not 1 <= c <= self.iterations for c in self.checkpoints):
            raise InvalidArgumentError(
                "checkpoints", f"iterations between 1 and {self.iterations}", self.checkpoints
            )
        if not self.incorrect_reward < 1.0:
            raise InvalidArgumentError("incorrect_reward", "a float below 1", self.incorrect_reward)

    def replace(self, **changes: Any) -> Setting:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


def initial_probabilities(setting: Setting) -> npt.NDArray[np.float64]:
    """(M + 2,) probabilities over ``[gold, mode_1 (largest), ..., mode_M, slip]``."""
    wrong = 1.0 - setting.initial_accuracy
    weights = 1.0 / np.arange(1, setting.num_modes + 1) ** setting.mode_skew
    modes = wrong * (1.0 - setting.slip_share) * weights / weights.sum()
    return np.concatenate([[setting.initial_accuracy], modes, [wrong * setting.slip_share]])


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def policy_metrics(probs: npt.NDArray[np.float64]) -> dict[str, float]:
    """:data:`METRICS` of a (P, M + 2) table of probabilities, averaged over problems."""
    gold = probs[:, 0]
    modes = probs[:, 1:-1]
    shares = modes / np.maximum(modes.sum(axis=1, keepdims=True), 1e-300)
    entropy = -(shares * np.log(np.maximum(shares, 1e-300))).sum(axis=1)
    return {
        "pass@1": float(gold.mean()),
        "pass@8": float((1.0 - (1.0 - gold) ** 8).mean()),
        "largest_mode_share": float(shares.max(axis=1).mean()),
        "effective_modes": float(np.exp(entropy).mean()),
    }


def _shaper(setting: Setting, arm: str) -> MEDSShaper | None:
    if arm == "dapo":
        return None
    return MEDSShaper(
        MEDSConfig(
            alpha=setting.alpha,
            beta=setting.beta,
            shape_groups=(
                GroupRule.MIXED_AND_ALL_WRONG if arm == "meds_all_wrong" else GroupRule.MIXED
            ),
            cluster_method=ClusterMethod.ANSWER if arm == "answer" else ClusterMethod.HDBSCAN,
        )
    )


def simulate(setting: Setting, arm: str, seed: int) -> dict[int, dict[str, float]]:
    """One simulated training run.

    Args:
        setting: The cell.
        arm: One of :data:`ARMS`.
        seed: Seeds the latents, the slips and the sampling; arms run on the same seed share
            the latent fingerprints and the first iteration's samples.

    Returns:
        Checkpoint (iterations done; 0 is the start) -> :func:`policy_metrics`.
    """
    if arm not in ARMS:
        raise InvalidArgumentError("arm", f"one of {ARMS}", arm)
    rng = np.random.default_rng(seed)
    p, g, m = setting.num_problems, setting.group_size, setting.num_modes
    slip = m + 1
    logits = np.tile(np.log(initial_probabilities(setting)), (p, 1))  # (P, M + 2)
    latents = rng.normal(size=(p, m + 1, setting.fingerprint_dim))  # gold and modes
    gold = rng.integers(100, 1000, size=p)
    mode_answers = gold[:, None] + 1 + np.arange(m)[None, :] * 7  # (P, M) distinct, not gold
    ids = [f"p{i}" for i in range(p) for _ in range(g)]
    groups = np.repeat(np.arange(p), g)
    shaper = _shaper(setting, arm)
    rule = shaper.config.shape_groups if shaper is not None else GroupRule.MIXED
    out = {0: policy_metrics(_softmax(logits))}
    for iteration in range(1, setting.iterations + 1):
        probs = _softmax(logits)
        cumulative = probs.cumsum(axis=1)
        draws = rng.random((p, g))
        choices = (draws[:, :, None] > cumulative[:, None, :]).sum(axis=2).clip(max=slip)  # (P, G)
        correct = (choices == 0).reshape(-1)
        rewards = np.where(correct, 1.0, setting.incorrect_reward)
        kept = shaped_groups(ids, correct, groups, rule)
        if shaper is not None:
            flat = choices.reshape(-1)
            is_slip = flat == slip
            rows = latents[groups, np.minimum(flat, m)]  # (P*G, L)
            rows[is_slip] = rng.normal(size=(int(is_slip.sum()), setting.fingerprint_dim))
            rows += setting.fingerprint_noise * rng.normal(size=rows.shape)
            if arm == "answer":
                answers = np.where(flat == 0, gold[groups], 0)
                structured = (flat >= 1) & ~is_slip
                answers[structured] = mode_answers[groups[structured], flat[structured] - 1]
                # A slip's number is never the gold or a mode's answer.
                answers[is_slip] = (
                    gold[groups[is_slip]] + 1000 + rng.integers(0, 10**6, is_slip.sum())
                )
                result = shaper.shape(
                    ids, correct, rewards, None, kept=kept, answers=[str(a) for a in answers]
                )
            else:
                result = shaper.shape(ids, correct, rewards, rows.astype(np.float32), kept=kept)
            rewards = result.shaped_rewards
        grouped = rewards.reshape(p, g)
        std = grouped.std(axis=1, keepdims=True)
        adv = (grouped - grouped.mean(axis=1, keepdims=True)) / (std + 1e-6)
        adv[~kept.reshape(p, g).any(axis=1)] = 0.0
        onehot = np.zeros((p, g, slip + 1))
        np.put_along_axis(onehot, choices[:, :, None], 1.0, axis=2)
        grad = (adv[:, :, None] * (onehot - probs[:, None, :])).mean(axis=1)  # (P, M + 2)
        logits += setting.lr * grad
        if iteration in setting.checkpoints:
            out[iteration] = policy_metrics(_softmax(logits))
    return out
