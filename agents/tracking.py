"""Where a training run's per-iteration metrics go: JSON Lines, TensorBoard, Weights & Biases.

``metrics.jsonl`` is always written (one JSON object per iteration); TensorBoard event files when
asked (``--tensorboard``, on by default); Weights & Biases with ``--track``, as CleanRL does, in
offline mode by default so that it works without a network (``wandb sync`` uploads later). W&B is
an optional extra (``pip install 'meds-gym[track]'``): it is imported only when tracking is on.

Only finite numbers are logged: a metric that has no value in an iteration (no wrong answer, no
update) is left out rather than written as NaN (issue 13, point 3).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from meds_gym.errors import MissingExtraError


@dataclass(frozen=True)
class WandbConfig:
    """Where ``--track`` logs (``--wandb.*``)."""

    project: str = "meds-gym"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); None: your default."""
    mode: Literal["offline", "online"] = "offline"
    """``offline`` works without a network (``wandb sync <run dir>/wandb/...`` uploads later)."""


def finite_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``row`` that are finite numbers, as floats (``iteration`` stays an int)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = value if key == "iteration" else float(value)
    return out


class MetricsLogger:
    """Writes each iteration's metrics to every configured sink.

    Args:
        run_dir: The run directory (``metrics.jsonl`` and the TensorBoard files go there).
        kept_lines: Lines of an earlier ``metrics.jsonl`` to keep (a resumed run).
        tensorboard: Also write TensorBoard scalars.
        wandb: Where to log to Weights & Biases as well; None: not at all.
        run_name: Name of the run (the W&B run name).
        config: The run's arguments (the W&B config).

    Raises:
        MissingExtraError: If ``wandb`` is given and the ``wandb`` package is not installed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        kept_lines: list[str],
        tensorboard: bool = True,
        wandb: WandbConfig | None = None,
        run_name: str = "run",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        run_dir = Path(run_dir)
        self._wandb: Any = None
        if wandb is not None:
            try:
                import wandb as wandb_sdk
            except ImportError as error:
                raise MissingExtraError("Tracking with --track", "track", "wandb") from error
            self._wandb = wandb_sdk.init(
                project=wandb.project,
                entity=wandb.entity,
                name=run_name,
                config=dict(config or {}),
                dir=str(run_dir),
                mode=wandb.mode,
                reinit="finish_previous",
            )
        self._file = (run_dir / "metrics.jsonl").open("w")
        self._file.writelines(line + "\n" for line in kept_lines)
        self._file.flush()
        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir))

    def log(self, row: Mapping[str, Any]) -> dict[str, float]:
        """Write one iteration's finite metrics; ``row["iteration"]`` is the step.

        Returns:
            The metrics as written.
        """
        metrics = finite_metrics(row)
        step = int(metrics["iteration"])
        self._file.write(json.dumps(metrics) + "\n")
        self._file.flush()
        scalars = {k: v for k, v in metrics.items() if k != "iteration"}
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)
        return metrics

    def close(self) -> None:
        """Flush and close every sink."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.finish()


def summary_line(metrics: Mapping[str, float], groups: int) -> str:
    """The one line a training script prints per iteration; ``-`` for a metric it lacks.

    ``reward`` is the env's mean reward over every sampled rollout (the policy's success rate);
    ``kept groups`` the same over the groups kept for the update (after DAPO's filter);
    ``training`` the mean reward the advantages are computed from: the kept groups' rewards plus
    the MEDS penalty (with ``--meds``) and DAPO's overlong penalty (where it is on).

    Args:
        metrics: The iteration's metrics (as :meth:`MetricsLogger.log` returns them).
        groups: Groups requested per batch.
    """

    def show(key: str, spec: str) -> str:
        return format(metrics[key], spec) if key in metrics else "-"

    update = (
        f"loss {show('losses/policy_loss', '+.4f')}"
        if "losses/policy_loss" in metrics
        else "no update (no group with both right and wrong answers)"
    )
    return (
        f"iter {int(metrics['iteration']):4d}  reward {show('charts/reward_mean', '.3f')} "
        f"(kept groups {show('charts/kept_reward_mean', '.3f')}, "
        f"training {show('charts/training_reward_mean', '.3f')})  {update}  "
        f"kept {show('charts/kept_groups', '.0f')}/{groups} "
        f"in {show('charts/generation_rounds', '.0f')} round(s)  "
        f"len {show('charts/response_length', '.1f')}  "
        f"dominant-mode {show('charts/dominant_error_share', '.2f')}"
    )
